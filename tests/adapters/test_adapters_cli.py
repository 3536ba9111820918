"""The commands: `plan serve` as a real process on an ephemeral port, `plan adapters merge` and
`plan eval` through the CLI entry point, with the adapter store and a local MLflow store."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import main
from tests.adapters.conftest import CAPITALS, PROMPT
from tests.adapters.http_client import call, complete
from tests.served import wait_for_url
from tests.tiny import write_jsonl

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def plan_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "home"


@pytest.fixture()
def stored(plan_home, tiny_base, two_adapters):
    from backend.store import AdapterStore

    AdapterStore().register("caps", two_adapters["capitals"], base_model=str(tiny_base),
                            metadata={"mode": "lora"})
    return "caps"


def test_plan_serve_process_answers_then_stops_on_ctrl_c(stored, plan_home, tiny_base, two_adapters):
    env = {**os.environ, "PLAN_HOME": str(plan_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "planner", "serve", str(tiny_base), "--served-model-name", "tiny",
                             "--adapter", "caps", "--adapter", f"swapped={two_adapters['swapped']}",
                             "--port", "0", "--dtype", "fp32"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_url(proc, 120)
        assert url, f"server did not start: rc={proc.poll()}"
        assert [m["id"] for m in call(url, "GET", "/v1/models")[1]["data"]] == ["tiny", "caps", "swapped"]
        assert complete(url, "caps", PROMPT) == "paris ."
        assert complete(url, "swapped", PROMPT) == "tokyo !"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("argv,message", [
    (["serve", "m", "--adapter", "x="], "bad --adapter 'x='"),
    (["serve", "m", "--port", "70000"], "--port must be"),
    (["eval", "nope", "--dataset", "d.jsonl"], "unknown adapter 'nope'"),
    (["adapters", "merge", "caps", "--dtype", "int4"], "bf16 or fp32"),
])
def test_bad_input_is_one_line_and_exit_2(stored, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_plan_serve_with_a_missing_base_is_one_line(plan_home, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "no-model")]) == 2
    assert capsys.readouterr().err.startswith("error: no such model directory")


def test_adapters_merge_command(stored, plan_home, tmp_path, capsys):
    out = tmp_path / "merged"
    assert main(["adapters", "merge", "caps", "--output", str(out), "--dtype", "fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["output_dir"] == str(out) and result["max_abs_logit_diff"] < 1e-4
    assert (out / "model.safetensors").is_file()
    from backend.store import AdapterStore
    assert AdapterStore().get("caps").metadata["merged"]["path"] == str(out.resolve())


def test_eval_command_writes_store_and_mlflow_and_can_fail_on_forgetting(stored, plan_home, tmp_path, capsys,
                                                                       monkeypatch):
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": q, "completion": " " + a} for q, a in CAPITALS])
    general = tmp_path / "general.txt"
    general.write_text("the sky is blue and the grass is green . the cat says meow . one plus two equals three .")
    code = main(["eval", "caps", "--dataset", str(data), "--general", str(general), "--json", "--fail-on-forgetting"])
    out = json.loads(capsys.readouterr().out)
    # memorizing four sentences wrecks general text on a random tiny base: flagged, exit 1
    assert out["verdict"]["forgetting"] is True and code == 1
    assert out["task"]["adapter"]["exact_match"] == 1.0
    from backend.store import AdapterStore
    assert AdapterStore().get("caps").metadata["eval"]["verdict"] == out["verdict"]

    import mlflow
    run = mlflow.MlflowClient(uri).get_run(out["mlflow"]["run_id"])
    assert run.data.metrics["task.adapter.exact_match"] == 1.0
    assert run.data.metrics["forgetting.flag"] == 1.0
    assert run.data.tags["plan.kind"] == "eval" and run.info.status == "FINISHED"

    # the table form, without tracking
    assert main(["eval", "caps", "--dataset", str(data), "--general", str(general), "--no-track",
                 "--threshold", "1e9"]) == 0
    text = capsys.readouterr().out
    assert "exact match" in text and "no forgetting" in text
