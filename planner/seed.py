"""The founding notes' rule of thumb, computed so every output can show how far off it is.

Rule: 4 bytes per parameter for fp32 inference (2 at bf16, 1 at int8, 0.5 at int4); full
fine-tuning x6 of fp32 inference, i.e. 24 bytes per parameter; LoRA trains 1-5% of the weights
(we use the exact trainable count at x6) on top of the 16-bit weights; QLoRA does the same on a
4-bit model.
"""
from __future__ import annotations

from .breakdown import SeedRule
from .job import BYTES_PER_PARAM as _BYTES, Job
from .params import ParamCounts


def seed_rule(params: ParamCounts, job: Job, n_trainable: int) -> SeedRule:
    p = params.total
    if not job.kind.trains:
        b = _BYTES[job.precision]
        return SeedRule(int(p * b), f"{b:g} B/param x {p:,} params ({job.precision} inference)")
    if job.kind.trains_base:
        return SeedRule(24 * p, f"24 B/param x {p:,} params (4 B fp32 x 6 for training)")
    b = _BYTES[job.precision]
    return SeedRule(int(p * b) + 24 * n_trainable,
                    f"{b:g} B/param x {p:,} frozen params + 24 B x {n_trainable:,} trainable")
