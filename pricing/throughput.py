"""Measured training throughput, the utilization fitted to it, scaling efficiency and start-up overheads.

Data files (schema in pricing/data/README.md): ``throughput.csv`` (published tokens/s, each with
its URL), ``utilization.csv`` (fitted from it by ``scripts/throughput_report.py --write``),
``scaling.csv`` (efficiency by interconnect and strategy) and ``overheads.csv`` (start-up costs).

Utilization u of one measurement (the effective model-FLOPs utilization of docs/pricing.md):
    u = tokens/s x factor x active params / (GPUs x dense TFLOPS x scaling efficiency)
with ``factor`` from ``timecost.flops_per_token_factor``. A cell's utilization is the median of
its measurements' u. Cells, most specific first: (GPU model, mode, checkpointing), (GPU
generation, mode, checkpointing), (any GPU, mode, checkpointing); prompt tuning uses the LoRA cells.
The last level, for a GPU of a generation nobody measured (B200, T4, V100), takes the *lowest*
measured u of the mode, not the median: a guess should not make an unmeasured GPU win.
"""
from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.safe_io import regular_file

from .catalog import DATA_DIR

# Prior when no cell matches (no measurement for the mode at all): an assumption, the old single
# utilization (typical published MFU for 7B-70B fine-tuning with FSDP is 30-50%).
PRIOR_UTILIZATION = 0.40


@dataclass(frozen=True)
class Measurement:
    id: str
    model: str
    params: int
    mode: str
    gpu_model: str
    gpus: int
    machines: int
    interconnect: str
    seq_len: int
    batch: int
    checkpointing: bool
    tokens_per_second: float  # over all GPUs
    source: str
    as_of: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Cell:
    level: str  # gpu | generation | mode
    key: str  # GPU model, generation, or '*'
    mode: str
    checkpointing: bool
    utilization: float
    n: int
    ids: tuple[str, ...]

    def basis(self) -> str:
        what = {"gpu": f"{self.key}", "generation": f"{self.key} GPUs",
                "mode": "all GPUs (lowest, as no GPU of this generation was measured)"}[self.level]
        return (f"fitted to {self.n} published measurement(s) ({', '.join(self.ids)}) on {what}, {self.mode}, "
                f"checkpointing {'on' if self.checkpointing else 'off'}")


def _read(path: Path) -> list[dict[str, str]]:
    if Path(path).exists():
        regular_file(path, "pricing data file")  # a FIFO or /dev/zero would hang the read
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise PlannerError(f"pricing data file not found: {path}") from None


def load_measurements(path: Path | None = None) -> tuple[Measurement, ...]:
    out = []
    for r in _read(path or DATA_DIR / "throughput.csv"):
        gpus = int(r["gpus"])
        tps = float(r["tokens_per_second"]) * (gpus if r["per"] == "per-gpu" else 1)
        out.append(Measurement(r["id"], r["model"], int(r["params"]), r["mode"], r["gpu_model"], gpus,
                               int(r["machines"]), r["interconnect"], int(r["seq_len"]), int(r["batch"]),
                               r["checkpointing"] == "yes", tps, r["source"], r["as_of"], r.get("note") or ""))
    return tuple(out)


@lru_cache(maxsize=4)
def scaling_table(path: Path | None = None) -> dict[tuple[str, str], tuple[float, str]]:
    return {(r["interconnect"], r["strategy"]): (float(r["efficiency"]), r["basis"])
            for r in _read(path or DATA_DIR / "scaling.csv")}


@lru_cache(maxsize=4)
def overheads(path: Path | None = None) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["platform"], r["item"]): r for r in _read(path or DATA_DIR / "overheads.csv")}


