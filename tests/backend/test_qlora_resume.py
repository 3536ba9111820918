"""QLoRA resumed from a checkpoint matches the uninterrupted run (real bitsandbytes 4-bit on the CPU).

Without ``checkpoints.keep_trained_dtypes`` the resumed run trained fp32 LoRA weights where the
uninterrupted one trains bf16 ones (TRL casts a quantized model's adapters to bf16; PEFT's
checkpoint load casts them back to fp32): the losses drifted by ~1e-4 relative from the first step
after the resume. Both runs here share one process, so the match is exact up to float noise.
"""
from __future__ import annotations

import shutil

import pytest

from backend.train import train
from planner.plan import Plan
from tests.backend.conftest import make_plan

pytestmark = pytest.mark.slow


def test_resumed_qlora_run_matches_an_uninterrupted_one(tmp_path, tiny_model, facts_file):
    kw = dict(learning_rate=3e-2, max_steps=8, save_steps=4, logging_steps=1, save_total_limit=None,
              register=False, track=False)
    clean = make_plan(tiny_model, "qlora", facts_file, tmp_path / "clean", **kw)
    reference = train(Plan.from_dict(clean))
    plan = make_plan(tiny_model, "qlora", facts_file, tmp_path / "resumed", **kw)
    train(Plan.from_dict(plan))
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "checkpoint-8")  # as if killed before step 8's save
    resumed = train(Plan.from_dict(plan))
    assert resumed["resumed_from"][-1].endswith("checkpoint-4")
    assert [e["step"] for e in resumed["train_loss"]] == list(range(1, 9))
    assert [e["loss"] for e in resumed["train_loss"]] == pytest.approx(
        [e["loss"] for e in reference["train_loss"]], rel=1e-6, abs=0)
