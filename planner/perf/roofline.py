"""Roofline time of ops on a GPU, with efficiencies as data (planner/data/efficiency.csv).

    time(op) = max(flops / (peak x compute_eff x m/(m + m_half)),  bytes / (bandwidth x memory_eff),
                   launches x launch_us)
``peak`` is the GPU's dense tensor TFLOPS at the op's precision (planner.hardware), ``bandwidth`` its DRAM
bandwidth. The efficiency row is the most specific of (generation, path), ("*", path). ``m`` is a GEMM's
smallest dimension: a GEMM over a few tokens (decode, batch 1 at short sequences, a LoRA rank) cannot fill
the GPU. The launch term is the floor a kernel never goes under (CPU dispatch of eager PyTorch).
Williams, Waterman, Patterson 2009, "Roofline: an insightful visual performance model".
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from ..errors import PlannerError
from ..hardware import DATA_DIR, Gpu
from .ops import Op


@dataclass(frozen=True)
class Efficiency:
    generation: str
    path: str
    compute: float
    memory: float
    m_half: float
    launch_us: float
    basis: str
    source: str


@lru_cache(maxsize=4)
def load_efficiencies(path: Path | None = None) -> dict[tuple[str, str], Efficiency]:
    with open(path or DATA_DIR / "efficiency.csv", newline="", encoding="utf-8") as fh:
        return {(r["generation"], r["path"]): Efficiency(r["generation"], r["path"], float(r["compute"]),
                                                         float(r["memory"]), float(r["m_half"]),
                                                         float(r["launch_us"]), r["basis"], r["source"])
                for r in csv.DictReader(fh)}


def efficiency(generation: str, path: str, table: dict | None = None) -> Efficiency:
    if table is None:
        return _efficiency(generation, path)
    return _lookup(generation, path, table)


@lru_cache(maxsize=256)
def _efficiency(generation: str, path: str) -> Efficiency:
    return _lookup(generation, path, load_efficiencies())


def _lookup(generation: str, path: str, table: dict) -> Efficiency:
    row = table.get((generation, path)) or table.get(("*", path))
    if row is None:
        raise PlannerError(f"planner/data/efficiency.csv has no row for kernel path '{path}'")
    return row


@dataclass(frozen=True)
class OpTime:
    name: str
    kind: str
    seconds: float
    bound: str  # compute | memory | launch
    flops: float
    bytes: float


@dataclass(frozen=True)
class StepTime:
    """A step's time on one GPU: total, per kind of op, and per op."""

    seconds: float
    flops: float
    bytes: float
    by_kind: dict[str, float]
    ops: tuple[OpTime, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("ops")
        return d


def _peak(gpu: Gpu, precision: str) -> float:
    tflops = gpu.tflops(precision) or (gpu.tflops("bf16") if precision in ("fp8", "fp4") else None)
    if not tflops:
        raise PlannerError(f"no dense {precision} TFLOPS recorded for {gpu.gpu_model} (planner/data/gpus.csv)")
    return tflops * 1e12


def op_time(op: Op, gpu: Gpu, table: dict | None = None) -> OpTime:
    """One op's roofline time on ``gpu`` (see the module docstring)."""
    eff = efficiency(gpu.generation, op.path, table)
    compute = 0.0
    if op.flops:
        fill = op.m / (op.m + eff.m_half) if op.m and eff.m_half else 1.0
        compute = op.flops / (_peak(gpu, op.precision) * eff.compute * fill)
    if not gpu.mem_bandwidth_gb_s:
        raise PlannerError(f"no memory bandwidth recorded for {gpu.gpu_model} (planner/data/gpus.csv)")
    memory = op.bytes / (gpu.mem_bandwidth_gb_s * 1e9 * eff.memory)
    launch = op.launches * eff.launch_us * 1e-6
    seconds = max(compute, memory, launch)
    bound = "compute" if seconds == compute else ("memory" if seconds == memory else "launch")
    return OpTime(op.name, op.kind, seconds, bound, op.flops, op.bytes)


def step_time(ops: Iterable[Op], gpu: Gpu, table: dict | None = None) -> StepTime:
    """Sum of op times: the ops of one step run one after another on one GPU."""
    times = tuple(op_time(o, gpu, table) for o in ops)
    by_kind: dict[str, float] = {}
    for t in times:
        by_kind[t.kind] = by_kind.get(t.kind, 0.0) + t.seconds
    return StepTime(sum(t.seconds for t in times), sum(t.flops for t in times), sum(t.bytes for t in times),
                    by_kind, times)
