"""Issue 18: at 80 and 120 columns, the names a user must type are never cut (golden outputs)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
ROOT = Path(__file__).resolve().parents[1]
CASES = {"models": ["models"], "prices_show": ["prices", "show", "--region", "us-east-1", "--platform", "ec2"],
         "alternatives_llama3-70b_qlora": ["llama3-70b", "--mode", "qlora", "--tokens", "50M"]}


def run(args, width, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PLAN_"))}
    env.update(COLUMNS=str(width), NO_COLOR="1", HF_HUB_OFFLINE="1", PLAN_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("name", sorted(CASES))
def test_names_whole_at_width(name, width, tmp_path):
    res = run(CASES[name], width, tmp_path)
    assert res.returncode == 0, res.stderr
    out = "\n".join(line.rstrip() for line in res.stdout.splitlines()) + "\n"
    assert all(len(line) <= width for line in out.splitlines())
    assert "…" not in out
    path = GOLDEN / f"width{width}_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()


def _store(home: Path) -> None:
    """Two adapters with names as long as people give them, fixed dates (record.json as the store writes it)."""
    rows = [("llama3-8b-qlora-customer-support-v2", "meta-llama/Meta-Llama-3-8B-Instruct", "qlora", 1200, 0.8123),
            ("mistral-7b-lora-legal-summaries-2026-11", "mistralai/Mistral-7B-Instruct-v0.3", "lora", 350, 1.5)]
    for name, base, mode, steps, loss in rows:
        folder = home / "adapters" / name
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 16}))
        (folder / "adapter_model.safetensors").write_text("x")
        (folder / "record.json").write_text(json.dumps({
            "name": name, "base_model": base, "created": "2026-11-30T10:00:00+00:00",
            "metadata": {"mode": mode, "peft": {"lora_r": 16}, "dataset": {"source": "data/train.jsonl"},
                         "metrics": {"global_step": steps, "train_loss": loss, "eval_loss": None}}}))


@pytest.mark.parametrize("width", [80, 120])
def test_adapter_names_whole_at_width(width, tmp_path):
    home = tmp_path / "home"
    _store(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PLAN_"))}
    env.update(COLUMNS=str(width), NO_COLOR="1", PLAN_HOME=str(home), PLAN_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    res = subprocess.run([sys.executable, "-m", "planner", "adapters", "list"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = "\n".join(line.rstrip() for line in res.stdout.splitlines()) + "\n"
    assert all(len(line) <= width for line in out.splitlines()) and "…" not in out
    assert "llama3-8b-qlora-customer-support-v2" in out and "meta-llama/Meta-Llama-3-8B-Instruct" in out
    path = GOLDEN / f"width{width}_adapters_list.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(out)
    assert out == path.read_text()
