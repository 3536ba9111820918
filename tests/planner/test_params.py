"""Exact parameter counts for every reference model (counts checked on the meta device upstream)."""
import csv
from pathlib import Path

import pytest

from planner import count_params, resolve

REF = Path(__file__).parent.parent / "data" / "reference_model_configs.csv"
ROWS = list(csv.DictReader(REF.open(encoding="utf-8-sig")))


def test_reference_has_25_models():
    assert len(ROWS) == 25


@pytest.mark.parametrize("row", ROWS, ids=[r["model"] for r in ROWS])
def test_exact_counts(row):
    spec = resolve(row["model"])
    counts = count_params(spec)
    total = int(row["params"].split()[0])
    assert counts.total == total
    assert counts.embedding == int(row["embed_params"])
    assert counts.lm_head == int(row["lm_head_params"])
    if "active" in row["params"]:
        assert counts.active == int(row["params"].split("active ")[1].split()[0])
    else:
        assert counts.active == counts.total
    # bf16 KV cache bytes per token, as in the reference table
    assert 2 * spec.num_hidden_layers * spec.kv_dim * 2 == int(row["kv_bytes_per_token_bf16"])


def test_groups_add_up():
    c = count_params(resolve("qwen2.5-7b"))
    assert c.embedding + c.attention + c.mlp + c.router + c.norms + c.lm_head == c.total


def test_mixtral_total_vs_active():
    c = count_params(resolve("mixtral-8x7b"))
    assert (c.total, c.active) == (46_702_792_704, 12_879_925_248)
    assert c.router == 32 * 4096 * 8
