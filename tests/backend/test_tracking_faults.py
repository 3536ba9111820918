"""Tracking is not the job: an MLflow server that cannot be reached gives one warning and the run
goes on (its metrics in run.json); a URI is never shown or stored with its password.

Real sockets on 127.0.0.1: a port bound but not listening refuses connections at once; MLflow's
own retry variables keep the test fast.
"""
from __future__ import annotations

import json
import socket

import pytest

from backend.tracking import Tracker, mask
from tests.backend.conftest import make_plan

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def dead_uri(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        uri = f"http://alice:{SECRET}@127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        yield uri


def ours(err: str) -> list[str]:
    """Our warning lines (MLflow's own logger may add lines of its own, e.g. from a header plugin)."""
    return [ln for ln in err.splitlines() if ln.startswith("warning:")]


def test_mask_hides_credentials_in_any_uri():
    assert mask("https://alice:pw@mlflow.example.com:5000/x") == "https://***@mlflow.example.com:5000/x"
    assert mask("https://token@host/p and http://u:p@h2") == "https://***@host/p and http://***@h2"
    assert mask("sqlite:////tmp/run/mlflow.db") == "sqlite:////tmp/run/mlflow.db"
    assert mask("databricks") == "databricks"


def test_unreachable_server_is_one_warning_and_calls_become_no_ops(tmp_path, dead_uri, capsys):
    tracker = Tracker(dead_uri, "plan")
    assert tracker.start(tmp_path, run_name="r", params={"a": 1}) is None
    err = capsys.readouterr().err
    [warning] = ours(err)
    assert warning.startswith(f"warning: MLflow tracking at {mask(dead_uri)} failed (cannot start the run: ")
    assert warning.endswith("); training continues untracked, metrics are in run.json") and SECRET not in err
    # a server lost mid-run: one warning at the first failed call, then silence
    later = Tracker(dead_uri, "plan", run_id="0123456789abcdef")
    later.log_metrics({"loss": 1.0}, 1)
    later.log_metrics({"loss": 0.9}, 2)
    later.finish({}, {}, "completed")
    err = capsys.readouterr().err
    [warning] = ours(err)
    assert "cannot log metrics" in warning and SECRET not in err


@pytest.mark.slow
def test_training_goes_on_without_the_tracking_server(tmp_path, tiny_model, facts_file, dead_uri, monkeypatch,
                                                       capsys):
    from backend.train import train
    from planner.plan import Plan

    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead_uri)
    out = tmp_path / "run"
    plan = make_plan(tiny_model, "lora", facts_file, out, max_steps=3, save_steps=3, logging_steps=1, register=False)
    record = train(Plan.from_dict(plan))
    assert record["status"] == "completed" and [e["step"] for e in record["train_loss"]] == [1, 2, 3]
    assert record["mlflow"] is None
    err = capsys.readouterr().err
    [warning] = ours(err)
    assert warning.startswith(f"warning: MLflow tracking at {mask(dead_uri)} failed")
    for text in (err, (out / "run.json").read_text(), (out / "plan.json").read_text()):
        assert SECRET not in text
    assert json.loads((out / "run.json").read_text())["train_loss"] == record["train_loss"]
