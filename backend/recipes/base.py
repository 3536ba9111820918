"""What a recipe says, and the steps every recipe shares (load with kwargs, wrap with PEFT)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from planner.errors import PlannerError
from planner.job import Job
from planner.plan import Strategy


def _no_prepare(model: Any, job: Job) -> Any:
    return model


def _no_adapter(job: Job) -> Any:
    return None


@dataclass(frozen=True)
class Recipe:
    """How one mode loads, wraps and trains.

    ``weights`` gives from_pretrained's dtype / quantization kwargs (job, torch, compute dtype,
    device, the plan's distributed block); ``prepare`` runs on the loaded base; ``adapter`` is the
    PEFT config (None: every weight trains); ``autocast`` says whether the step runs under mixed
    precision on a GPU computing in half; ``learning_rate`` is the default when the plan has none.
    """

    name: str
    learning_rate: float
    weights: Callable[..., dict[str, Any]]
    prepare: Callable[[Any, Job], Any] = _no_prepare
    adapter: Callable[[Job], Any] = _no_adapter
    autocast: Callable[[Job], bool] = lambda job: True
    shards_weights: bool = False  # FSDP places the weights: no device_map

    @property
    def artifacts(self) -> str:
        return "model" if self.name == "full" else "adapter"

    def load(self, model_name: str, job: Job, compute_dtype: Any, device: dict[str, Any],
             distributed: dict[str, Any] | None = None) -> Any:
        """The base model as this recipe loads it, prepared (e.g. for k-bit training)."""
        import torch
        from transformers import AutoModelForCausalLM

        distributed = distributed or {}
        kwargs: dict[str, Any] = {"attn_implementation": job.attention,
                                  **self.weights(job, torch, compute_dtype, device, distributed)}
        sharded = self.shards_weights or _sharded(distributed) or \
            os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
        if device["type"] == "cuda" and not sharded:  # one whole copy per process (DDP) or the only GPU
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        try:
            model = AutoModelForCausalLM.from_pretrained(model_name, **kwargs)
        except OSError as exc:
            raise PlannerError(f"cannot load model '{model_name}' ({str(exc).splitlines()[0]}); pass a folder "
                               "with config.json and weights, or a Hub id when online") from None
        model.config.use_cache = False  # no KV cache while training
        return self.prepare(model, job)

    def wrap(self, model: Any, job: Job) -> Any:
        """The model with this recipe's adapter (LoRA, virtual tokens), or as it is."""
        config = self.adapter(job)
        if config is None:
            return model
        from peft import get_peft_model

        try:
            return get_peft_model(model, config)
        except ValueError as exc:  # e.g. target modules not found in the model
            raise PlannerError(f"cannot apply {job.mode} to this model: {str(exc).splitlines()[0]}") from None


def _sharded(distributed: dict[str, Any]) -> bool:
    name = distributed.get("strategy")
    return name is not None and Strategy.of(name).sharded


def half_precision_weights(job: Job, torch: Any, compute_dtype: Any, device: dict[str, Any],
                           distributed: dict[str, Any]) -> dict[str, Any]:
    """The base in the plan's precision on a GPU; fp32 off a GPU (half weights only slow a CPU down)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return {"dtype": dtypes[job.precision] if device["type"] == "cuda" else torch.float32}


def lora_config(job: Job) -> Any:
    """LoRA on the job's target modules (``all-linear`` by default)."""
    from peft import LoraConfig

    targets = job.target_modules
    return LoraConfig(r=job.lora_r, lora_alpha=job.lora_alpha, lora_dropout=job.lora_dropout,
                      target_modules=list(targets) if targets else "all-linear", task_type="CAUSAL_LM")
