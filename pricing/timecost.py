"""How long a training job takes, start-up included, and what it costs; hourly and monthly cost for serving.

Time model (docs/pricing.md, "Time model"; issue 22):
  job hours  = overhead + tokens x epochs / tokens_per_second (x spot interruption allowance)
  tokens/s   = planner.perf's roofline of one training step for the job's exact settings (per-op FLOPs
               and bytes of the method: full, LoRA, QLoRA's dequantization, prompt tuning, checkpointing's
               recompute, the optimizer step; attention by sequence length and kernel) on the GPU's dense
               TFLOPS and bandwidth (planner.hardware), plus the strategy's communication over the real
               link (NVSwitch/NVLink/PCIe/EFA) that compute does not hide, times the time scales fitted
               to published runs (pricing.throughput, docs/accuracy-throughput.md).
The plan runs Hugging Face Trainer + PEFT (eager kernels), so candidates use the ``eager`` scale.
The step is a full-length one (``seq_len`` tokens per sequence): without a dataset the figure assumes
every sequence is full length. Overheads (pricing/data/overheads.csv) are assumptions, each with its
basis: machine start, weights download and load (+ quantize), one checkpoint per epoch, and SageMaker's
upload of the output.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from . import throughput

HOURS_PER_MONTH = 730  # 8,760 / 12, the AWS pricing calculator's month
# Spot capacity can be reclaimed at two minutes' notice; restarts from the last checkpoint lose
# work and time. Assumed allowance on the steady-state hours when spot is used.
SPOT_INTERRUPTION_OVERHEAD = 0.10
DOWNLOAD_BYTES_PER_PARAM = 2  # checkpoints on the Hub are 16-bit safetensors
MB = 1e6
FULL_LENGTH_NOTE = ("every sequence is full length (seq_len tokens): with shorter or variable-length data and no "
                    "packing, real tokens/s is lower (padding)")


def time_note(tokens_source: str | None) -> str:
    """The one line a timed plan carries about the sequences its tokens/s assumes (issue 22)."""
    what = ("the dataset's length distribution is not modelled yet" if tokens_source and "dataset" in tokens_source
            else "no --dataset")
    return (f"job hours: {what}, so tokens/s assumes {FULL_LENGTH_NOTE}; pack sequences (TRL packing) to "
            "come close to it")


@dataclass(frozen=True)
class JobTime:
    """One plan's job time. ``billed_hours`` leaves out start-up time the provider does not bill."""

    overhead_hours: float
    overhead_items: tuple[tuple[str, float], ...]  # (item, seconds)
    tokens_per_second: float
    compute_hours: float
    job_hours: float
    billed_hours: float
    utilization: float
    utilization_basis: str
    scaling_efficiency: float
    interconnect: str
    scaling_basis: str = ""
    step_seconds: float | None = None
    assumes: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def flops_per_token_factor(mode: str, gradient_checkpointing: bool) -> int:
    """Model FLOPs per token per parameter (6N full, 4N frozen base, +2N recompute): only to report a
    model-FLOPs utilization beside the roofline's figure (Kaplan et al. 2020; Korthikanti et al. 2022)."""
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


@dataclass(frozen=True)
class Rate:
    """Steady-state training speed of a plan on its GPUs."""

    tokens_per_second: float
    step_seconds: float
    utilization: float  # model-FLOPs utilization implied (6N/8N per token over the GPUs' dense peak)
    basis: str
    scaling_efficiency: float  # compute / (compute + exposed communication)
    link: str
    link_basis: str


_RATES: dict[tuple, tuple[Any, Rate | None]] = {}


def tokens_per_second(est, *, gpus: int, spec, strategy: str | None = None, link: str = "none",
                      interconnect: str = "", gpus_per_machine: int | None = None, kernels: str = "eager",
                      calibration=None) -> Rate | None:
    """Steady-state tokens/s over all GPUs from the perf core (module docstring); None when the GPU's
    dense TFLOPS or bandwidth are unknown. Memoized per estimate and machine shape: a plan asks for the
    same shape on many instance types and regions (the entry keeps ``est`` alive so its id stays unique)."""
    key = (id(est), getattr(spec, "gpu_model", None), gpus, strategy, link, interconnect, gpus_per_machine, kernels,
           id(calibration))
    hit = _RATES.get(key)
    if hit is not None and hit[0] is est:
        return hit[1]
    if len(_RATES) > 4096:
        _RATES.clear()
    rate = _rate(est, gpus=gpus, spec=spec, strategy=strategy, link=link, interconnect=interconnect,
                 gpus_per_machine=gpus_per_machine, kernels=kernels, calibration=calibration)
    _RATES[key] = (est, rate)
    return rate


