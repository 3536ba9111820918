"""The result objects of a memory estimate: named terms, the rule of thumb, the whole estimate.

Apart from ``planner.estimate`` so that ``planner.memory`` (which builds them) and
``planner.estimate`` (which calls it) do not import each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .job import Job
from .params import ParamCounts
from .spec import ModelSpec

GIB = 1024**3

# Kinds of memory term. Pricing shards some of them across GPUs (see pricing/fit.py):
#   weights, trainable, gradients, optimizer: per-parameter state (sharded by FSDP/ZeRO-3)
#   activations, logits, kv_cache: per-sequence (divided by data parallelism, not by sharding)
#   workspace: fixed per GPU
KINDS = ("weights", "trainable", "gradients", "optimizer", "activations", "logits", "kv_cache", "workspace")


@dataclass(frozen=True)
class MemoryTerm:
    """One named term of the breakdown: bytes at the moment of the peak, and where the formula comes from."""

    name: str
    bytes: int
    kind: str
    formula: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "kind": self.kind, "formula": self.formula,
                "source": self.source}


@dataclass(frozen=True)
class SeedRule:
    """The founding notes' rule of thumb, shown beside the real estimate."""

    bytes: int
    formula: str

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "formula": self.formula}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak GPU memory of one job on one GPU, term by term.

    ``peak_allocated_bytes`` is what ``torch.cuda.max_memory_allocated()`` reports (sum of
    ``terms``); ``reserved_bytes`` what ``torch.cuda.max_memory_reserved()`` reports, from a replay
    of the run through the caching allocator (``allocator_slack_bytes`` = reserved - allocated);
    ``total_bytes`` = reserved + ``out_of_pool_bytes`` (kernels and libraries the run loads) +
    ``tolerance_bytes`` (the allocator model's stated error): the device memory the run adds.
    The card must also hold the CUDA context (``cuda_context_bytes``), which exists before the
    run and is counted apart.
    ``phase`` names the moment of the step at which the peak happens.
    """

    model: ModelSpec
    params: ParamCounts
    job: Job
    trainable_params: int
    terms: tuple[MemoryTerm, ...]
    peak_allocated_bytes: int
    allocator_slack_bytes: int
    reserved_bytes: int
    out_of_pool_bytes: int
    allocator: str
    tolerance_bytes: int
    cuda_context_bytes: int
    total_bytes: int
    phase: str
    seed_rule: SeedRule
    notes: tuple[str, ...] = field(default=())
    # Every candidate moment of the step with its terms (the peak is the largest); sharding
    # can move the peak to another phase, so pricing re-checks them all.
    phases: tuple[tuple[str, tuple[MemoryTerm, ...]], ...] = field(default=())

    @property
    def breakdown(self) -> dict[str, int]:
        return {t.name: t.bytes for t in self.terms}

    def bytes_of(self, *kinds: str) -> int:
        return sum(t.bytes for t in self.terms if t.kind in kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {
                "name": self.model.name,
                "hf_id": self.model.hf_id,
                "model_type": self.model.model_type,
                "source": self.model.source,
                "params": self.params.total,
                "active_params": self.params.active,
                "trainable_params": self.trainable_params,
                "param_groups": {k: getattr(self.params, k) for k in
                                 ("embedding", "attention", "mlp", "router", "norms", "lm_head")},
            },
            "mode": self.job.mode,
            "precision": self.job.precision,
            "seq_len": self.job.seq_len,
            "batch_size": self.job.batch_size,
            "gradient_checkpointing": self.job.gradient_checkpointing,
            "job": self.job.to_dict(),
            "memory": {
                "peak_allocated_bytes": self.peak_allocated_bytes,
                "reserved_bytes": self.reserved_bytes,
                "allocator_slack_bytes": self.allocator_slack_bytes,
                "allocator": self.allocator,
                "out_of_pool_bytes": self.out_of_pool_bytes,
                "tolerance_bytes": self.tolerance_bytes,
                "cuda_context_bytes": self.cuda_context_bytes,
                "total_bytes": self.total_bytes,
                "phase": self.phase,
                "phases": {name: sum(t.bytes for t in terms) for name, terms in self.phases},
                "breakdown": self.breakdown,
                "terms": [t.to_dict() for t in self.terms],
            },
            "seed_rule": self.seed_rule.to_dict(),
            "notes": list(self.notes),
        }


_DEFERRED = ("allocator_slack_bytes", "reserved_bytes", "tolerance_bytes", "total_bytes")


def _deferred(name: str) -> property:
    def get(self):
        d = self.__dict__
        if name not in d:
            d.update(d.pop("_compute")())
        return d[name]

    def put(self, value):
        if value is not None:
            self.__dict__[name] = value
    return property(get, put)


class DeferredEstimate(MemoryEstimate):
    """A MemoryEstimate whose reserved-memory figures are computed on first access.

    The allocator replay (planner/allocator.py) takes a fraction of a second per job; callers
    that only need the allocated peak (property tests, the --gpu search over shapes) skip it.
    ``compute`` returns the four figures named in ``_DEFERRED``.
    """

    def __init__(self, *, compute=None, **fields: Any) -> None:
        if compute is not None:
            self.__dict__["_compute"] = compute
        super().__init__(**{**dict.fromkeys(_DEFERRED), **fields})


for _name in _DEFERRED:
    setattr(DeferredEstimate, _name, _deferred(_name))
