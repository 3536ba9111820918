"""Issue 19: no flag is silently ignored. The flags of ``plan MODEL`` are enumerated from the command
itself: each is either used by every estimate (ALWAYS_USED) or has a rule saying what it needs
(FLAG_NEEDS); each rule is proven by a real command line that gives the flag without what it needs."""
from __future__ import annotations

import contextlib
import io

import pytest

from planner.cli import main
from planner.cli.validate import ALWAYS_USED, FLAG_NEEDS

MODEL = "llama3-8b"
# A value for each conditional flag (what the user would type).
VALUES = {"backend": ["--backend", "sagemaker"], "yes": ["--yes"], "force": ["--force"], "output_dir": ["--output-dir", "o"],
          "max_steps": ["--max-steps", "5"], "learning_rate": ["--learning-rate", "1e-4"],
          "save_steps": ["--save-steps", "5"], "experiment": ["--experiment", "e"],
          "role": ["--role", "arn:aws:iam::123456789012:role/x"], "bucket": ["--bucket", "b"], "restart": ["--restart"],
          "dry_run": ["--dry-run"], "wait": ["--wait"], "platform": ["--platform", "ec2", "--gpu", "RTX 4090"],
          "max_cost": ["--max-cost", "5", "--gpu", "RTX 4090"], "max_lora_rank": ["--max-lora-rank", "8"]}


def _plan_params() -> list[str]:
    import typer.main

    from planner.cli import app

    group = typer.main.get_command(app)
    command = group.commands["plan"] if "plan" in group.commands else next(
        c for n, c in group.commands.items() if getattr(c, "hidden", False))
    return [p.name for p in command.params]


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_every_flag_is_classified_once():
    params = _plan_params()
    assert params, "no parameters found for the plan command"
    unclassified = [p for p in params if p not in FLAG_NEEDS and p not in ALWAYS_USED]
    twice = [p for p in params if p in FLAG_NEEDS and p in ALWAYS_USED]
    stale = [p for p in (*FLAG_NEEDS, *ALWAYS_USED) if p not in params]
    assert not unclassified and not twice and not stale, (unclassified, twice, stale)


@pytest.mark.parametrize("name", sorted(FLAG_NEEDS))
def test_a_flag_without_what_it_needs_is_refused(name):
    argv = [MODEL, "--mode", "lora", *VALUES[name]]
    code, err = run_main(argv)
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, (argv, err)
    assert f"--{name.replace('_', '-')}" in errors[0], (argv, errors)


def test_wait_with_dry_run_is_refused():
    code, err = run_main([MODEL, "--mode", "lora", "--execute", "--backend", "sagemaker", "--dataset", "s3://b/d.jsonl",
                          "--dry-run", "--wait"])
    assert code == 2 and "--wait does nothing here" in err


def test_an_empty_bucket_is_refused():
    code, err = run_main([MODEL, "--mode", "lora", "--execute", "--backend", "sagemaker", "--dataset", "s3://b/d.jsonl",
                          "--dry-run", "--bucket", ""])
    assert code == 2 and "--bucket is empty" in err


def test_a_newline_in_a_value_stays_on_one_error_line():
    code, err = run_main(["llama\nerror: injected", "--mode", "lora"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "llama\\nerror: injected" in lines[0]


def test_flags_that_are_used_still_work(tmp_path):
    code, _ = run_main([MODEL, "--mode", "lora", "--emit-config", str(tmp_path / "l"), "--max-steps", "5",
                        "--experiment", "e", "--output-dir", str(tmp_path / "o")])
    assert code == 0


def test_serve_adapter_root_without_runtime_loading_is_refused(tmp_path):
    code, err = run_main(["serve", str(tmp_path), "--adapter-root", str(tmp_path)])
    assert code == 2 and "--adapter-root does nothing here" in err and "--allow-runtime-adapters" in err


@pytest.mark.parametrize("flag", [["--max-batch-size", "8"], ["--batch-window-ms", "5"], ["--timeout-keep-alive", "9"],
                                  ["--quiet"]])
def test_local_engine_flags_with_vllm_are_refused(tmp_path, flag):
    code, err = run_main(["serve", str(tmp_path), "--engine", "vllm", *flag])
    assert code == 2 and f"{flag[0]} does nothing here" in err, err


@pytest.mark.parametrize("argv,needle", [
    (["prices", "show", "--regions", "--region", "us-east-1"], "--region does nothing here"),
    (["prices", "show", "--regions", "--platform", "ec2"], "--platform does nothing here"),
    (["eval", "some-adapter", "--dataset", "d.jsonl", "--no-track", "--experiment", "e"], "--experiment does nothing here"),
])
def test_other_commands_refuse_flags_they_would_ignore(argv, needle):
    code, err = run_main(argv)
    assert code == 2 and needle in err, err
