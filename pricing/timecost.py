"""How long a training job takes and what it costs; hourly and monthly cost for serving.

Time model (docs/pricing.md, "Time model"):
  hours = FLOPs / (GPUs x dense tensor TFLOPS x utilization) / 3600 x slowdowns
  FLOPs = flops_per_token x active parameters x tokens x epochs
flops_per_token: 6 for full fine-tuning (2 forward + 4 backward: Kaplan et al. 2020, "Scaling
Laws", C ~ 6N per token); LoRA, QLoRA and prompt tuning skip the weight gradients of the frozen
base (2 of the 4 backward FLOPs per parameter) but still backpropagate activation gradients
through it: 4. Gradient checkpointing recomputes the forward: +2 (Korthikanti et al. 2022,
"Reducing Activation Recomputation", full recomputation). Adapter FLOPs are under 1% and ignored.
"""
from __future__ import annotations

HOURS_PER_MONTH = 730  # 8,760 / 12, the AWS pricing calculator's month
# Model FLOPs utilization assumed for fine-tuning on one machine; an assumption (typical published
# MFU for 7B-70B fine-tuning with FSDP is 30-50%), not a measurement of ours.
UTILIZATION = 0.40
# Extra loss of throughput when FSDP spans machines over EFA (assumption).
MULTI_MACHINE_EFFICIENCY = 0.90
# QLoRA dequantizes the 4-bit base weights in every forward and backward matmul: slower per token
# than 16-bit LoRA at equal FLOPs. Assumed factor; see docs/pricing.md.
QLORA_SLOWDOWN = 1.5
# Spot capacity can be reclaimed at two minutes' notice; restarts from the last checkpoint lose
# work and time. Assumed overhead on job hours when --spot is used.
SPOT_INTERRUPTION_OVERHEAD = 0.10


def flops_per_token_factor(mode: str, gradient_checkpointing: bool) -> int:
    base = 6 if mode == "full" else 4
    return base + (2 if gradient_checkpointing else 0)


def training_flops(est, tokens: int, epochs: float) -> float:
    job = est.job
    return flops_per_token_factor(job.mode, bool(job.gradient_checkpointing)) * est.params.active * tokens * epochs


def dense_tflops(spec, precision: str) -> tuple[float | None, str]:
    """The tensor throughput a job of this precision gets: bf16, or fp16 where bf16 is missing."""
    if spec is None:
        return None, "unknown"
    if precision == "fp16" or not spec.bf16_supported:
        return spec.fp16_dense_tflops, "fp16"
    return spec.bf16_dense_tflops, "bf16"


def job_hours(est, *, tokens: int | None, epochs: float, gpus: int, machines: int, spec,
              spot: bool = False) -> float | None:
    """Wall-clock hours of the training job, or None when tokens or throughput are unknown."""
    if not est.job.is_training or tokens is None:
        return None
    tflops, _ = dense_tflops(spec, est.job.precision)
    if not tflops:
        return None
    util = UTILIZATION * (MULTI_MACHINE_EFFICIENCY if machines > 1 else 1.0)
    seconds = training_flops(est, tokens, epochs) / (gpus * tflops * 1e12 * util)
    hours = seconds / 3600
    if est.job.mode == "qlora":
        hours *= QLORA_SLOWDOWN
    if spot:
        hours *= 1 + SPOT_INTERRUPTION_OVERHEAD
    return hours


def monthly(usd_per_hour: float | None) -> float | None:
    return None if usd_per_hour is None else usd_per_hour * HOURS_PER_MONTH
