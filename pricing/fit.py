"""Per-GPU memory of a job under each parallel strategy, and whether a machine holds it.

The memory estimate (``planner.estimate``) is for one full replica on one GPU, term by term.
The rules below redistribute its terms by kind (docs/pricing.md, "Fitting rules"):

* single GPU / data-parallel (DDP): a full replica per GPU. DDP also allocates communication
  buckets as large as all gradients unless ``gradient_as_bucket_view=True`` (PyTorch DDP docs;
  accelerate leaves it False), so DDP adds one more copy of the ``gradients`` terms.
* FSDP full shard (= ZeRO-3; FSDP-QLoRA for 4-bit bases, figured on the estimate of the pure-bf16
  recipe FSDP-QLoRA runs, ``Job.kbit_prep=False``): per-parameter kinds (weights,
  trainable, gradients, optimizer) divided by the number of GPUs, plus gathered-layer buffers:
  the root unit (embeddings and lm_head) and two decoder layers (current + prefetched), in the
  compute precision (at most 2 bytes per parameter). Activations, logits and workspace stay per
  GPU (the per-GPU batch is ``--batch-size``).
* inference tensor parallel of degree d (Megatron-LM, Shoeybi et al. 2019): per-parameter kinds
  / d and the KV cache split by KV heads (a head is never split; with more GPUs than KV heads each
  GPU keeps one); activations, logits and workspace are kept whole (conservative). d must divide
  the number of attention heads and the GPUs of one machine.

The per-GPU need under a strategy is figured as the estimate figures ``memory.total_bytes``
(planner/memory.py): reserved (the strategy's allocated peak x the caching-allocator replay's
reserved/allocated ratio) + the model's tolerance fraction + kernels and libraries outside the
pool. On one GPU it is exactly ``memory.total_bytes``. (The replay is of the unsharded step; its
ratio stands in for a replay of the sharded one, an approximation stated in docs/decisions.md.)

Usable memory per GPU = what the card reports - the CUDA context (the one thing the estimate does
not count), applied once, with no margin stacked on an estimate already checked against measured
peaks (issue 10). This module is the one fit rule: pricing's candidates, ``--gpu``
(pricing/localgpu.py) and ``--execute --backend local`` (backend/local.py) all call
``fit_machine``; ``needs_text`` is the one way a verdict shows its figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from planner.breakdown import GIB
from planner.memory import build_estimate
from planner.plan import Strategy

# Largest multi-machine plan tried unless --max-gpus allows more.
DEFAULT_MAX_MACHINES = 16
PER_PARAMETER_KINDS = ("weights", "trainable", "gradients", "optimizer")


@dataclass(frozen=True)
class Fit:
    """How a job would run on ``machines`` x ``gpus_per_machine`` GPUs, and whether it fits."""

    fits: bool
    strategy: Strategy | None
    machines: int
    gpus_per_machine: int
    gpus_used: int
    per_gpu_bytes: int  # needed per GPU: peak allocated under this strategy + the estimate's surplus
    usable_bytes_per_gpu: int  # what the card reports minus the CUDA context
    reason: str
    gpu_memory_bytes: int = 0  # what the card reports

    def to_dict(self) -> dict[str, Any]:
        return {"fits": self.fits, "strategy": self.strategy, "machines": self.machines,
                "gpus_per_machine": self.gpus_per_machine, "gpus_used": self.gpus_used,
                "per_gpu_bytes": self.per_gpu_bytes, "usable_bytes_per_gpu": self.usable_bytes_per_gpu,
                "gpu_memory_bytes": self.gpu_memory_bytes, "reason": self.reason}


def gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def needs_text(need: int, usable: int) -> str:
    """The one "needs X of Y" figure every output shows (GiB, two decimals, as the estimate's table)."""
    return f"needs {need / GIB:.2f} GiB per GPU of {usable / GIB:.2f} GiB usable"


def usable_bytes(gpu_memory_bytes: int, est) -> int:
    """What the card reports minus the CUDA context (the one part of a run the estimate leaves out)."""
    return int(gpu_memory_bytes) - est.cuda_context_bytes


def gpu_bytes(gpu_memory_gib: float) -> int:
    """A catalog's GiB figure (nvidia-smi MiB / 1024, or the provider's) as bytes."""
    return int(round(gpu_memory_gib * GIB))


def _with_slack(est, peak: float) -> int:
    """What a GPU must hold when the strategy's allocated peak is ``peak``: the estimate's own
    figures when nothing was redistributed (single GPU: ``total_bytes``), else reserved scaled by
    the replay's reserved/allocated ratio, its tolerance fraction, and the out-of-pool bytes."""
    if int(math.ceil(peak)) == est.peak_allocated_bytes or not est.peak_allocated_bytes:
        return est.total_bytes
    reserved = int(math.ceil(peak * est.reserved_bytes / est.peak_allocated_bytes))
    tolerance = int(reserved * est.tolerance_bytes / est.reserved_bytes) if est.reserved_bytes else 0
    return reserved + tolerance + est.out_of_pool_bytes


def surely_short(est, gpu_memory_bytes: int, gpu_count: int) -> bool:
    """True when ``fit_machine`` on one such GPU is sure to say "does not fit" without the
    allocator replay: the reserved figure is never below the allocated peak, and tolerance and
    out-of-pool bytes are never negative. The --gpu searches use it to skip replays."""
    return gpu_count == 1 and est.peak_allocated_bytes + est.out_of_pool_bytes > usable_bytes(gpu_memory_bytes, est)


def _phases(est) -> list[tuple]:
    """Term lists of every phase of the step when the estimate exposes them, else the peak phase.

    Sharding can move the peak to another phase (the loss phases keep activations and logits
    whole), so the per-GPU need is the largest phase after the rule is applied.
    """
    phases = getattr(est, "phases", None)
    if phases:
        return [tuple(terms) for _, terms in phases]
    return [tuple(est.terms)]


def _sum(terms, *kinds: str) -> int:
    return sum(t.bytes for t in terms if not kinds or t.kind in kinds)


def replica_bytes(est) -> int:
    """Single GPU: the estimate itself."""
    return _with_slack(est, est.peak_allocated_bytes)


def ddp_bytes(est) -> int:
    """Data parallel: a full replica plus DDP's gradient buckets (one copy of all gradients)."""
    buckets = max(_sum(t, "gradients") for t in _phases(est)) or est.trainable_params * 4
    return _with_slack(est, est.peak_allocated_bytes + buckets)


def gathered_bytes(est) -> int:
    """FSDP's unsharded working set: root unit (embeddings + lm_head) and two decoder layers."""
    p = est.params
    weights = max(_sum(t, "weights") for t in _phases(est))
    if not p.total or not weights:
        return 0
    bytes_per_param = min(2.0, weights / p.total)
    layer = (p.total - p.embedding - p.lm_head) / max(1, est.model.num_hidden_layers)
    return int(min(weights, (p.embedding + p.lm_head + 2 * layer) * bytes_per_param))


_SHARDED: dict[int, tuple[Any, Any]] = {}


def sharded_estimate(est):
    """The estimate FSDP shards. For QLoRA that is the pure-bf16 recipe FSDP-QLoRA runs
    (backend/recipes/fsdp_qlora.py: bf16 quant storage, no prepare_model_for_kbit_training, bf16
    adapters), not the single-GPU kbit recipe whose fp32 norms, embeddings and residual stream it
    avoids; checked on real CPU steps (tests/planner/test_mechanisms_cpu.py, qlora-bf16 rows)."""
    if est.job.mode != "qlora" or not est.job.kbit_prep:
        return est
    hit = _SHARDED.get(id(est))
    if hit is None or hit[0] is not est:  # the id of a collected estimate can be reused
        if len(_SHARDED) > 256:
            _SHARDED.clear()
        hit = _SHARDED[id(est)] = (est, build_estimate(est.model, est.params, est.job.with_(kbit_prep=False)))
    return hit[1]


def fsdp_bytes(est, shards: int) -> int:
    """FSDP full shard over ``shards`` GPUs: the largest phase after sharding."""
    est = sharded_estimate(est)
    gathered = gathered_bytes(est)
    peak = max(_sum(t) - _sum(t, *PER_PARAMETER_KINDS) * (1 - 1 / shards) for t in _phases(est))
    return _with_slack(est, peak + gathered)


def tensor_parallel_bytes(est, degree: int) -> int:
    """Inference tensor parallel of ``degree``."""
    kv_heads = max(1, est.model.num_key_value_heads)
    kv_keep = math.ceil(kv_heads / degree) / kv_heads

    def phase(t) -> float:
        per_param = _sum(t, *PER_PARAMETER_KINDS)
        kv = _sum(t, "kv_cache")
        return _sum(t) - per_param * (1 - 1 / degree) - kv * (1 - kv_keep)
    return _with_slack(est, max(phase(t) for t in _phases(est)))


def _verdict(need: int, usable: int, memory: int, what: str) -> str:
    head = "fits" if need <= usable else "does not fit"
    return f"{head}: {what} {needs_text(need, usable)} ({memory / GIB:.2f} GiB card)"


def fit_machine(est, *, gpu_memory_gib: float | None = None, gpu_count: int, efa: bool | None = False,
                max_gpus: int | None = None, max_machines: int = DEFAULT_MAX_MACHINES,
                gpu_memory_bytes: int | None = None) -> Fit:
    """The first strategy (fewest machines, simplest) under which the job fits, or why none does.

    The card's memory is ``gpu_memory_bytes`` (exact, e.g. from torch or nvidia-smi) or
    ``gpu_memory_gib`` (a catalog figure). ``efa=None``: the user's own GPUs (one machine, no
    multi-machine note). Training uses every GPU of each machine (they are paid
    for either way); inference uses the smallest tensor-parallel degree that fits on one machine.
    """
    memory = gpu_memory_bytes if gpu_memory_bytes is not None else gpu_bytes(gpu_memory_gib or 0.0)
    usable = usable_bytes(memory, est)

    def result(need: int, strategy: Strategy, machines: int, used: int, what: str) -> Fit:
        ok = need <= usable
        return Fit(ok, strategy, machines, gpu_count, used, need, usable, _verdict(need, usable, memory, what), memory)

    if not est.job.is_training:
        best = result(replica_bytes(est), Strategy.SINGLE_GPU, 1, 1, "one GPU")
        if best.fits:
            return best
        heads = est.model.num_attention_heads
        degrees = [d for d in range(2, gpu_count + 1) if gpu_count % d == 0 and heads % d == 0
                   and (max_gpus is None or d <= max_gpus)]
        for d in degrees:
            best = result(tensor_parallel_bytes(est, d), Strategy.TENSOR_PARALLEL, 1, d, f"tensor-parallel over {d} GPUs")
            if best.fits:
                return best
        if gpu_count > 1 and not degrees:
            return Fit(False, None, 1, gpu_count, 1, best.per_gpu_bytes, usable,
                       best.reason + f"; no tensor-parallel degree <= {gpu_count} divides {heads} attention heads",
                       memory)
        return best

    if gpu_count == 1:
        best = result(replica_bytes(est), Strategy.SINGLE_GPU, 1, 1, "one GPU")
        if best.fits:
            return best
    else:
        best = result(ddp_bytes(est), Strategy.DATA_PARALLEL, 1, gpu_count, f"data-parallel over {gpu_count} GPUs")
        if best.fits:
            return best
    fsdp_name = Strategy.FSDP_QLORA if est.job.mode == "qlora" else Strategy.FSDP
    limit = max_machines if efa else 1
    if max_gpus is not None:
        limit = min(limit, max_gpus // gpu_count) if efa else 1
        limit = max(limit, 1)
    for machines in range(1, limit + 1):
        n = machines * gpu_count
        if n == 1:
            continue
        where = f"{n} GPUs" if machines == 1 else f"{n} GPUs on {machines} machines"
        best = result(fsdp_bytes(est, n), fsdp_name, machines, n, f"{fsdp_name} over {where}")
        if best.fits:
            return best
    if not efa and best.strategy in (fsdp_name, Strategy.DATA_PARALLEL, Strategy.SINGLE_GPU):
        return Fit(False, best.strategy, best.machines, gpu_count, best.gpus_used, best.per_gpu_bytes, usable,
                   best.reason + ("; no EFA, so no multi-machine plan" if efa is not None else ""), memory)
    return best
