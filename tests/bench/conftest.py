"""A real `plan serve` process on 127.0.0.1 over the tiny model, for `plan bench` to measure.

The server is its own process (one torch thread, as the serve tests use), so the load generator
and the server do not share an interpreter: what the bench measures is HTTP to another process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.served import wait_for_url
from tests.tiny import make_tiny_model

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("bench") / "tiny")


@pytest.fixture(scope="session")
def serve_url(tiny_dir):
    """`python -m planner serve TINY --port 0`; yields its http://127.0.0.1:PORT; stops it after."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "planner", "serve", str(tiny_dir), "--served-model-name", MODEL,
                             "--port", "0", "--dtype", "fp32", "--quiet"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_url(proc, 180)
        assert url, f"plan serve did not start: rc={proc.poll()}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
