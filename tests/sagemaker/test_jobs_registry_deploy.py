"""After the launch, over real HTTP to moto: follow the job, fetch its adapter, register, deploy, invoke, delete.

moto completes a training job at once and writes nothing to S3, so each test writes the
model.tar.gz the entry script would have produced (adapter files + run.json) to the job's
artifact URI (a workaround for that gap, kept here in the tests). The adapter files' bytes are
opaque to this code (it moves and registers them), so small stand-ins are used.
"""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from backend.sagemaker.errors import SageMakerError
from planner.cli.execute import run_sagemaker as run
from tests.cli import run as cli

from .conftest import write_dataset
from .plans import MODEL, ONE_GPU, Opts, qlora_estimate

HF_ID = "Qwen/Qwen2.5-0.5B"
ADAPTER_FILES = {"adapter_config.json": json.dumps({"peft_type": "LORA", "r": 16}).encode(),
                 "adapter_model.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "}
RUN = {"status": "completed", "global_step": 5, "train_loss": [{"step": 5, "loss": 1.25}],
       "base_model": {"name": HF_ID, "revision": "abc"}}

pytestmark = pytest.mark.slow  # moto server round trips (10-35 s each)



@pytest.fixture
def job(aws, tmp_path, capsys):
    """A job launched by plan, with the artifact the entry script would have written."""
    assert run(MODEL, qlora_estimate(), ONE_GPU, Opts(dataset=str(write_dataset(tmp_path / "d.jsonl")),
                                                      role=aws.role_arn, bucket=aws.bucket)) == 0
    name = json.loads(capsys.readouterr().out)["job_name"]
    uri = aws.client("sagemaker").describe_training_job(TrainingJobName=name)["ModelArtifacts"]["S3ModelArtifacts"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, data in {**ADAPTER_FILES, "run.json": json.dumps(RUN).encode()}.items():
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bucket, key = uri[5:].split("/", 1)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    return name


def test_jobs_list_status_wait(aws, job, capsys):
    code, out, _ = cli(capsys, "jobs", "list", "--json")
    assert code == 0 and [j["name"] for j in json.loads(out)] == [job]
    code, out, _ = cli(capsys, "jobs", "status", job, "--json")
    info = json.loads(out)
    assert code == 0 and info["status"] == "Completed"
    assert info["instance_type"] == "ml.g5.2xlarge" and info["instance_count"] == 1
    assert info["tags"]["plan:model"] == HF_ID and info["model_artifacts"].endswith("/output/model.tar.gz")
    code, out, err = cli(capsys, "jobs", "wait", job, "--poll", "0", "--json")
    assert code == 0 and json.loads(out)["status"] == "Completed" and f"{job}: Completed" in err
    code, out, err = cli(capsys, "jobs", "status", "plan-no-such-job")
    assert code == 2 and "training job 'plan-no-such-job' not found" in err


def test_fetch_puts_the_adapter_and_run_into_the_local_store(aws, job, capsys):
    from backend.store import AdapterStore

    code, out, err = cli(capsys, "jobs", "fetch", job, "--name", "sky-adapter", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["base_model"] == HF_ID and result["run"]["global_step"] == 5
    record = AdapterStore().get("sky-adapter")
    assert record.base_model == HF_ID and record.metadata["job_name"] == job
    assert record.metadata["run"]["train_loss"] == RUN["train_loss"]
    for fname, data in ADAPTER_FILES.items():
        assert (record.path / fname).read_bytes() == data
    code, _, err = cli(capsys, "jobs", "fetch", job, "--name", "sky-adapter")
    assert code == 2 and "already exists" in err


def test_register_deploy_invoke_delete(aws, job, capsys, monkeypatch):
    sm = aws.client("sagemaker")
    monkeypatch.setenv("HF_TOKEN", "hf_NOT_REAL_deploy_secret")
    # moto accepts only older instance families in endpoint configs: ml.g4dn works (backend_notes.md).
    code, out, err = cli(capsys, "deploy", job, "--name", "sky-ep", "--role", aws.role_arn, "--adapter-name", "sky",
                         "--instance-type", "ml.g4dn.xlarge", "--json")
    assert code == 0, err
    ep = json.loads(out)
    assert ep["status"] == "InService" and ep["instance_type"] == "ml.g4dn.xlarge"
    # the package: in the base model's group, pointing at the job's artifact, with metadata and metrics
    pkg = sm.describe_model_package(ModelPackageName=ep["model_package"])
    assert pkg["ModelPackageGroupName"] == "plan-qwen2-5-0-5b"
    container = pkg["InferenceSpecification"]["Containers"][0]
    artifact = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    assert container["ModelDataUrl"] == artifact and "huggingface-vllm" in container["Image"]
    assert container["Environment"]["SM_VLLM_MODEL"] == HF_ID
    assert container["Environment"]["SM_VLLM_LORA_MODULES"] == "sky=/opt/ml/model"
    assert "HF_TOKEN" not in container["Environment"]  # the registry never holds the secret
    assert pkg["CustomerMetadataProperties"]["job_name"] == job
    assert pkg["CustomerMetadataProperties"]["mode"] == "qlora"
    metrics_uri = pkg["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = metrics_uri[5:].split("/", 1)
    assert "train:progress" in json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    # the model behind the endpoint gets the secret at deploy time, from the environment
    model = sm.describe_model(ModelName="sky-ep")
    assert model["PrimaryContainer"]["Environment"]["HF_TOKEN"] == "hf_NOT_REAL_deploy_secret"
    assert sm.describe_endpoint_config(EndpointConfigName="sky-ep")["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"
    code, out, _ = cli(capsys, "registry", "list", HF_ID, "--json")
    assert code == 0 and [p["arn"] for p in json.loads(out)] == [ep["model_package"]]
    code, out, _ = cli(capsys, "endpoints", "list", "--json")
    assert [e["name"] for e in json.loads(out)] == ["sky-ep"]
    code, out, err = cli(capsys, "endpoints", "invoke", "sky-ep", "what color is the sky?", "--adapter", "sky")
    assert code == 0 and out.strip(), err  # moto answers with a canned body
    code, out, _ = cli(capsys, "endpoints", "delete", "sky-ep", "--json")
    assert code == 0 and json.loads(out)["deleted"] == ["endpoint", "endpoint config", "model"]
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    code, _, err = cli(capsys, "endpoints", "delete", "sky-ep")
    assert code == 2 and "nothing named 'sky-ep' to delete" in err


def test_deploy_errors(aws, job, capsys):
    code, _, err = cli(capsys, "deploy", job, "--name", "bad_name!", "--role", aws.role_arn)
    assert code == 2 and "invalid endpoint name" in err
    code, _, err = cli(capsys, "deploy", "plan-not-a-job", "--name", "ep", "--role", aws.role_arn)
    assert code == 2 and "not found" in err
    with pytest.raises(SageMakerError, match="approval must be one of"):
        from backend.sagemaker.registry import register_job
        register_job(job, session=aws.session, approval="Yes")


@pytest.mark.slow
@pytest.mark.parametrize("damaged", [b"not json", b"[1, 2]", b"\xff\xfe\x00", b'{"global_step": "five"}',
                                     b'{"base_model": 7}', b'{"metrics": [1]}', b'{"a": ' + b"9" * 5000 + b"}"])
def test_fetch_refuses_an_artifact_with_a_damaged_run_json(aws, job, capsys, damaged):
    """The artifact comes from a container (untrusted): its run.json goes through the typed reader."""
    from backend.store import AdapterStore

    uri = aws.client("sagemaker").describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, data in {**ADAPTER_FILES, "run.json": damaged}.items():
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    bucket, key = uri[5:].split("/", 1)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    code, _, err = cli(capsys, "jobs", "fetch", job, "--name", "bad-adapter")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "damaged run.json" in err and "nothing was registered" in err
    assert "bad-adapter" not in [r.name for r in AdapterStore().list()]
