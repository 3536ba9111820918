"""Every H100 calibration row within 5% of the measured peak_allocated (shared/calibration)."""
import json
from pathlib import Path

import pytest

from planner import Job, estimate

DATA = Path(__file__).parent.parent / "data" / "h100_calibration.jsonl"
ROWS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
MODEL = {"llama-3.2-1b": "llama3.2-1b", "qwen2.5-0.5b": "qwen2.5-0.5b"}
MODE = {"infer-bf16": "inference"}


def job_for(row):
    return Job(mode=MODE.get(row["mode"], row["mode"]), seq_len=row["seq"], batch_size=row["batch"],
               gradient_checkpointing=row["grad_ckpt"])


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}-{r['mode']}-s{r['seq']}-b{r['batch']}-ck{int(r['grad_ckpt'])}" for r in ROWS])
def test_peak_within_5_percent(row):
    est = estimate(MODEL[row["model"]], job_for(row))
    assert est.peak_allocated_bytes == pytest.approx(row["peak_allocated"], rel=0.05)
    if "trainable_params" in row:
        assert est.trainable_params == row["trainable_params"]


@pytest.mark.parametrize("row", [r for r in ROWS if r["mode"] == "qlora"][:1])
def test_nf4_weights_bytes(row):
    from planner import count_params, resolve
    from planner.weights import weight_bytes
    spec = resolve(MODEL[row["model"]])
    assert weight_bytes(spec, count_params(spec), "int4").total == pytest.approx(row["weights_bytes"], rel=0.002)  # rows differ by 1 MiB among themselves


def test_inference_kv_cache_matches_measured():
    for row in (r for r in ROWS if r["mode"] == "infer-bf16"):
        est = estimate(MODEL[row["model"]], job_for(row))
        assert est.breakdown["KV cache"] == row["kv_cache_bytes"]


def test_accuracy_doc_is_current():
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, str(root / "scripts" / "accuracy_report.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['model']}-{r['mode']}-s{r['seq']}-b{r['batch']}-ck{int(r['grad_ckpt'])}" for r in ROWS])
def test_reserved_replay_matches_measured(row):
    """The caching-allocator replay against torch.cuda.max_memory_reserved (issue 10's bounds are
    -3%/+8% on held-out rows; here every row is within -3.5%/+3%)."""
    est = estimate(MODEL[row["model"]], job_for(row))
    err = (est.reserved_bytes - row["peak_reserved"]) / row["peak_reserved"]
    assert -0.035 <= err <= 0.03
    assert est.reserved_bytes >= est.peak_allocated_bytes


def test_reserved_median_and_device_used():
    import statistics
    errs, gaps = [], []
    for row in ROWS:
        est = estimate(MODEL[row["model"]], job_for(row))
        errs.append(abs(est.reserved_bytes - row["peak_reserved"]) / row["peak_reserved"])
        gaps.append(est.total_bytes - row["device_used"])
    assert statistics.median(errs) < 0.02
    # total_bytes covers device_used on every row but the small prefill, which it misses by < 32 MiB
    assert sum(g < 0 for g in gaps) <= 1 and min(gaps) > -32 * 2**20
