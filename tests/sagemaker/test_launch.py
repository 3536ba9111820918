"""Launching the planned job against moto's SageMaker/S3/IAM over real HTTP.

Each test asserts on what was really sent (the CreateTrainingJob body on the wire, the job
moto stored, the objects in S3), not on what the code meant to send.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.sagemaker.errors import SageMakerError
from planner.cli.execute import run_sagemaker as run
from backend.sagemaker.request import max_runtime_seconds

from .conftest import write_dataset
from .plans import FOUR_GPU, MODEL, ONE_GPU, TWO_NODES, Opts, qlora_estimate

SECRET = "hf_NOT_A_REAL_TOKEN_9f8e7d6c"
HF_ID = "Qwen/Qwen2.5-0.5B"
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # moto server round trips (10-40 s each)


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "train.jsonl")


def launch(capsys, costs, **opts):
    rc = run(MODEL, qlora_estimate(), costs, Opts(**opts))
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def s3_text(aws, uri: str) -> str:
    bucket, key = uri[5:].split("/", 1)
    return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read().decode()


def test_plain_launch_sends_the_plans_instance_data_code_and_no_secret(aws, sent, dataset, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    rc, out, err = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket)
    assert rc == 0
    [body] = sent["CreateTrainingJob"]
    assert body["TrainingJobName"] == out["job_name"]
    assert body["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert body["ResourceConfig"]["InstanceCount"] == 1
    assert not body.get("EnableManagedSpotTraining")
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 12600}  # 2 h x 1.5 + 30 min
    assert "MaxWaitTimeInSeconds" not in body["StoppingCondition"]
    req = out["request"]
    assert body["CheckpointConfig"] == {"S3Uri": req["checkpoint_s3_uri"], "LocalPath": "/opt/ml/checkpoints"}
    assert body["CheckpointConfig"]["S3Uri"].startswith(f"s3://{aws.bucket}/plan/plan-qwen2-5-0-5b-qlora/checkpoints/")
    assert body["OutputDataConfig"]["S3OutputPath"] == f"s3://{aws.bucket}/plan/plan-qwen2-5-0-5b-qlora/output"
    assert "huggingface-pytorch-training" in body["AlgorithmSpecification"]["TrainingImage"]
    assert body["RoleArn"] == aws.role_arn
    # the secret went to the environment only
    assert body["Environment"]["HF_TOKEN"] == SECRET
    assert SECRET not in json.dumps(body["HyperParameters"])
    # plan.json carries the run settings; the hyperparameters only point at it (issue 15)
    assert body["HyperParameters"] == {"plan": "plan.json"}
    tags = {t["Key"]: t["Value"] for t in body["Tags"]}
    assert tags["plan:model"] == HF_ID and tags["plan:mode"] == "qlora" and tags["plan:estimated-usd"] == "3.03"
    # what moto stored agrees
    job = aws.client("sagemaker").describe_training_job(TrainingJobName=out["job_name"])
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert SECRET not in json.dumps(job["HyperParameters"])
    # the data set was uploaded byte for byte and is the train channel
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}
    assert channels["train"] == out["dataset_s3_uri"] == req["dataset_s3_uri"]
    assert s3_text(aws, channels["train"]) == dataset.read_text()
    # the code channel holds the same entry script as the local backend, the plan and the pins
    code = channels["code"]
    assert s3_text(aws, f"{code}/backend/train.py") == (REPO / "backend" / "train.py").read_text()
    assert "peft==" in s3_text(aws, f"{code}/requirements.txt")
    plan = json.loads(s3_text(aws, f"{code}/plan.json"))
    assert plan["job"]["mode"] == "qlora"
    assert plan["training"]["model"] == HF_ID and plan["training"]["dataset"] == "/opt/ml/input/data/train"
    assert plan["training"]["checkpoint_dir"] == "/opt/ml/checkpoints"
    sourcecode = json.loads(s3_text(aws, f"{channels['sm_drivers']}/sourcecode.json"))
    assert sourcecode["entry_script"] == "backend/train.py"
    # nowhere else: not in any uploaded object, not in what was printed
    for key in aws.keys():
        if key.endswith((".json", ".txt", ".py", ".sh", ".jsonl")):
            assert SECRET not in s3_text(aws, f"s3://{aws.bucket}/{key}"), key
    assert SECRET not in json.dumps(out) and SECRET not in err


def test_spot_sets_managed_spot_and_a_max_wait_above_the_runtime(aws, sent, dataset, capsys):
    rc, out, _ = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket, spot=True)
    assert rc == 0
    [body] = sent["CreateTrainingJob"]
    assert body["EnableManagedSpotTraining"] is True
    assert body["StoppingCondition"] == {"MaxRuntimeInSeconds": 12600, "MaxWaitTimeInSeconds": 25200}
    job = aws.client("sagemaker").describe_training_job(TrainingJobName=out["job_name"])
    assert job["EnableManagedSpotTraining"] is True
    assert job["CheckpointConfig"]["S3Uri"] == out["request"]["checkpoint_s3_uri"]


def test_four_gpus_run_under_torchrun(aws, sent, dataset, capsys):
    rc, out, _ = launch(capsys, FOUR_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket)
    assert rc == 0
    [body] = sent["CreateTrainingJob"]
    assert body["ResourceConfig"]["InstanceType"] == "ml.g5.12xlarge"
    assert body["ResourceConfig"]["InstanceCount"] == 1
    drivers = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}["sm_drivers"]
    distributed = json.loads(s3_text(aws, f"{drivers}/distributed.json"))
    assert distributed["process_count_per_node"] == 4
    assert "torchrun" in s3_text(aws, f"{drivers}/sm_train.sh").lower()
    assert "ACCELERATE_USE_FSDP" not in body["Environment"]  # data parallel: a replica per GPU


def test_two_machines_run_under_torchrun(aws, sent, dataset, capsys):
    rc, out, _ = launch(capsys, TWO_NODES, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket)
    assert rc == 0
    [body] = sent["CreateTrainingJob"]
    assert body["ResourceConfig"] == {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 2,
                                      "VolumeSizeInGB": out["request"]["volume_size_gb"]}
    assert out["request"]["distributed"] == "torchrun" and out["request"]["processes_per_node"] == 8
    assert out["request"]["estimated_usd"] == 101.0  # 2 h x $25.25 x 2 machines
    # the plan shards the model: the processes get accelerate's FSDP settings (QLoRA: FSDP-QLoRA)
    env = body["Environment"]
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen2DecoderLayer"
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}
    plan = json.loads(s3_text(aws, f"{channels['code']}/plan.json"))
    assert plan["distributed"]["strategy"] == "fsdp-qlora" and plan["distributed"]["num_machines"] == 2
    assert plan["distributed"]["num_processes"] == 16


def test_dry_run_prints_the_request_and_creates_nothing(aws, sent, dataset, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    rc, out, err = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket,
                          dry_run=True, yes=False)
    assert rc == 0 and out["dry_run"] is True
    req = out["request"]
    assert req["instance_type"] == "ml.g5.2xlarge" and req["max_runtime_s"] == max_runtime_seconds(2.0)
    assert req["environment"]["HF_TOKEN"] == "<set from the local environment; not shown>"
    assert SECRET not in json.dumps(out) and SECRET not in err
    assert "CreateTrainingJob" not in sent
    assert aws.keys() == []
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert "nothing was created" in err


def test_cost_cap_refuses_and_creates_nothing(aws, sent, dataset, capsys):
    with pytest.raises(SageMakerError, match=r"estimated cost \$3.03 .* over --max-cost \$2.00"):
        run(MODEL, qlora_estimate(), ONE_GPU, Opts(dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket,
                                                   max_cost=2.0))
    assert "CreateTrainingJob" not in sent and aws.keys() == []
    rc, out, _ = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket, max_cost=3.5)
    assert rc == 0 and out["request"]["max_cost"] == 3.5


def test_s3_dataset_is_read_in_place(aws, sent, capsys):
    aws.client("s3").put_object(Bucket=aws.bucket, Key="data/train.jsonl", Body=b'{"text": "hi"}\n')
    uri = f"s3://{aws.bucket}/data/train.jsonl"
    rc, out, _ = launch(capsys, ONE_GPU, dataset=uri, role=aws.role_arn, bucket=aws.bucket)
    assert rc == 0 and out["uploaded_keys"] == []
    [body] = sent["CreateTrainingJob"]
    assert {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in body["InputDataConfig"]}["train"] == uri
    with pytest.raises(SageMakerError, match="nothing found at s3://"):
        run(MODEL, qlora_estimate(), ONE_GPU, Opts(dataset=f"s3://{aws.bucket}/nope/", role=aws.role_arn,
                                                   bucket=aws.bucket))


def test_default_bucket_is_created_when_no_bucket_is_given(aws, dataset, capsys):
    rc, out, _ = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, dry_run=True)
    assert rc == 0 and out["request"]["output_s3_uri"].startswith("s3://sagemaker-us-east-1-123456789012/")
    assert [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]] == [aws.bucket]  # dry run: not created
    rc, out, _ = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn)
    assert rc == 0
    assert out["dataset_s3_uri"].startswith("s3://sagemaker-us-east-1-123456789012/plan/")


def test_without_yes_and_no_terminal_it_refuses(aws, sent, dataset, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(SageMakerError, match="pass --yes"):
        run(MODEL, qlora_estimate(), ONE_GPU, Opts(dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket,
                                                   yes=False))
    assert "CreateTrainingJob" not in sent


def test_wait_follows_the_job_to_its_end(aws, dataset, capsys):
    rc, out, _ = launch(capsys, ONE_GPU, dataset=str(dataset), role=aws.role_arn, bucket=aws.bucket, wait=True)
    assert rc == 0 and out["status"] == "Completed"  # moto completes training jobs at once
