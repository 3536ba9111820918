"""PLACEHOLDER: being replaced by the full memory model (weights only for now)."""
from __future__ import annotations

from .estimate import MemoryEstimate, MemoryTerm, SeedRule


def build_estimate(spec, params, job):
    w = params.total * 2
    terms = (MemoryTerm("weights", w, "weights", "params x 2"),)
    return MemoryEstimate(model=spec, params=params, job=job, trainable_params=0, terms=terms,
                          peak_allocated_bytes=w, allocator_slack_bytes=0, cuda_context_bytes=0,
                          total_bytes=w, phase="placeholder", seed_rule=SeedRule(params.total * 4, "4 B/param"))
