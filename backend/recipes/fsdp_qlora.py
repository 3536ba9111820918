"""FSDP-QLoRA: QLoRA whose 4-bit weights FSDP shards over GPUs. The packed weights are stored in
the compute dtype (``bnb_4bit_quant_storage``, from the plan's distributed block) so FSDP can
flatten them, and FSDP places them itself (no device_map). PEFT "Use PEFT QLoRA and FSDP" guide;
bitsandbytes docs/source/fsdp_qlora.md."""
from __future__ import annotations

from typing import Any

from planner.job import Job

from .base import Recipe, lora_config
from .qlora import for_kbit_training, quantized_weights


def sharded_quantized_weights(job: Job, torch: Any, compute_dtype: Any, device: dict[str, Any],
                              distributed: dict[str, Any]) -> dict[str, Any]:
    name = distributed.get("bnb_4bit_quant_storage")
    storage = getattr(torch, name) if name else compute_dtype
    return quantized_weights(job, torch, compute_dtype, device, distributed, storage=storage)


RECIPE = Recipe(name="fsdp-qlora", learning_rate=2e-4, weights=sharded_quantized_weights,
                prepare=for_kbit_training, adapter=lora_config, shards_weights=True)
