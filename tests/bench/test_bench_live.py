"""`plan bench` against a real `plan serve` process on 127.0.0.1 (tiny model, CPU): the figures are
positive and consistent, the tokens counted are the server's usage, and every run stops by itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from backend.bench import BenchSettings, run_bench
from tests.bench.conftest import MODEL, ROOT

pytestmark = pytest.mark.slow


def _ordered(p):
    return p is not None and 0 <= p.median <= p.p90 <= p.p99


def test_measured_figures_are_positive_and_consistent(serve_url):
    settings = BenchSettings(base_url=serve_url, concurrencies=(1, 3), input_tokens=24, output_tokens=12,
                             num_prompts=6, max_seconds=120)
    t0 = time.perf_counter()
    result = run_bench(settings)
    wall = time.perf_counter() - t0
    assert result.model == MODEL  # the first of GET /v1/models
    # the tests' tokenizer is word-level without BOS: the probes size the prompt to exactly 24 tokens
    assert result.words_per_prompt == 24
    assert sum(lv.duration_s for lv in result.levels) <= wall
    for lv in result.levels:
        assert (lv.requests_sent, lv.requests_ok, lv.requests_failed, lv.requests_cancelled) == (6, 6, 0, 0)
        for r in lv.records:
            assert r.ok and r.prompt_tokens == 24
            assert r.token_chunks == r.output_tokens <= 12  # one streamed chunk per token the server counted
            assert len(r.itl_s) == max(r.token_chunks - 1, 0) and min(r.itl_s, default=0) >= 0
            assert 0 < r.ttft_s <= r.e2e_s <= lv.duration_s
            assert r.e2e_s - r.ttft_s == pytest.approx(sum(r.itl_s))
        assert lv.output_tokens_total == sum(r.output_tokens for r in lv.records) > 0
        assert lv.output_tokens_per_second * lv.duration_s == pytest.approx(lv.output_tokens_total)
        assert lv.requests_per_second * lv.duration_s == pytest.approx(6)
        assert lv.input_tokens_mean == 24
        assert all(_ordered(p) for p in (lv.ttft_ms, lv.e2e_ms))
        assert lv.ttft_ms.median <= lv.e2e_ms.median and lv.ttft_ms.p99 <= lv.e2e_ms.p99
        assert lv.ttft_ms.median > 0 and lv.e2e_ms.p99 <= lv.duration_s * 1000


def _plan(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "planner", "bench", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def test_cli_json_beside_a_prediction_and_appended_as_calibration(serve_url, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"serving": {"engine": "plan-serve", "engine_version": "local",
                                            "performance": {"concurrency": 2, "output_tokens_per_second": 100.0,
                                                            "ttft_ms": 50.0, "itl_ms": None}}}))
    cal = tmp_path / "cal.jsonl"
    res = _plan("--url", serve_url + "/v1", "--concurrency", "2", "--input-tokens", "16", "--output-tokens", "8",
                "--num-prompts", "4", "--predicted", str(plan), "--append-calibration", str(cal),
                "--gpu", "CPU (2 cores)", "--json")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        "concurrency 2: 4 ok, 0 failed, 0 cut in " + res.stderr.splitlines()[0].split(" cut in ")[-1],
        f"appended 1 calibration row(s) to {cal}"]
    assert res.stderr.splitlines()[0].endswith(" s")
    doc = json.loads(res.stdout)
    (lv,) = doc["levels"]
    assert doc["model"] == MODEL and lv["requests_ok"] == 4 and lv["input_tokens_mean"] == 16
    by = {m["key"]: m for m in doc["comparison"]["metrics"]}
    assert by["output_tokens_per_second"]["measured"] == lv["output_tokens_per_second"] > 0
    assert by["ttft_ms"]["measured"] == lv["ttft_ms"]["median"]
    assert by["ttft_ms"]["error"] == pytest.approx(50.0 / lv["ttft_ms"]["median"] - 1)
    assert by["itl_ms"]["predicted"] is None and by["e2e_ms"]["predicted"] is None
    (row,) = [json.loads(x) for x in cal.read_text().splitlines()]
    assert row["source"] == "plan bench" and row["engine"] == "plan-serve" and row["engine_version"] == "local"
    assert row["gpu"] == "CPU (2 cores)" and row["model"] == MODEL and row["concurrency"] == 2
    assert row["output_tokens_per_s"] == lv["output_tokens_per_second"]
    assert row["ttft_ms"] == lv["ttft_ms"]["median"] and row["e2e_latency_ms"] == lv["e2e_ms"]["median"]
    assert row["predicted"]["ttft_ms"] == 50.0


def test_cli_table_and_a_run_that_stops_itself(serve_url):
    res = _plan("--url", serve_url, "--concurrency", "2", "--input-tokens", "8", "--output-tokens", "4",
                "--num-prompts", "100000", "--max-seconds", "1")
    assert res.returncode == 0, res.stderr
    assert "Measured throughput" in res.stdout and "TTFT" in res.stdout and " cut " in res.stdout
    res = _plan("--url", serve_url, "--concurrency", "2", "--input-tokens", "8", "--output-tokens", "4",
                "--num-prompts", "100000", "--max-seconds", "1", "--json")
    (lv,) = json.loads(res.stdout)["levels"]
    assert 0 < lv["requests_ok"] < 100000 and lv["requests_cancelled"] <= 2 and lv["duration_s"] >= 1


def test_server_refusals_are_one_line(serve_url):
    res = _plan("--url", serve_url, "--ignore-eos", "--input-tokens", "8", "--output-tokens", "4")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == (f"error: the first request to {serve_url}/v1 failed: HTTP 400: unsupported "
                                  "parameter 'ignore_eos': this server does not implement it")
    res = _plan("--url", serve_url, "--input-tokens", "300", "--output-tokens", "8")  # the tiny model's context: 256
    assert res.returncode == 2 and res.stderr.strip() == (
        f"error: a request of 300 input and 8 output tokens to {serve_url}/v1 failed: HTTP 400: the prompt is 300 "
        "tokens; this model's context is 256")
    res = _plan("--url", serve_url, "--model", "nope", "--input-tokens", "8")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith(f"error: the first request to {serve_url}/v1 failed: HTTP 404")
