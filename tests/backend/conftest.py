"""Fixtures for the local-training tests: offline env, a private adapter store, the tiny model, plans.

Everything is real: the tiny Llama from tests/tiny.py, TRL/PEFT/bitsandbytes, MLflow with a
SQLite store in the run folder, child processes that get killed. No network (HF_HUB_OFFLINE).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.tiny import make_tiny_model, memorization_records, write_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _private_env(tmp_path, monkeypatch):
    """Each test gets its own adapter store and no outside MLflow server."""
    monkeypatch.setenv("PLAN_HOME", str(tmp_path / "plan-home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def facts_file(tmp_path) -> Path:
    """16 prompt/completion records (the 8 facts twice): 4 batches of 4 per epoch."""
    return write_jsonl(tmp_path / "facts.jsonl", memorization_records("prompt-completion", repeat=2))


def make_plan(model_dir: Path, mode: str, dataset: Path, output_dir: Path, **training: Any) -> dict[str, Any]:
    """plan.json as `plan MODEL --mode MODE --execute` writes it: the real estimate + the run settings."""
    from planner.estimate import estimate
    from planner.plan import RunSettings, plan_for

    est = estimate(str(model_dir), mode=mode, seq_len=32, batch_size=4, lora_r=8, lora_alpha=16,
                   lora_dropout=0.0, num_virtual_tokens=4)
    block = {"model": str(model_dir), "dataset": str(dataset), "output_dir": str(output_dir),
             "max_steps": 30, "save_steps": 10, "logging_steps": 5, **training}
    return plan_for(est, RunSettings(**block)).to_dict()


def write_plan(path: Path, plan: dict[str, Any]) -> Path:
    path.write_text(json.dumps(plan, indent=2))
    return path
