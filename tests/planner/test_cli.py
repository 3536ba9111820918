"""The CLI contract: flags, JSON keys, one-line errors, golden human output, no torch import."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import main
from tests.cli import run_subprocess as run_cli

GOLDEN = Path(__file__).parent.parent / "golden"



def test_json_contract(capsys):
    code = main(["llama3-70b", "--mode", "qlora", "--json", "--no-pricing"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["name"] == "Meta-Llama-3-70B"
    assert out["model"]["params"] == 70_553_706_496
    assert out["model"]["trainable_params"] == 207_093_760
    assert (out["mode"], out["seq_len"], out["batch_size"]) == ("qlora", 2048, 1)
    mem = out["memory"]
    assert mem["peak_allocated_bytes"] == sum(mem["breakdown"].values())
    assert mem["total_bytes"] > mem["peak_allocated_bytes"]
    assert out["seed_rule"]["bytes"] > 0


def test_all_contract_flags_are_accepted(capsys):
    code = main(["llama3-8b", "--mode", "lora", "--precision", "bf16", "--seq-len", "512", "--batch-size", "2",
                 "--no-gradient-checkpointing", "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.1",
                 "--lora-targets", "q_proj,v_proj", "--optimizer", "adamw-8bit", "--json", "--no-pricing"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"]["trainable_params"] == 32 * 8 * (4096 + 4096 + 4096 + 1024)
    assert out["gradient_checkpointing"] is False
    assert main(["phi3-mini", "--mode", "prompt-tuning", "--num-virtual-tokens", "30", "--json", "--no-pricing"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["trainable_params"] == 30 * 3072


@pytest.mark.parametrize("args, message", [
    (["llama9", "--mode", "qlora"], "unknown model 'llama9'; did you mean llama3-8b"),
    (["llama3-8b", "--seq-len", "0"], "--seq-len must be a positive integer"),
    (["llama3-8b", "--batch-size", "-2"], "--batch-size must be a positive integer"),
    (["llama3-8b", "--mode", "pretrain"], "unknown mode 'pretrain'"),
    (["llama3-8b", "--precision", "fp8"], "unknown precision 'fp8'"),
    (["llama3-8b", "--mode", "qlora", "--precision", "bf16"], "does not work with --precision bf16"),
    (["llama3-8b", "--mode", "full", "--precision", "int4"], "does not work with --precision int4"),
    (["llama3-8b", "--lora-r", "0"], "LoRA rank must be positive"),
    (["llama3-8b", "--lora-targets", "foo_proj"], "--lora-targets foo_proj not in"),
    (["./missing/config.json"], "no such file"),
    (["llama3-8b", "--seq-len", "abc"], "Invalid value for '--seq-len'"),
    (["llama3-8b", "--bogus"], "No such option: --bogus"),
])
def test_bad_input_is_one_line(args, message):
    res = run_cli(*args, "--no-pricing")
    assert res.returncode == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_malformed_and_incomplete_config(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{oops")
    res = run_cli(str(bad), "--no-pricing")
    assert res.returncode == 2 and "not valid JSON" in res.stderr and "Traceback" not in res.stderr
    bad.write_text('{"model_type": "llama"}')
    res = run_cli(str(bad), "--no-pricing")
    assert res.returncode == 2 and "lacks hidden_size" in res.stderr


def test_debug_env_shows_traceback():
    res = run_cli("llama9", env={"PLAN_DEBUG": "1"})
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_plan_does_not_import_torch():
    code = ("import sys; from planner.cli import main; main(['llama3-70b','--mode','qlora','--json']); "
            # click is not a declared dependency (typer vendors its own): importing it would break `pip install .`
            "bad=[m for m in ('torch','transformers','peft','boto3','sagemaker','click') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name, args", [
    ("qlora_llama3_70b", ["llama3-70b", "--mode", "qlora"]),
    ("inference_qwen2.5_7b", ["qwen2.5-7b", "--mode", "inference", "--seq-len", "8192"]),
    ("full_llama3.2_1b", ["llama3.2-1b", "--mode", "full", "--batch-size", "4", "--seq-len", "1024"]),
])
def test_golden_human_output(name, args):
    res = run_cli(*args, "--no-pricing")
    assert res.returncode == 0, res.stderr
    path = GOLDEN / f"estimate_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(res.stdout)
    assert res.stdout == path.read_text()


def test_no_arguments_prints_help():
    res = run_cli()
    assert res.returncode == 0 and "Usage: plan" in res.stdout and res.stderr == ""
