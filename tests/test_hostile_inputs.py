"""Hostile inputs (issue 13): every bad flag, flag combination and malformed file is one line.

In-process through ``planner.cli.main(argv)`` (the console script's own entry) with hypothesis
over the numeric flags and their combinations; the light install, the never-answering AWS
endpoint and the corrupt user catalog run the CLI as a real subprocess. Each case asserts a
non-zero exit, exactly one ``error:`` line on stderr and no traceback.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cli import cli_env, run_main

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "tests" / "data" / "hostile"
MODEL = "llama3-8b"

# (flag, mode it applies to). Every value in BAD is wrong for every one of these flags.
PLAN_NUMERIC = [("--seq-len", "qlora"), ("--batch-size", "qlora"), ("--lora-r", "lora"), ("--lora-alpha", "lora"),
                ("--lora-dropout", "lora"), ("--num-virtual-tokens", "prompt-tuning"), ("--adapters", "inference"),
                ("--max-lora-rank", "inference"), ("--max-gpus", "qlora"), ("--tokens", "qlora"),
                ("--epochs", "qlora"), ("--usd-rate", "qlora"), ("--max-steps", "qlora"),
                ("--learning-rate", "qlora"), ("--save-steps", "qlora"), ("--max-cost", "qlora")]
BAD = ["nan", "NaN", "inf", "-inf", "+Infinity", "1e400", "-1", "-0.5", "9" * 25, "abc", "", "0x10", "1,5", "--"]


def assert_one_error_line(code: int, err: str, argv: list[str]) -> str:
    lines = err.strip().splitlines()
    assert code != 0, (argv, err)
    assert "Traceback" not in err, (argv, err)
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
    return errors[0]


# The fast tier's essence of the product below: every flag with one value of each kind of wrong
# (not a number, non-finite, negative, overflowing), and every bad value on one flag of each way a
# flag is parsed (an int option, a float option, --tokens' own parser).
ESSENCE = sorted({(f, m, v) for f, m in PLAN_NUMERIC for v in ("abc", "nan", "-1", "1e400")}
                 | {(f, m, v) for f, m in PLAN_NUMERIC if f in ("--seq-len", "--epochs", "--tokens") for v in BAD})


@pytest.mark.parametrize("flag,mode,value", ESSENCE, ids=[f"{f}={v}" for f, _, v in ESSENCE])
def test_bad_numeric_plan_flags_essence(flag, mode, value):
    _check_bad_numeric_flag((flag, mode), value, no_pricing=False)


# Every flag x every bad value, not a sample: a sampled search missed `--tokens=1,5` locally and CI found it.
@pytest.mark.slow
@pytest.mark.parametrize("no_pricing", [False, True])
@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("flag_mode", PLAN_NUMERIC, ids=[f for f, _ in PLAN_NUMERIC])
def test_bad_numeric_plan_flags_are_one_line(flag_mode, value, no_pricing):
    _check_bad_numeric_flag(flag_mode, value, no_pricing)


def _check_bad_numeric_flag(flag_mode, value, no_pricing):
    flag, mode = flag_mode
    if flag == "--max-cost" and value == "9" * 25:
        return  # a huge cap is a valid (if loose) cap: nothing to refuse
    extra = ["--currency", "EUR"] if flag == "--usd-rate" else []
    argv = [MODEL, "--mode", mode, f"{flag}={value}", *extra, *(["--no-pricing"] if no_pricing and flag not in (
        "--max-gpus", "--tokens", "--usd-rate", "--max-cost") else [])]
    line = assert_one_error_line(*run_main(argv)[::2], argv)
    assert flag in line or "--" + flag.lstrip("-").replace("-", " ") in line or "LoRA" in line, line


@pytest.mark.parametrize("argv, message", [
    ([MODEL, "--max-cost", "nan", "--execute", "--backend", "sagemaker", "--dry-run"],
     "--max-cost must be a finite number, got nan"),
    ([MODEL, "--learning-rate", "nan", "--no-pricing"], "--learning-rate must be a finite number, got nan"),
    ([MODEL, "--seq-len", "99999999999999999999999", "--no-pricing"], "--seq-len must be at most 16,777,216"),
    ([MODEL, "--mode", "inference", "--adapters", "1000000000"], "--adapters must be at most 10,000"),
    ([MODEL, "--spot", "--gpu", "RTX 4090"], "--spot prices cloud machines; --gpu checks your own GPU"),
    ([MODEL, "--dry-run"], "--dry-run applies to a SageMaker launch"),
    ([MODEL, "--wait", "--execute"], "--wait applies to a SageMaker launch"),
    ([MODEL, "--no-pricing", "--gpu", "RTX 4090"], "--no-pricing skips pricing, so --gpu would be ignored"),
    ([MODEL, "--no-pricing", "--region", "eu-west-1", "--max-cost", "5"], "--max-cost, --region would be ignored"),
    ([MODEL, "--restart"], "--restart starts a local run over"),
    ([MODEL, "--mode", "inference", "--execute"], "--mode inference has nothing to train"),
    (["llama4-scout", "--mode", "lora", "--execute", "--no-pricing"], "pass --lora-targets q_proj,k_proj,v_proj"),
    (["serve", "x", "--port", "70000"], "--port must be at most 65,535"),
    (["serve", "x", "--batch-window-ms", "nan"], "--batch-window-ms must be a finite number"),
    (["jobs", "wait", "j", "--poll", "inf"], "--poll must be a finite number"),
    (["jobs", "wait", "j", "--timeout", "nan"], "--timeout must be a finite number"),
    (["eval", "a", "--dataset", "d", "--threshold", "nan"], "--threshold must be a finite number"),
    (["deploy", "j", "--name", "e", "--count", "0"], "--count must be a positive integer"),
    (["endpoints", "invoke", "e", "p", "--max-tokens", "9999999999"], "--max-tokens"),
])
def test_each_hostile_case_is_one_named_line(argv, message):
    code, _, err = run_main(argv)
    assert message in assert_one_error_line(code, err, argv)


def test_seq_len_beyond_the_models_context_warns_and_estimates():
    code, out, err = run_main([MODEL, "--seq-len", "200000", "--no-pricing", "--json"])
    assert code == 0 and '"total_bytes"' in out
    assert err.strip() == ("warning: --seq-len 200,000 is beyond Meta-Llama-3-8B's context of 8,192 tokens "
                           "(max_position_embeddings): quality past it is not what the model was trained for")


def test_the_adapter_cap_is_inclusive_and_computes_without_a_huge_list():
    code, out, err = run_main([MODEL, "--mode", "inference", "--adapters", "10000", "--no-pricing", "--json"])
    assert code == 0, err


CONFLICTS = {"--spot": [], "--gpu": ["RTX 4090"], "--no-pricing": [], "--dry-run": [], "--restart": [],
             "--wait": [], "--region": ["eu-west-1"], "--max-cost": ["5"], "--tokens": ["1000"]}


@settings(max_examples=15, deadline=None)
@given(st.lists(st.sampled_from(sorted(CONFLICTS)), min_size=2, max_size=4, unique=True))
def test_random_flag_combinations_are_run_or_refused_in_one_line(flags):
    argv = [MODEL]
    for f in flags:
        argv += [f, *CONFLICTS[f]]
    code, out, err = run_main(argv)
    assert "Traceback" not in err
    refused = (("--spot" in flags and "--gpu" in flags) or "--dry-run" in flags or "--restart" in flags
               or "--wait" in flags or ("--no-pricing" in flags and len(set(flags) & {
                   "--spot", "--gpu", "--region", "--max-cost", "--tokens"}) > 0))
    if refused:
        assert_one_error_line(code, err, argv)
    else:
        assert code == 0, (argv, err)


# ---- malformed files ----

@pytest.mark.parametrize("case", ["trunc", "list"])
def test_malformed_config_files_are_one_line(case):
    argv = [str(HOSTILE / "configs" / case), "--no-pricing"]
    assert_one_error_line(*run_main(argv)[::2], argv)


@pytest.mark.parametrize("case", ["nan", "big", "bin", "deep"])
def test_config_files_with_non_finite_binary_or_deep_json_are_one_line(case, tmp_path):
    if case == "deep":
        (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
        path = tmp_path
    else:
        path = HOSTILE / "configs" / case
    argv = [str(path), "--no-pricing"]
    assert_one_error_line(*run_main(argv)[::2], argv)


@pytest.mark.parametrize("name", ["binary.csv", "missing_columns.csv", "bad_number.csv"])
def test_a_corrupt_user_price_catalog_warns_once_and_the_bundled_one_is_used(name, tmp_path):
    shutil.copy(HOSTILE / "prices" / name, tmp_path / "prices.csv")
    res = subprocess.run([sys.executable, "-m", "planner", MODEL, "--json"], capture_output=True, text=True,
                         env=cli_env(PLAN_CACHE_DIR=str(tmp_path)), timeout=120)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    warned = [ln for ln in res.stderr.splitlines() if "ignoring the user price catalog" in ln]
    assert len(warned) == 1 and warned[0].startswith("warning: "), res.stderr
    assert '"candidates"' in res.stdout


# ---- the light install: a real process whose heavy modules cannot be imported ----

LIGHT = "torch,transformers,peft,trl,accelerate,datasets,fastapi,uvicorn,boto3,botocore,sagemaker,lm_eval"


@pytest.mark.parametrize("argv, extra", [
    (["serve", "x"], "plan serve needs the serve extra"),
    (["eval", "x", "--dataset", "d.jsonl"], "plan eval needs the train extra"),
    (["jobs", "list"], "plan jobs list needs the aws extra"),
    (["endpoints", "list"], "plan endpoints list needs the aws extra"),
    (["registry", "list"], "plan registry list needs the aws extra"),
    (["deploy", "job", "--name", "ep"], "plan deploy needs the aws extra"),
    (["adapters", "merge", "x"], "plan adapters merge needs the train extra"),
    (["prices", "refresh", "--api"], "plan prices refresh --api needs the aws extra"),
    ([MODEL, "--execute", "--backend", "sagemaker"], "plan --execute needs the aws extra"),
    ([MODEL, "--execute", "--dataset", "DATA"], "plan --execute needs the train extra"),
])
def test_the_light_install_names_the_extra_in_one_line(argv, extra, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    argv = [str(data) if a == "DATA" else a for a in argv]
    env = cli_env(PLAN_BLOCK_MODULES=LIGHT)
    env["PYTHONPATH"] = os.pathsep.join((str(HOSTILE / "blocker"), env["PYTHONPATH"]))
    res = subprocess.run([sys.executable, "-m", "planner", *argv], capture_output=True, text=True, env=env,
                         timeout=120, cwd=tmp_path)
    line = assert_one_error_line(res.returncode, res.stderr, argv)
    assert extra in line and "pip install 'llm-finetune-planner[" in line, line
    if argv[0] not in ("jobs", "endpoints", "registry"):
        return  # the groups check their extra in a callback, which must let --help through
    help_res = subprocess.run([sys.executable, "-m", "planner", *argv[:2], "--help"], capture_output=True,
                              text=True, env=env, timeout=120, cwd=tmp_path)
    assert help_res.returncode == 0 and "Usage:" in help_res.stdout, help_res.stderr


def test_the_blocker_really_blocks():
    env = cli_env(PLAN_BLOCK_MODULES="torch")
    env["PYTHONPATH"] = os.pathsep.join((str(HOSTILE / "blocker"), env["PYTHONPATH"]))
    res = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True, env=env)
    assert res.returncode == 1 and "ModuleNotFoundError: No module named 'torch'" in res.stderr


# ---- the network: an AWS endpoint that accepts and never answers ----

@pytest.fixture
def silent_port():
    """A real TCP server on 127.0.0.1 that accepts connections and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()
    for c in held:
        c.close()


