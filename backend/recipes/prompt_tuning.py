"""Prompt tuning: the frozen base, trainable virtual tokens in front of every sequence (Lester et al. 2021)."""
from __future__ import annotations

from typing import Any

from planner.job import Job

from .base import Recipe, half_precision_weights


def virtual_tokens(job: Job) -> Any:
    from peft import PromptTuningConfig

    return PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=job.num_virtual_tokens)


# 3e-2: Lester et al. 2021 used 0.3 with Adafactor; 3e-2 suits AdamW.
RECIPE = Recipe(name="prompt-tuning", learning_rate=3e-2, weights=half_precision_weights, adapter=virtual_tokens)
