"""FSDP-QLoRA, the pure-bf16 recipe (Answer.AI's fsdp_qlora, TRL's and PEFT's "Use PEFT QLoRA and
FSDP" guide; bitsandbytes docs/source/fsdp_qlora.md): the packed 4-bit weights are stored in the
compute dtype (``bnb_4bit_quant_storage``, from the plan's distributed block) so FSDP can flatten
them with everything else, FSDP places them itself (no device_map), and NO
``prepare_model_for_kbit_training``: embeddings, norms and the LoRA adapters stay in bf16, so every
flat parameter FSDP builds has one dtype (fp32 norms beside bf16 storage would not flatten
together). planner/memory.py models the same recipe for the ``fsdp-qlora`` strategy."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from planner.job import Job

from .base import Recipe, lora_config
from .qlora import quantized_weights


def sharded_quantized_weights(job: Job, torch: Any, compute_dtype: Any, device: dict[str, Any],
                              distributed: dict[str, Any]) -> dict[str, Any]:
    name = distributed.get("bnb_4bit_quant_storage")
    storage = getattr(torch, name) if name else compute_dtype
    return quantized_weights(job, torch, compute_dtype, device, distributed, storage=storage)


def frozen_in_place(model: Any, job: Job) -> Any:
    """Freeze the base as loaded (no dtype casts); inputs require grad so checkpointed layers backprop."""
    for p in model.parameters():
        p.requires_grad_(False)
    model.enable_input_require_grads()
    return model


@dataclass(frozen=True)
class PureBf16Recipe(Recipe):
    """LoRA adapters in the storage dtype of the base (PEFT would upcast them to fp32 otherwise)."""

    def wrap(self, model: Any, job: Job) -> Any:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        model = super().wrap(model, job)
        if dtype is not None:
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.to(dtype)
        return model


RECIPE = PureBf16Recipe(name="fsdp-qlora", learning_rate=2e-4, weights=sharded_quantized_weights,
                        prepare=frozen_in_place, adapter=lora_config, shards_weights=True)
