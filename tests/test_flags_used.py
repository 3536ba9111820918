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
          "max_cost": ["--max-cost", "5", "--gpu", "RTX 4090"], "max_lora_rank": ["--max-lora-rank", "8"],
          # probe round 2: one mode's shape flags under another mode (the last --mode wins), data without a use
          "lora_r": ["--lora-r", "8", "--mode", "full"], "lora_targets": ["--lora-targets", "q_proj", "--mode", "full"],
          "lora_alpha": ["--lora-alpha", "8", "--mode", "full"], "lora_dropout": ["--lora-dropout", "0.1", "--mode", "full"],
          "num_virtual_tokens": ["--num-virtual-tokens", "8"],
          "gradient_checkpointing": ["--gradient-checkpointing", "--mode", "inference"],
          "optimizer": ["--optimizer", "adamw", "--mode", "inference"],
          "dataset": ["--dataset", "d.jsonl", "--no-pricing"], "epochs": ["--epochs", "2"]}


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


# Probe round 2: every other command's flags, enumerated from the commands themselves. Each flag is either
# used whenever it is given (USED) or refused, in one line, in the combination where it would do nothing
# (REFUSED: a real command line that proves it). A new flag fails test_every_command_flag_is_classified
# until it is put in one of the two.
USED = {
    "models": {"as_json"},
    "serve": {"model", "adapter", "port", "dtype", "allow_runtime_adapters", "max_loras", "engine"},
    "eval": {"name", "dataset", "general", "base", "threshold", "max_examples", "exact_match", "track",
             "fail_on_forgetting", "lm_eval_tasks", "as_json"},
    "deploy": {"source", "name", "role", "instance_type", "count", "adapter_name", "approval", "wait", "region",
               "as_json"},
    "bench": {"url", "concurrency", "input_tokens", "output_tokens", "num_prompts", "max_seconds", "request_timeout",
              "model", "ignore_eos", "api_key", "seed", "predicted", "append_calibration", "as_json"},
    "prices refresh": {"region", "api", "as_json"},
    "prices show": {"regions", "as_json"},
    "adapters list": {"as_json"},
    "adapters show": {"name", "as_json"},
    "adapters delete": {"name", "yes"},
    "adapters merge": {"name", "output", "base", "dtype", "verify", "as_json"},
    "jobs list": {"region", "all_jobs", "status", "limit", "as_json"},
    "jobs status": {"name", "region", "as_json"},
    "jobs wait": {"name", "region", "poll", "timeout", "as_json"},
    "jobs fetch": {"name", "adapter_name", "region", "as_json"},
    "endpoints list": {"region", "as_json"},
    "endpoints status": {"name", "region", "as_json"},
    "endpoints invoke": {"name", "prompt", "adapter", "max_tokens", "region"},
    "endpoints delete": {"name", "region", "as_json"},
    "registry register": {"job", "adapter_name", "approval", "region", "as_json"},
    "registry list": {"base_model", "region", "as_json"},
}
DEAD = "http://127.0.0.1:9"
REFUSED = {  # (command, flag) -> (argv that gives the flag where it does nothing, what the one error line says)
    ("prices refresh", "spot"): (["prices", "refresh", "--api", "--no-spot"], "--no-spot does nothing with --api"),
    ("serve", "adapter_root"): (["serve", "{tmp}", "--adapter-root", "{tmp}"], "--adapter-root does nothing here"),
    ("serve", "max_lora_rank"): (["serve", "{tmp}", "--max-lora-rank", "8"], "--max-lora-rank is for --engine vllm"),
    ("serve", "max_batch_size"): (["serve", "{tmp}", "--engine", "vllm", "--max-batch-size", "8"], "does nothing here"),
    ("serve", "batch_window_ms"): (["serve", "{tmp}", "--engine", "vllm", "--batch-window-ms", "5"], "does nothing here"),
    ("serve", "timeout_keep_alive"): (["serve", "{tmp}", "--engine", "vllm", "--timeout-keep-alive", "9"],
                                      "does nothing here"),
    ("serve", "quiet"): (["serve", "{tmp}", "--engine", "vllm", "--quiet"], "--quiet does nothing here"),
    ("serve", "served_model_name"): (["serve", "{tmp}", "--served-model-name", ""], "--served-model-name is empty"),
    ("serve", "api_key"): (["serve", "{tmp}", "--api-key", ""], "--api-key is empty"),
    ("serve", "host"): (["serve", "{tmp}", "--host", ""], "--host is empty"),
    ("eval", "experiment"): (["eval", "a", "--dataset", "d.jsonl", "--no-track", "--experiment", "e"],
                             "--experiment does nothing here"),
    ("eval", "lm_eval_include"): (None, "--lm-eval-include and --lm-eval-limit need --lm-eval-tasks"),
    ("eval", "lm_eval_limit"): (None, "--lm-eval-include and --lm-eval-limit need --lm-eval-tasks"),
    ("bench", "gpu"): (["bench", "--url", DEAD, "--gpu", "H100"], "use them with --append-calibration"),
    ("bench", "engine"): (["bench", "--url", DEAD, "--engine", "vllm"], "use them with --append-calibration"),
    ("bench", "engine_version"): (["bench", "--url", DEAD, "--engine-version", "0.19.0"],
                                  "use them with --append-calibration"),
    ("prices show", "region"): (["prices", "show", "--regions", "--region", "us-east-1"], "--region does nothing here"),
    ("prices show", "platform"): (["prices", "show", "--regions", "--platform", "ec2"], "--platform does nothing here"),
    ("adapters list", "base"): (["adapters", "list", "--base", ""], "--base is empty"),
}


def _commands() -> dict[str, list[str]]:
    import typer.main

    from planner.cli import app

    out: dict[str, list[str]] = {}

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        elif path[0] != "estimate":
            out[" ".join(path)] = [p.name for p in cmd.params]
    walk(typer.main.get_command(app), [])
    return out


def test_every_command_flag_is_classified():
    commands = _commands()
    assert set(commands) == set(USED), (set(commands) ^ set(USED))
    for cmd, params in commands.items():
        refused = {flag for c, flag in REFUSED if c == cmd}
        assert set(params) == USED[cmd] | refused and not USED[cmd] & refused, (cmd, set(params) ^ (USED[cmd] | refused))


@pytest.mark.parametrize("key", [k for k, (argv, _) in REFUSED.items() if argv is not None], ids=lambda k: "-".join(k))
def test_a_command_flag_where_it_does_nothing_is_refused(key, tmp_path):
    argv, needle = REFUSED[key]
    code, err = run_main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 2 and len(errors) == 1 and needle in errors[0], (argv, err)


def test_eval_lm_eval_flags_without_tasks_are_refused_in_the_code():
    """The eval rules fire after the adapter is found (a real adapter is slow to build): the refusal is
    read from the command's source, and the slow suite runs it (tests/adapters/test_lm_eval.py)."""
    import inspect

    from planner.cli import eval_cmd

    assert REFUSED[("eval", "lm_eval_limit")][1] in inspect.getsource(eval_cmd)
