"""The public ``estimate`` entry point (its result types live in planner/breakdown.py)."""
from __future__ import annotations

from typing import Any

from .breakdown import GIB, KINDS, MemoryEstimate, MemoryTerm, SeedRule
from .job import Job
from .memory import build_estimate
from .params import count_params
from .registry import resolve
from .spec import ModelSpec

__all__ = ["GIB", "KINDS", "MemoryEstimate", "MemoryTerm", "SeedRule", "estimate"]


def estimate(model: str | ModelSpec, job: Job | None = None, **job_fields: Any) -> MemoryEstimate:
    """Estimate peak GPU memory for ``job`` on ``model`` (a name, alias, path or ModelSpec).

    ``estimate("llama3-70b", mode="qlora", seq_len=4096)`` is shorthand for building the Job.
    """
    spec = resolve(model) if isinstance(model, str) else model
    if job is None:
        job = Job(**job_fields)
    elif job_fields:
        job = job.with_(**job_fields)
    return build_estimate(spec, count_params(spec), job)