def test_price_refresh_against_a_silent_endpoint_fails_in_one_line_in_bounded_time(silent_port, tmp_path):
    env = cli_env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent_port}", AWS_ACCESS_KEY_ID="testing",
                  AWS_SECRET_ACCESS_KEY="testing", PLAN_AWS_CONNECT_TIMEOUT="1", PLAN_AWS_READ_TIMEOUT="1",
                  PLAN_CACHE_DIR=str(tmp_path))
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "planner", "prices", "refresh", "--api"], capture_output=True, text=True,
                         env=env, timeout=120)
    elapsed = time.monotonic() - start
    line = assert_one_error_line(res.returncode, res.stderr, ["prices", "refresh"])
    assert line.startswith("error: cannot reach AWS (Read timeout") and "catalog is unchanged" in line
    # 3 attempts x 1 s read timeout plus standard-mode backoff; botocore's defaults waited minutes
    assert elapsed < 60, elapsed
    assert not (tmp_path / "prices.csv").exists()


def test_aws_sessions_carry_bounded_timeouts(monkeypatch):
    from backend.sagemaker.aws import boto_session
    from pricing.refresh import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, MAX_ATTEMPTS

    for k in ("PLAN_AWS_CONNECT_TIMEOUT", "PLAN_AWS_READ_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    cfg = boto_session("us-east-1").client("sagemaker").meta.config
    assert (cfg.connect_timeout, cfg.read_timeout) == (DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S)
    assert cfg.retries["total_max_attempts"] == MAX_ATTEMPTS


def test_bad_timeout_settings_are_one_line(monkeypatch):
    from planner.errors import PlannerError
    from pricing.refresh import aws_timeouts

    monkeypatch.setenv("PLAN_AWS_READ_TIMEOUT", "nan")
    with pytest.raises(PlannerError, match="PLAN_AWS_READ_TIMEOUT must be a positive number of seconds"):
        aws_timeouts()


# ---- --output-dir and --restart (backend/local.py) ----

def test_output_dir_that_is_a_file_is_one_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello"}\n')
    argv = [MODEL, "--mode", "lora", "--no-pricing", "--execute", "--yes", "--dataset", str(data),
            "--output-dir", str(data)]
    line = assert_one_error_line(*run_main(argv)[::2], argv)
    assert line == f"error: --output-dir {data} is a file, not a folder; pass a folder path"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the check cannot fail as root")
def test_output_dir_under_a_read_only_parent_is_one_line(tmp_path):
    from backend.local import check_writable
    from planner.errors import PlannerError

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(PlannerError, match="is not writable; pass a folder you can write to"):
            check_writable(ro / "run" / "sub")
    finally:
        ro.chmod(0o755)


def test_restart_lets_a_completed_run_be_trained_again_and_reaches_the_trainer(tmp_path):
    import json

    from backend.local import check_output_dir
    from planner.errors import PlannerError

    (tmp_path / "run.json").write_text(json.dumps({"status": "completed", "global_step": 3}))
    with pytest.raises(PlannerError, match="or --restart to train again"):
        check_output_dir(tmp_path)
    assert "moved aside (not deleted)" in check_output_dir(tmp_path, restart=True)
    # the trainer's own parser accepts the flag launch() passes on
    res = subprocess.run([sys.executable, "-m", "backend.train", "--help"], capture_output=True, text=True,
                         env=cli_env(), timeout=120)
    assert "--restart" in res.stdout
