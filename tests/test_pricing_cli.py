"""plan's pricing flags through the CLI: JSON contract, exit codes, one-line errors, golden output."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from planner import estimate
from tests.cli import run
from pricing.catalog import load_catalog
from pricing.costs import Money, plan_costs
from planner.cli.render_costs import render_costs

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def no_user_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))  # the bundled catalog only


def test_json_contract(capsys):
    code, out, err = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "100000000", "--json",
                         "--currency", "INR", "--usd-rate", "88.5")
    assert code == 0
    d = json.loads(out)
    rec = d["recommendation"]
    for key in ("instance_type", "platform", "region", "gpu_count", "strategy", "per_gpu_bytes", "usd_per_hour",
                "usd_per_month", "job_hours", "job_usd", "price_source", "price_as_of"):
        assert key in rec
    assert rec["job_usd"] == pytest.approx(rec["job_hours"] * rec["usd_per_hour"])
    assert rec["currency"]["code"] == "INR"
    for c in d["candidates"]:
        assert {"instance_type", "platform", "fits", "reason", "usd_per_hour"} <= set(c)
    assert d["pricing"]["objective"] == "job_usd" and d["pricing"]["tokens"] == 100_000_000
    assert "warning:" in err  # bundled prices are older than 90 days


def test_nothing_fits_exits_non_zero(capsys):
    code, out, err = run(capsys, "llama3.1-405b", "--mode", "full", "--max-gpus", "8")
    assert code == 1
    assert "Nothing to recommend: nothing fits: closest is" in out.replace("\n", " ")
    code, out, _ = run(capsys, "llama3.1-405b", "--mode", "full", "--max-gpus", "8", "--json")
    assert code == 1 and json.loads(out)["recommendation"] is None


@pytest.mark.parametrize("args,message", [
    (["--region", "us-east-9"], "unknown AWS region 'us-east-9'; did you mean us-east-2?"),
    (["--gpu", "RTX 9090"], "unknown GPU 'RTX 9090'; did you mean 'RTX 5090'?"),
    (["--tokens", "-5"], "--tokens must be a positive integer"),
    (["--epochs", "0"], "--epochs must be a positive number"),
    (["--max-gpus", "0"], "--max-gpus must be a positive integer"),
    (["--platform", "gcp"], "unknown platform 'gcp'"),
    (["--currency", "INR"], "--currency and --usd-rate go together"),
    (["--currency", "RUPEES", "--usd-rate", "88"], "three-letter ISO 4217 code"),
    (["--currency", "INR", "--usd-rate", "-1"], "--usd-rate must be a positive number"),
    (["--dataset", "/no/such/file.jsonl"], "no such data file"),
])
def test_bad_input_is_one_line(capsys, args, message):
    code, out, err = run(capsys, "llama3-8b", "--mode", "qlora", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_dataset_tokens_are_counted(capsys, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"text": "x" * 400}) for _ in range(10)) + "\n")
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--dataset", str(data), "--json")
    assert code == 0
    p = json.loads(out)["pricing"]
    # 400 characters / 4 + the EOS the trainer appends, per record
    assert p["tokens"] == 1010 and p["tokens_source"] == "--dataset (estimate)"
    assert any("4 characters per token" in n for n in p["notes"])


def test_local_gpu(capsys):
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--gpu", "rtx 4090", "--json")
    d = json.loads(out)
    assert code == 0 and d["recommendation"]["platform"] == "local"
    assert d["pricing"]["local_gpu"]["largest_batch_size"] >= 1
    code, _, _ = run(capsys, "llama3-70b", "--mode", "full", "--gpu", "H100", "--json")
    assert code == 1


def test_prices_show(capsys):
    code, out, err = run(capsys, "prices", "show", "--region", "us-east-1", "--platform", "sagemaker")
    assert code == 0 and "48 prices (bundled catalog)" in out and "older than 90 days" in err
    code, out, _ = run(capsys, "prices", "show", "--platform", "sagemaker", "--json")
    rows = json.loads(out)["prices"]
    assert {r["platform"] for r in rows} == {"sagemaker"} and all(r["source"] and r["as_of"] for r in rows)
    code, _, err = run(capsys, "prices", "show", "--region", "nowhere")
    assert code == 2 and "unknown AWS region" in err


@pytest.mark.parametrize("name,model,mode,kw", [
    ("pricing_llama3-8b_qlora.txt", "llama3-8b", "qlora", {"tokens": 10**9, "money": Money("INR", 88.5)}),
    ("pricing_llama3-70b_full.txt", "llama3-70b", "full", {"tokens": 10**9, "platform": "ec2"}),
])
def test_golden_render(name, model, mode, kw):
    costs = plan_costs(estimate(model, mode=mode), load_catalog(user_dir=False), **kw)
    buf = io.StringIO()
    render_costs(Console(file=buf, width=100, no_color=True, color_system=None, highlight=False), costs)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(buf.getvalue())
    assert buf.getvalue() == path.read_text()
