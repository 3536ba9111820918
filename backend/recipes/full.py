"""Full fine-tuning: every weight trains. With bf16/fp16 weights the step is pure half precision
(no autocast); with fp32 master weights it autocasts to the compute dtype."""
from .base import Recipe, half_precision_weights

# 2e-5: the Alpaca recipe's learning rate for full fine-tuning.
RECIPE = Recipe(name="full", learning_rate=2e-5, weights=half_precision_weights,
                autocast=lambda job: job.precision not in ("bf16", "fp16"))
