"""One small recipe per training mode: how to load the base, wrap it, and configure the step.

``recipe_for(job, strategy)`` picks it; backend/train.py runs the shared steps (data, resume
point, record, tracking, trainer) around it. The recipes are the ones the memory model assumes
(docs/memory-model.md). A new mode is a new module here with a ``RECIPE`` and a line below.
"""
from __future__ import annotations

from planner.errors import PlannerError
from planner.job import Job
from planner.plan import Strategy

from .base import Recipe


def recipe_for(job: Job, strategy: Strategy = Strategy.SINGLE_GPU) -> Recipe:
    """The recipe of ``job.mode``; QLoRA sharded with FSDP is its own (FSDP-QLoRA)."""
    from . import fsdp_qlora, full, lora, prompt_tuning, qlora

    if job.mode == "qlora":
        return fsdp_qlora.RECIPE if strategy is Strategy.FSDP_QLORA else qlora.RECIPE
    recipes = {"lora": lora.RECIPE, "full": full.RECIPE, "prompt-tuning": prompt_tuning.RECIPE}
    if job.mode not in recipes:
        raise PlannerError(f"--mode {job.mode} has nothing to train; use full, lora, qlora or prompt-tuning")
    return recipes[job.mode]


__all__ = ["Recipe", "recipe_for"]
