"""Plan an LLM job: exact parameter counts and a term-by-term GPU memory model.

    >>> from planner import estimate
    >>> est = estimate("llama3-8b", mode="qlora", seq_len=2048)
    >>> est.peak_allocated_bytes, est.breakdown

Importing this package never imports torch or transformers.
"""
from .errors import PlannerError
from .estimate import MemoryEstimate, MemoryTerm, SeedRule, estimate
from .job import Job
from .params import ParamCounts, count_params
from .registry import resolve, shipped_models
from .spec import ModelSpec

__all__ = ["estimate", "Job", "MemoryEstimate", "MemoryTerm", "SeedRule", "ModelSpec", "ParamCounts",
           "PlannerError", "count_params", "resolve", "shipped_models"]
