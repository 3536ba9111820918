"""Issue 19, probe round 2: what a second hostile probe found, each case a real process or real files."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def plan(*argv: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    full.pop("PLAN_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "planner", *argv], capture_output=True, text=True, env=full,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def one_error(p: subprocess.CompletedProcess, needle: str) -> None:
    errors = [line for line in p.stderr.splitlines() if line.startswith("error")]
    assert p.returncode != 0 and "Traceback" not in p.stderr and len(errors) == 1 and needle in errors[0], p.stderr


@pytest.mark.parametrize("what", ["fifo", "/dev/zero"])
def test_bench_predicted_that_never_ends_is_refused_not_hung(tmp_path, what):
    path = tmp_path / "p.json"
    if what == "fifo":
        os.mkfifo(path)
    else:
        path = Path(what)
    one_error(plan("bench", "--url", "http://127.0.0.1:9", "--predicted", str(path)), "not a regular file")


def test_serve_a_fifo_as_config_json_is_refused_not_hung(tmp_path):
    os.mkfifo(tmp_path / "config.json")
    one_error(plan("serve", str(tmp_path)), "config.json")


def test_serve_a_missing_adapter_root_is_refused(tmp_path):
    one_error(plan("serve", str(tmp_path), "--allow-runtime-adapters", "--adapter-root", str(tmp_path / "no")),
              "is not a folder")


AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
       "AWS_MAX_ATTEMPTS": "1"}


@pytest.mark.parametrize("argv", [["jobs", "list"], ["endpoints", "list"], ["registry", "list", "llama3-8b"]])
def test_a_region_with_a_newline_is_one_line(argv):
    pytest.importorskip("boto3")
    one_error(plan(*argv, "--region", "us-east-1\n", env=AWS), "is not an AWS region name")


@pytest.mark.slow  # boto3 loads its service models: seconds per process
@pytest.mark.parametrize("argv", [["jobs", "status", ""], ["deploy", "", "--name", "e"], ["registry", "register", ""]])
def test_a_name_the_aws_schema_refuses_is_one_line(argv):
    pytest.importorskip("boto3")
    one_error(plan(*argv, "--region", "us-east-1", env=AWS), "Invalid length")


def test_a_mode_flag_under_another_mode_is_refused():
    one_error(plan("llama3-8b", "--mode", "full", "--lora-r", "8"), "--lora-r does nothing here")
    one_error(plan("llama3-8b", "--mode", "lora", "--dataset", "d.jsonl", "--no-pricing"), "--dataset does nothing")
    ok = plan("llama3-8b", "--mode", "inference", "--adapters", "2", "--lora-r", "8", "--no-pricing")
    assert ok.returncode == 0, ok.stderr


def test_usd_with_a_rate_is_refused_not_relabelled():
    one_error(plan("llama3-8b", "--mode", "lora", "--currency", "USD", "--usd-rate", "1.1"), "--usd-rate 1.1 with --currency USD")


def test_a_vanishing_usd_rate_is_refused():
    one_error(plan("llama3-8b", "--mode", "lora", "--currency", "EUR", "--usd-rate", "1e-320"), "--usd-rate must be at least 1e-06")
