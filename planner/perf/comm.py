"""Communication per training step by strategy, over a link (planner.hardware), and how much of it shows.

Volumes per GPU per step (NCCL ring collectives: an all-reduce moves 2(n-1)/n of the buffer, an
all-gather or reduce-scatter (n-1)/n; NCCL docs, "Collective operations"; nccl-tests PERFORMANCE.md):
* data-parallel (DDP): all-reduce of the trainable gradients (bf16 under mixed precision: 2 B each);
* fsdp / zero3 (full shard): all-gather of the weights in forward and again in backward (2 B each), and
  a reduce-scatter of the gradients (Zhao et al. 2023, "PyTorch FSDP", sec. 3; ZeRO-3: Rajbhandari et al.
  2020, 3x DDP's volume for full fine-tuning);
* fsdp-qlora: all-gather of the 4-bit weights (0.5 B + absmax) forward and backward, reduce-scatter of
  the adapters' gradients only (Answer.AI fsdp_qlora).
Overlap: DDP buckets and FSDP prefetch hide communication behind compute, except one layer's worth
(the first all-gather, the last reduce-scatter): exposed = max(0, comm - compute) + comm / layers.
Gradients are synchronised once per optimizer step (``grad_accum`` micro-steps: no_sync) for DDP; FSDP
gathers weights every micro-step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NF4_GATHER_BYTES = 0.5 + 4 / 64


@dataclass(frozen=True)
class CommTime:
    strategy: str
    bytes_per_gpu: float
    seconds: float
    exposed_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def comm_bytes(strategy: str, *, gpus: int, total_params: int, trainable_params: int, mode: str,
               grad_accum: int = 1) -> float:
    """Bytes each GPU sends per micro-step (module docstring)."""
    if gpus <= 1 or strategy in ("single-gpu", "tensor-parallel"):
        return 0.0
    ring = (gpus - 1) / gpus
    if strategy == "data-parallel":
        return 2 * ring * trainable_params * 2 / max(1, grad_accum)
    if strategy == "fsdp-qlora" or (strategy in ("fsdp", "zero3") and mode == "qlora"):
        return 2 * ring * total_params * NF4_GATHER_BYTES + ring * trainable_params * 2
    if strategy in ("fsdp", "zero3"):
        return 2 * ring * total_params * 2 + ring * trainable_params * 2
    raise ValueError(f"unknown strategy {strategy}")


def comm_time(strategy: str, *, gpus: int, link_gb_s: float, total_params: int, trainable_params: int, mode: str,
              layers: int, compute_seconds: float, grad_accum: int = 1) -> CommTime:
    nbytes = comm_bytes(strategy, gpus=gpus, total_params=total_params, trainable_params=trainable_params,
                        mode=mode, grad_accum=grad_accum)
    if nbytes == 0 or link_gb_s == float("inf"):
        return CommTime(strategy, nbytes, 0.0, 0.0)
    seconds = nbytes / (link_gb_s * 1e9)
    exposed = max(0.0, seconds - compute_seconds) + seconds / max(1, layers)
    return CommTime(strategy, nbytes, seconds, exposed)


def tensor_parallel_seconds(tokens: int, hidden: int, layers: int, tp: int, link_gb_s: float, *,
                            act_bytes: float = 2, latency_us: float = 0.0) -> float:
    """Forward all-reduces of tensor parallelism: two per layer (after attention and after the MLP) over the
    tokens' activations, 2(tp-1)/tp of the buffer each (Shoeybi et al. 2019, Megatron-LM, sec. 3). Not
    overlapped with compute (they sit on the critical path of a decode or prefill step)."""
    if tp <= 1 or link_gb_s == float("inf"):
        return 0.0
    buffer = tokens * hidden * act_bytes
    per = 2 * (tp - 1) / tp * buffer / (link_gb_s * 1e9) + latency_us * 1e-6
    return 2 * layers * per
