"""`plan bench` refuses bad flags in one line, before any request (no server needed: port 9 refuses)."""
from __future__ import annotations

import json

import pytest

from planner.cli import main

DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens there in a test machine


@pytest.fixture()
def plan_file(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"serving": {"engine": "vllm", "performance": {"concurrency": 8}}}))
    return path


@pytest.mark.parametrize("argv,message", [
    (["--url", "localhost:8000"], "--url must start with http:// or https://"),
    (["--url", DEAD, "--concurrency", "0"], "--concurrency must be from 1"),
    (["--url", DEAD, "--concurrency", "1,,4"], "--concurrency takes positive integers"),
    (["--url", DEAD, "--concurrency", "-1"], "--concurrency takes positive integers"),
    (["--url", DEAD, "--concurrency", "99999"], "--concurrency must be from 1 to 4,096"),
    (["--url", DEAD, "--input-tokens", "0"], "--input-tokens must be from 1"),
    (["--url", DEAD, "--output-tokens", "0"], "--output-tokens must be from 1"),
    (["--url", DEAD, "--num-prompts", "0"], "--num-prompts must be from 1"),
    (["--url", DEAD, "--max-seconds", "nan"], "--max-seconds must be a finite number"),
    (["--url", DEAD, "--max-seconds", "7200"], "--max-seconds must be above 0 and at most 3600"),
    (["--url", DEAD, "--request-timeout", "0"], "--request-timeout must be above 0"),
    (["--url", DEAD, "--predicted", "absent.json"], "cannot read --predicted absent.json"),
    (["--url", DEAD, "--append-calibration", "cal.jsonl"], "--append-calibration needs --gpu, --engine, --engine-version"),
    (["--url", DEAD, "--append-calibration", "no/cal.jsonl", "--gpu", "x"], "the folder no does not exist"),
    (["--url", DEAD, "--gpu", "1x H100"], "use them with --append-calibration FILE"),
    (["--url", DEAD], f"cannot list the models at {DEAD}/v1/models: cannot connect"),
    (["--url", DEAD, "--model", "m"], f"the first request to {DEAD}/v1 failed: cannot connect"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_prediction_for_an_unmeasured_level_is_refused_before_any_request(plan_file, capsys):
    assert main(["bench", "--url", DEAD, "--concurrency", "1,4", "--predicted", str(plan_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --predicted {plan_file} is for concurrency 8, which --concurrency 1,4 does not "
                   "measure: add 8")


def test_calibration_takes_engine_and_version_from_the_prediction(plan_file, capsys, tmp_path):
    # the prediction gives the engine (vllm) but no version: only --engine-version is missing
    assert main(["bench", "--url", DEAD, "--concurrency", "8", "--predicted", str(plan_file), "--gpu", "1x H100",
                 "--append-calibration", str(tmp_path / "cal.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == ("error: --append-calibration needs --engine-version: a calibration "
                                               "row names the hardware and engine it was measured on")
