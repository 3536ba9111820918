"""QLoRA (Dettmers et al. 2023, arXiv:2305.14314): 4-bit NF4 weights with double quantization and
compute in bf16 (fp32 where bf16 is missing), ``prepare_model_for_kbit_training``, then LoRA.
With --precision int8 the base is 8-bit (LLM.int8) instead."""
from __future__ import annotations

from typing import Any

from planner.job import Job

from .base import Recipe, lora_config


def quantized_weights(job: Job, torch: Any, compute_dtype: Any, device: dict[str, Any],
                      distributed: dict[str, Any], storage: Any = None) -> dict[str, Any]:
    """bitsandbytes quantization; ``storage`` is the dtype the packed 4-bit weights are stored in."""
    from transformers import BitsAndBytesConfig

    if job.precision != "int4":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True), "dtype": compute_dtype}
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute_dtype,
                                **({"bnb_4bit_quant_storage": storage} if storage is not None else {}))
    return {"quantization_config": config, "dtype": storage if storage is not None else compute_dtype}


def for_kbit_training(model: Any, job: Job) -> Any:
    """Casts norms/embeddings to fp32 and freezes the base; the Trainer turns on checkpointing."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


RECIPE = Recipe(name="qlora", learning_rate=2e-4, weights=quantized_weights, prepare=for_kbit_training,
                adapter=lora_config)
