"""One GPU table and the links between GPUs: the hardware facts both pricing and the perf core read.

Data (each row with its source and date): ``planner/data/gpus.csv`` (memory as nvidia-smi reports it,
dense tensor TFLOPS per precision, memory bandwidth, NVLink bandwidth, generation, SXM or PCIe) and
``planner/data/links.csv`` (bandwidth per link class: none, pcie, nvlink, nvswitch, efa). Empty cells
are unknown (None), never zero. Pure and light: csv and dataclasses only, read once.

How a machine shape maps to a link (``link_for``): one GPU -> ``none``; several machines -> ``efa``
between them; one machine: ``NVSwitch``/``NVLink`` in the instance's interconnect text, else for
``--gpu "Nx CARD"`` an SXM card (A100/H100/H200/B200: sold in NVSwitch HGX boards) -> ``nvswitch``
and a PCIe card -> ``pcie``.
"""
from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import PlannerError

DATA_DIR = Path(__file__).resolve().parent / "data"
PRECISIONS = ("bf16", "fp16", "fp8", "fp4")


@dataclass(frozen=True)
class Gpu:
    """One GPU model. TFLOPS are dense tensor-core figures; None = no source gives it."""

    gpu_model: str
    generation: str  # turing | volta | ampere | ada | hopper | blackwell
    form: str  # sxm | pcie
    memory_mib: int | None
    bf16_dense_tflops: float | None
    fp16_dense_tflops: float | None
    fp8_dense_tflops: float | None
    fp4_dense_tflops: float | None
    bf16_supported: bool
    mem_bandwidth_gb_s: float | None
    nvlink_gb_s: float | None  # bidirectional, per GPU
    estimated: bool
    source: str
    as_of: str
    note: str = ""

    def tflops(self, precision: str) -> float | None:
        """Dense tensor TFLOPS for a compute precision; bf16 falls back to fp16 where bf16 is missing."""
        if precision not in PRECISIONS:
            raise PlannerError(f"unknown precision '{precision}'; one of {', '.join(PRECISIONS)}")
        if precision == "bf16" and not self.bf16_supported:
            precision = "fp16"
        return getattr(self, f"{precision}_dense_tflops")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Link:
    """A class of link between GPUs: usable bandwidth per GPU per direction (GB/s)."""

    link: str
    bandwidth_gb_s: float | None
    from_gpu: bool  # bandwidth is half the GPU's bidirectional NVLink figure when the GPU has one
    achieved: float  # fraction of it that NCCL collectives reach
    latency_us: float
    basis: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(v: str, cast=float):
    v = (v or "").strip()
    return cast(v) if v else None


def _read(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise PlannerError(f"planner data file not found: {path}") from None


@lru_cache(maxsize=4)
def load_gpus(path: Path | None = None) -> tuple[Gpu, ...]:
    out = []
    for r in _read(path or DATA_DIR / "gpus.csv"):
        if not (r.get("gpu_model") and r.get("source") and r.get("as_of")):
            raise PlannerError(f"{path or 'gpus.csv'}: every row needs gpu_model, source and as_of: {r}")
        out.append(Gpu(r["gpu_model"], r["generation"], r["form"], _num(r["memory_mib"], int),
                       _num(r["bf16_dense_tflops"]), _num(r["fp16_dense_tflops"]), _num(r["fp8_dense_tflops"]),
                       _num(r["fp4_dense_tflops"]), r["bf16_supported"] == "yes", _num(r["mem_bandwidth_gb_s"]),
                       _num(r["nvlink_gb_s"]), r["estimated"] == "yes", r["source"], r["as_of"], r.get("note") or ""))
    return tuple(out)


def gpu(name: str | None) -> Gpu | None:
    """The table's row for a GPU model name (gpus.csv's ``gpu_model``), or None."""
    return _by_name().get(name) if name else None


@lru_cache(maxsize=1)
def _by_name() -> dict[str, Gpu]:
    return {g.gpu_model: g for g in load_gpus()}


@lru_cache(maxsize=4)
def load_links(path: Path | None = None) -> dict[str, Link]:
    return {r["link"]: Link(r["link"], _num(r["bandwidth_gb_s"]), r["from_gpu"] == "yes", float(r["achieved"]),
                            float(r["latency_us"]), r["basis"], r["source"])
            for r in _read(path or DATA_DIR / "links.csv")}


_GBPS = re.compile(r"(\d+(?:\.\d+)?)\s*gbps", re.IGNORECASE)


def link_for(interconnect: str, gpus_per_machine: int, machines: int, card: Gpu | None = None) -> str:
    """none | pcie | nvlink | nvswitch | efa for a machine shape (module docstring)."""
    if machines > 1:
        return "efa"
    if gpus_per_machine <= 1:
        return "none"
    text = (interconnect or "").lower()
    if "nvswitch" in text:
        return "nvswitch"
    if "nvlink" in text:
        return "nvlink"
    if not text and card is not None and card.form == "sxm":
        return "nvlink" if card.generation == "volta" else "nvswitch"
    return "pcie"


def link_bandwidth(link: str, card: Gpu | None = None, interconnect: str = "",
                   gpus_per_machine: int = 1) -> tuple[float, str]:
    """Achieved GB/s per GPU per direction over ``link``, and its basis. Between machines it is the machine's
    network bandwidth: NCCL's rings cross each machine boundary once, so a GPU's collective volume passes
    through the machine's NICs together (nccl-tests PERFORMANCE.md, bus bandwidth)."""
    row = load_links().get(link)
    if row is None:
        raise PlannerError(f"planner/data/links.csv has no link '{link}'")
    if link == "none":
        return float("inf"), row.basis
    bw, how = row.bandwidth_gb_s or 0.0, f"{link} {row.bandwidth_gb_s:g} GB/s"
    if row.from_gpu and card is not None and card.nvlink_gb_s:
        bw, how = card.nvlink_gb_s / 2, f"{link}: half of {card.gpu_model}'s {card.nvlink_gb_s:g} GB/s NVLink"
    if link == "efa":
        m = _GBPS.search(interconnect or "")
        if m:  # a ring crosses each machine boundary once: the machine's NICs together carry each GPU's volume
            bw = float(m.group(1)) / 8
            how = f"efa: {m.group(1)} Gbps per machine"
    return bw * row.achieved, f"{how} x {row.achieved:g} achieved"
