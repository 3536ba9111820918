"""scripts/gpu_check.py --smoke: the GPU check's own code on the CPU with a tiny model (real
transformers/PEFT/TRL through backend.train); measured fields are null without a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # trains and loads a tiny model through backend.train (40-50 s)
def test_gpu_check_smoke(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--smoke", "--out", str(tmp_path / "out"),
                          "--workdir", str(tmp_path / "work")], check=False, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "gpu_check.jsonl").read_text().splitlines()]
    assert [r["job"]["mode"] for r in rows] == ["inference", "lora", "full"]
    for r in rows:
        assert set(r["predicted"]) >= {"peak_allocated_bytes", "reserved_bytes", "total_bytes", "tokens_per_second"}
        assert r["predicted"]["reserved_bytes"] >= r["predicted"]["peak_allocated_bytes"] > 0
        assert set(r["measured"]) >= {"peak_allocated_bytes", "reserved_bytes", "nvml_process_bytes", "tokens_per_second"}
        assert all(v is None for v in r["measured"].values())
    assert rows[1]["path"].startswith("backend.train.train")
    md = (tmp_path / "out" / "gpu_check.md").read_text()
    assert md.count("\n| tiny |") == 3