def interconnect_class(interconnect: str, gpus_per_machine: int, machines: int) -> str:
    """instances.csv's interconnect text -> none | pcie | nvlink | nvswitch | efa (several machines)."""
    if machines > 1:
        return "efa"
    if gpus_per_machine <= 1:
        return "none"
    text = interconnect.lower()
    if "nvswitch" in text:
        return "nvswitch"
    if "nvlink" in text:
        return "nvlink"
    return "pcie"  # multi-GPU g4dn/g5/g6/g6e/g7e: PCIe only


def scaling_efficiency(link: str, strategy: str | None) -> tuple[float, str]:
    if link == "none" or strategy in (None, "single-gpu"):
        return 1.0, "one GPU"
    table = scaling_table()
    if (link, strategy) in table:
        return table[(link, strategy)]
    raise PlannerError(f"pricing/data/scaling.csv has no efficiency for {strategy} over {link}")


def measured_utilization(m: Measurement, spec, factor: int) -> float | None:
    """The effective utilization one measurement implies (None without a tensor throughput)."""
    tflops = spec.bf16_dense_tflops if spec is not None else None
    if not tflops:
        return None
    strategy = "single-gpu" if m.gpus == 1 else ("fsdp-qlora" if m.mode == "qlora" else "fsdp")
    eff, _ = scaling_efficiency(m.interconnect, strategy)
    return m.tokens_per_second * factor * m.params / (m.gpus * tflops * 1e12 * eff)


def fit_cells(measurements: Iterable[Measurement], gpu_of, factor_of) -> tuple[Cell, ...]:
    """Median utilization per cell at each level; ``gpu_of(name)`` gives the GpuSpec."""
    groups: dict[tuple[str, str, str, bool], list[tuple[str, float]]] = {}
    for m in measurements:
        spec = gpu_of(m.gpu_model)
        u = measured_utilization(m, spec, factor_of(m.mode, m.checkpointing))
        if u is None:
            continue
        for level, key in (("gpu", m.gpu_model), ("generation", spec.generation), ("mode", "*")):
            groups.setdefault((level, key, m.mode, m.checkpointing), []).append((m.id, u))
    def agg(level, us):
        return min(us) if level == "mode" else statistics.median(us)
    return tuple(Cell(level, key, mode, ck, round(agg(level, [u for _, u in v]), 4), len(v),
                      tuple(i for i, _ in v)) for (level, key, mode, ck), v in sorted(groups.items()))


def write_cells(cells: Iterable[Cell], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["level", "key", "mode", "checkpointing", "utilization", "n", "ids", "source", "as_of"])
        for c in cells:
            w.writerow([c.level, c.key, c.mode, "yes" if c.checkpointing else "no", c.utilization, c.n,
                        ";".join(c.ids), "fitted by scripts/throughput_report.py from throughput.csv", "2026-12-01"])


@lru_cache(maxsize=4)
def load_cells(path: Path | None = None) -> tuple[Cell, ...]:
    return tuple(Cell(r["level"], r["key"], r["mode"], r["checkpointing"] == "yes", float(r["utilization"]),
                      int(r["n"]), tuple(r["ids"].split(";")))
                 for r in _read(path or DATA_DIR / "utilization.csv"))


def utilization_for(spec, mode: str, checkpointing: bool, cells: Iterable[Cell] | None = None) -> tuple[float, str]:
    """The fitted utilization for a GPU and recipe, most specific cell first, and its basis."""
    mode = "lora" if mode == "prompt-tuning" else mode
    cells = tuple(load_cells() if cells is None else cells)
    gpu = getattr(spec, "gpu_model", None)
    gen = getattr(spec, "generation", "")
    for level, key in (("gpu", gpu), ("generation", gen), ("mode", "*")):
        for ck in (checkpointing, not checkpointing):
            for c in cells:
                if (c.level, c.key, c.mode, c.checkpointing) == (level, key, mode, ck):
                    extra = "" if ck == checkpointing else " (other checkpointing setting: nearest cell)"
                    return c.utilization, c.basis() + extra
    return PRIOR_UTILIZATION, "assumed prior (no published measurement for this mode)"
