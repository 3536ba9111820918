"""LoRA: the frozen base in the plan's precision, low-rank adapters trained (Hu et al. 2021)."""
from .base import Recipe, half_precision_weights, lora_config

# QLoRA paper (arXiv:2305.14314) learning rate for LoRA/QLoRA.
RECIPE = Recipe(name="lora", learning_rate=2e-4, weights=half_precision_weights, adapter=lora_config)