def _rate(est, *, gpus, spec, strategy, link, interconnect, gpus_per_machine, kernels, calibration) -> Rate | None:
    from planner import hardware
    from planner.perf import ModelDims
    from planner.perf.training import method_of_job, training_speed

    tflops, _ = dense_tflops(spec, est.job.precision)
    if not tflops or spec is None or not spec.mem_bandwidth_gb_s:
        return None
    strategy = strategy if gpus > 1 and strategy else "single-gpu"
    bw, link_basis = hardware.link_bandwidth(link, spec, interconnect, gpus_per_machine or gpus)
    speed = training_speed(ModelDims.from_spec(est.model), method_of_job(est.job, fused=kernels == "compiled"), spec,
                           batch=est.job.batch_size, seq_len=est.job.seq_len, gpus=gpus, strategy=str(strategy),
                           link=link, link_gb_s=bw, link_basis=link_basis, total_params=est.params.total,
                           trainable_params=est.trainable_params)
    tps, step, cal_basis = throughput.calibrated(speed, kernels, calibration)
    ck = bool(est.job.gradient_checkpointing)
    util = tps * flops_per_token_factor(est.job.mode, ck) * est.params.active / (gpus * tflops * 1e12)
    eff = speed.compute_seconds / (speed.compute_seconds + speed.exposed_comm_seconds)
    return Rate(tps, step, util, f"{speed.basis}; {cal_basis}", eff, link, link_basis)


def _value(platform: str, item: str) -> tuple[float, bool] | None:
    table = throughput.overheads()
    row = table.get((platform, item)) or table.get(("any", item))
    return None if row is None else (float(row["value"]), row["billed"] == "yes")


def checkpoint_bytes(est) -> int:
    """One save: trainable weights (+ optimizer state, + the weights for full fine-tuning)."""
    kinds = ("trainable", "optimizer") + (("weights",) if est.job.mode == "full" else ())
    return est.bytes_of(*kinds) if hasattr(est, "bytes_of") else 0


def overhead_items(est, platform: str, epochs: float) -> tuple[tuple[str, float, bool], ...]:
    """(item, seconds, billed) for starting, loading, checkpointing and finishing the job."""
    weights_mb = est.params.total * DOWNLOAD_BYTES_PER_PARAM / MB
    out: list[tuple[str, float, bool]] = []
    if platform in ("ec2", "sagemaker"):
        for item in ("machine_start", "environment_setup", "image_pull"):
            v = _value(platform, item)
            if v is not None and (platform, item) in throughput.overheads():
                out.append((item, v[0], v[1]))
        bw, billed = _value(platform, "download_bandwidth")
        out.append(("model_download", weights_mb / bw, billed))
    bw, billed = _value(platform, "load_bandwidth")
    out.append(("model_load", weights_mb / bw, billed))
    if est.job.mode == "qlora":
        bw, billed = _value(platform, "quantize_bandwidth")
        out.append(("quantize", weights_mb / bw, billed))
    bw, billed = _value(platform, "checkpoint_bandwidth")
    out.append(("checkpoint_saves", math.ceil(epochs) * checkpoint_bytes(est) / MB / bw, billed))
    if platform == "sagemaker":
        bw, billed = _value(platform, "upload_bandwidth")
        final = est.bytes_of("weights") if est.job.mode == "full" else est.bytes_of("trainable")
        out.append(("output_upload", final / MB / bw, billed))
    return tuple(out)


def job_time(est, *, tokens: int | None, epochs: float, gpus: int, machines: int, spec, spot: bool = False,
             platform: str = "ec2", strategy: str | None = None, interconnect: str = "",
             gpus_per_machine: int | None = None, calibration=None) -> JobTime | None:
    """Wall-clock and billed time of a training job, or None when tokens or throughput are unknown."""
    if not est.job.is_training or tokens is None:
        return None
    from planner import hardware
    per_machine = gpus_per_machine or gpus
    link = hardware.link_for(interconnect, min(per_machine, gpus), machines, spec)
    rate = tokens_per_second(est, gpus=gpus, spec=spec, strategy=strategy, link=link, interconnect=interconnect,
                             gpus_per_machine=per_machine, calibration=calibration)
    if rate is None:
        return None
    compute = tokens * epochs / rate.tokens_per_second / 3600
    if spot:
        compute *= 1 + SPOT_INTERRUPTION_OVERHEAD
    items = overhead_items(est, platform, epochs)
    over = sum(s for _, s, _ in items) / 3600
    billed_over = sum(s for _, s, b in items if b) / 3600
    return JobTime(overhead_hours=over, overhead_items=tuple((n, round(s, 1)) for n, s, _ in items),
                   tokens_per_second=rate.tokens_per_second, compute_hours=compute, job_hours=over + compute,
                   billed_hours=billed_over + compute, utilization=rate.utilization, utilization_basis=rate.basis,
                   scaling_efficiency=rate.scaling_efficiency, interconnect=link, scaling_basis=rate.link_basis,
                   step_seconds=rate.step_seconds, assumes=FULL_LENGTH_NOTE)


def job_hours(est, *, tokens: int | None, epochs: float, gpus: int, machines: int, spec,
              spot: bool = False, **kwargs) -> float | None:
    """Wall-clock hours of the training job (start-up included), or None when unknown."""
    t = job_time(est, tokens=tokens, epochs=epochs, gpus=gpus, machines=machines, spec=spec, spot=spot, **kwargs)
    return None if t is None else t.job_hours


def monthly(usd_per_hour: float | None) -> float | None:
    return None if usd_per_hour is None else usd_per_hour * HOURS_PER_MONTH
