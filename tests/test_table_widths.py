"""Issue 18: at 80 and 120 columns, the names a user must type are never cut (golden outputs)."""
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
