"""Spot safety: the code a SageMaker job runs resumes from /opt/ml/checkpoints after a restart.

When a managed-spot job is interrupted, SageMaker starts it again on a fresh machine: an empty
/opt/ml/model, and /opt/ml/checkpoints restored from the checkpoint S3 URI. This test stages
the job's code folder exactly as a launch uploads it (stage_source + plan_file), runs the entry
script in it as a separate process with the job's hyperparameters (container paths swapped for
temporary folders), then "restarts" it on a fresh output folder with the same checkpoint folder,
which also holds a half-written checkpoint from the interruption. Real tiny model, real training.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.sagemaker.launch import plan_file, stage_source
from backend.sagemaker.request import build_training_request, container_settings, sagemaker_choice
from planner.estimate import estimate
from tests.tiny import make_tiny_model, memorization_records, write_jsonl

from .plans import ONE_GPU

pytest.importorskip("trl")


def run_entry(code: Path, hyperparameters: dict[str, str], tmp: Path, **extra: str) -> subprocess.CompletedProcess:
    """``python backend/train.py --key value ...`` in the code folder, as SageMaker's script driver runs it;
    the container's paths (in plan.json) are replaced by flags pointing into ``tmp``."""
    paths = {"dataset": "data", "output-dir": "model", "checkpoint-dir": "checkpoints"}
    args = []
    for key, value in {**hyperparameters, **{k: str(tmp / v) for k, v in paths.items()}, **extra}.items():
        args += [f"--{key}", value]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PLAN_HOME": str(tmp / "home"), "PYTHONPATH": ""}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "backend/train.py", *args, "--no-track"], cwd=code, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_restarted_spot_job_resumes_from_the_restored_checkpoints(tmp_path):
    tiny = make_tiny_model(tmp_path / "tiny")
    write_jsonl(tmp_path / "data" / "train.jsonl", memorization_records("prompt-completion", repeat=2))
    est = estimate(str(tiny), mode="lora", seq_len=32, batch_size=4, lora_r=8, lora_alpha=16, lora_dropout=0.0)
    settings = container_settings(str(tiny), max_steps=4, epochs=1.0, save_steps=2)
    request = build_training_request(
        model_name=str(tiny), hf_id=str(tiny), mode="lora", params=est.params.total,
        choice=sagemaker_choice(ONE_GPU), region="us-east-1", role_arn="arn:aws:iam::123456789012:role/r",
        bucket="b", dataset="s3://b/data/", image_uri="img", stamp="20261127120000", spot=True, training=settings)
    code = stage_source(request, plan_file(str(tiny), est, None, request), tmp_path / "code")
    training = json.loads((code / "plan.json").read_text())["training"]
    assert (training["checkpoint_dir"], training["max_steps"], training["save_steps"]) == ("/opt/ml/checkpoints", 4, 2)
    assert request.hyperparameters == {"plan": "plan.json"}  # the plan is the one carrier

    first = run_entry(code, request.hyperparameters, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-4"]

    # The interruption: a half-written checkpoint (no completion marker) and a fresh machine
    # whose /opt/ml/model is empty; /opt/ml/checkpoints was restored from S3.
    (ckpts / "checkpoint-5").mkdir()
    (ckpts / "checkpoint-5" / "adapter_model.safetensors").write_bytes(b"partial")
    (tmp_path / "model").rename(tmp_path / "model-before")
    second = run_entry(code, request.hyperparameters, tmp_path, **{"max-steps": "6"})
    assert second.returncode == 0, second.stderr[-3000:]
    record = json.loads((tmp_path / "model" / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 6
    assert record["resumed_from"] == [str(ckpts / "checkpoint-4")]
    assert record["discarded_checkpoints"] == [str(ckpts / "checkpoint-5")]
    steps = [e["step"] for e in record["train_loss"]]  # the history up to step 4 comes from the checkpoint
    assert steps == sorted(set(steps)) and steps[-1] == 6
    before = json.loads((tmp_path / "model-before" / "run.json").read_text())["train_loss"]
    assert record["train_loss"][:len(before)] == before
    assert (tmp_path / "model" / "adapter_config.json").is_file()
