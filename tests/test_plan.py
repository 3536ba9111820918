"""The one plan (planner/plan.py): round trip, one-line errors, and every launcher writes the same schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.execute import ExecuteOptions, training_plan
from planner.errors import PlannerError
from planner.estimate import estimate
from planner.plan import SCHEMA_VERSION, Machine, Plan, RunSettings, Strategy, plan_for


@pytest.fixture(scope="module")
def est():
    return estimate("qwen2.5-0.5b", mode="qlora", seq_len=512)


def test_round_trip_is_exact(est):
    plan = plan_for(est, RunSettings(model="Qwen/Qwen2.5-0.5B", dataset="/d/train.jsonl", output_dir="/o",
                                     max_steps=5, logging_steps=1),
                    machine=Machine("g5.12xlarge", "ec2", Strategy.DATA_PARALLEL, gpu_count=4, per_gpu_bytes=123),
                    distributed={"strategy": "data-parallel", "num_processes": 4}, model_name="qwen2.5-0.5b")
    text = plan.to_json()
    doc = json.loads(text)
    assert doc["schema_version"] == SCHEMA_VERSION == 1
    assert doc["machine"]["strategy"] == "data-parallel" and doc["job"]["mode"] == "qlora"
    assert doc["memory"]["total_bytes"] == est.total_bytes  # the estimate's own document, at the top level
    back = Plan.from_json(text)
    assert back == plan
    assert back.strategy is Strategy.DATA_PARALLEL and back.hf_id == est.model.hf_id


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.pop("schema_version"), "has schema_version None; this trainer reads version 1"),
    (lambda d: d.update(schema_version=2), "has schema_version 2"),
    (lambda d: d.pop("job"), "is not a plan (no 'job')"),
    (lambda d: d["job"].update(mode="dance"), "unknown mode 'dance'"),
    (lambda d: d["job"].update(lora_rank=8), "'job' has unknown field(s) lora_rank"),
    (lambda d: d["training"].update(max_step=3), "'training' has unknown field(s) max_step"),
    (lambda d: d["training"].update(max_steps=0), "--max-steps must be positive"),
    (lambda d: d["training"].pop("dataset"), "no dataset given"),
    (lambda d: d.update(machine={"instance_type": "x", "platform": "ec2", "strategy": "ddp"}),
     "unknown strategy 'ddp'; known: single-gpu, data-parallel, fsdp, fsdp-qlora, zero3, tensor-parallel"),
    (lambda d: d.update(distributed={"strategy": "sharded"}), "unknown strategy 'sharded'"),
])
def test_a_bad_plan_is_one_line_naming_the_field(est, edit, message):
    doc = plan_for(est, RunSettings(model="m", dataset="d", output_dir="o")).to_dict()
    edit(doc)
    with pytest.raises(PlannerError) as err:
        Plan.from_dict(doc, where="p.json")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_strategy_is_the_one_vocabulary():
    assert [s.value for s in Strategy] == ["single-gpu", "data-parallel", "fsdp", "fsdp-qlora", "zero3",
                                           "tensor-parallel"]
    assert f"{Strategy.FSDP}" == "fsdp" and json.dumps(Strategy.FSDP) == '"fsdp"'
    for name in ("ddp", "FSDP", "deepspeed"):
        with pytest.raises(PlannerError, match="unknown strategy"):
            Strategy.of(name)


def _local(est, tmp_path: Path) -> dict:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x"}\n')
    opts = ExecuteOptions(dataset=str(data), max_steps=3, epochs=1.0, execute=True)
    return training_plan("qwen2.5-0.5b", est, opts, tmp_path / "out").to_dict()


def _emit(est, tmp_path: Path) -> dict:
    from backend.distributed import emit
    from tests.sagemaker.plans import FOUR_GPU

    opts = ExecuteOptions(dataset=str(tmp_path / "d.jsonl"), max_steps=3, emit_config=tmp_path / "launch")
    emit("qwen2.5-0.5b", est, FOUR_GPU, opts)
    return json.loads((tmp_path / "launch" / "plan.json").read_text())


def _sagemaker(est, tmp_path: Path) -> dict:
    from backend.sagemaker.launch import plan_file
    from backend.sagemaker.request import build_training_request, container_settings, sagemaker_choice
    from tests.sagemaker.plans import ONE_GPU

    request = build_training_request(
        model_name="qwen2.5-0.5b", hf_id=est.model.hf_id, mode="qlora", params=est.params.total,
        choice=sagemaker_choice(ONE_GPU), region="us-east-1", role_arn="arn:aws:iam::123456789012:role/r",
        bucket="b", dataset="s3://b/data/", image_uri="img", stamp="20261127120000", spot=False,
        training=container_settings(est.model.hf_id, max_steps=3, epochs=1.0))
    return plan_file("qwen2.5-0.5b", est, ONE_GPU, request).to_dict()


def test_the_three_launchers_write_the_same_schema(est, tmp_path):
    docs = {"local": _local(est, tmp_path), "emit": _emit(est, tmp_path), "sagemaker": _sagemaker(est, tmp_path)}
    optional = {"distributed", "request", "costs"}
    keys = {name: set(doc) - optional for name, doc in docs.items()}
    assert keys["local"] == keys["emit"] == keys["sagemaker"], keys
    training_keys = {f for f in RunSettings.__dataclass_fields__}
    for name, doc in docs.items():
        assert doc["schema_version"] == SCHEMA_VERSION and doc["backend"] == ("emit" if name == "emit" else name)
        assert set(doc["training"]) == training_keys, name
        assert doc["training"]["max_steps"] == 3
        plan = Plan.from_dict(json.loads(json.dumps(doc)))  # what train.py reads
        assert plan.job == est.job and plan.machine is not None
    assert Plan.from_dict(docs["emit"]).strategy is Strategy.DATA_PARALLEL
    assert docs["sagemaker"]["training"]["dataset"] == "/opt/ml/input/data/train"
