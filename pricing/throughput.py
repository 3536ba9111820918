"""Published training throughput, the roofline's prediction for each, and the factors fitted to them.

Data files (schema in pricing/data/README.md): ``throughput.csv`` (published tokens/s, each with its URL and
exact settings: framework, kernels, attention, optimizer, LoRA rank), ``utilization.csv`` (the calibration
factors fitted from it by ``scripts/throughput_report.py --write-fit``) and ``overheads.csv`` (start-up costs).

The time model is planner.perf (a per-op roofline, communication over the real link). What a roofline does
not see (framework overhead between kernels, dataloader, logging, the kernels a stack really picks) is
fitted as a few time scales: one per kernel class (eager HF/PEFT, compiled/fused) on the step's roofline
time, and one on QLoRA's dequantization time, by least squares on the relative step-time error, every
source weighted equally. A scale is fitted only from measurements of at least ``MIN_SOURCES`` sources,
so no constant is tuned to one publication; a class without them keeps the roofline as is (scale 1).
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any


from planner.errors import PlannerError
from planner.safe_io import regular_file

from .catalog import DATA_DIR

if TYPE_CHECKING:  # the perf core loads only when a training time is figured (plan stays fast for serving)
    from planner.perf import ModelDims
    from planner.perf.training import TrainingSpeed

MIN_SOURCES = 2
KERNELS = ("eager", "compiled")
# the csv's checkpointing column -> fraction of layers re-run in backward (torchtitan's selective layer
# AC checkpoints every second layer: selective_ac_option = '2' in its 64-A100 presets)
RECOMPUTE = {"yes": 1.0, "no": 0.0, "every-2nd-layer": 0.5}  # HF Trainer / PEFT eager PyTorch; torch.compile, Liger, Unsloth, torchao fused


@dataclass(frozen=True)
class Measurement:
    id: str
    model: str
    model_key: str  # registry name, or inline dims "hidden=..;layers=..;heads=..;kv_heads=..;head_dim=..;..."
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
    framework: str
    kernels: str  # eager | compiled
    attention: str  # flash | math
    optimizer: str
    lora_r: int
    lora_targets: str
    strategy: str
    source: str
    as_of: str
    note: str = ""
    recompute: float = 1.0  # fraction of layers checkpointed ('every-2nd-layer' in the csv: 0.5)

    @property
    def source_key(self) -> str:
        """The publication a row comes from (leave-one-source-out groups by it)."""
        return self.framework

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """Fitted time scales: step time = scale[kernels] x roofline time without dequantization
    + dequant_scale x the dequantization's roofline time (module docstring)."""

    scale: dict[str, float]  # kernel class -> multiplier ("*" = all classes together)
    dequant_scale: float
    n: int
    sources: tuple[str, ...]
    basis: dict[str, str]

    def scale_for(self, kernels: str) -> tuple[float, str]:
        if kernels in self.scale:
            return self.scale[kernels], self.basis[kernels]
        return 1.0, f"roofline as is (no {kernels}-kernel runs from {MIN_SOURCES} sources to fit a scale to)"


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
        out.append(Measurement(r["id"], r["model"], r["model_key"], int(r["params"]), r["mode"], r["gpu_model"], gpus,
                               int(r["machines"]), r["interconnect"], int(r["seq_len"]), int(r["batch"]),
                               r["checkpointing"] != "no", tps, r["framework"], r["kernels"], r["attention"],
                               r["optimizer"], int(r["lora_r"] or 0), r["lora_targets"] or "all-linear",
                               r["strategy"], r["source"], r["as_of"], r.get("note") or "",
                               RECOMPUTE[r["checkpointing"]]))
    return tuple(out)


@lru_cache(maxsize=None)
def dims_of(model_key: str) -> tuple["ModelDims", int]:
    """(ModelDims, total parameters) for a registry name or an inline dims string."""
    from planner.perf import ModelDims
    if "=" in model_key:
        kv = dict(p.split("=") for p in model_key.split(";"))
        flags = ("gated_mlp", "rotary")  # 0/1 in the csv
        d = ModelDims(**{k: (bool(int(v)) if k in flags else int(v)) for k, v in kv.items() if k != "params"})
        return d, int(kv["params"])
    from planner.params import count_params
    from planner.registry import resolve
    spec = resolve(model_key)
    return ModelDims.from_spec(spec), count_params(spec).total


def speed_of(m: Measurement, eff_table: dict | None = None) -> "TrainingSpeed":
    """The roofline's (uncalibrated) speed for a measurement's exact settings."""
    from planner import hardware
    from planner.perf.training import Method, training_speed
    dims, total = dims_of(m.model_key)
    gpu = hardware.gpu(m.gpu_model)
    per_machine = m.gpus // m.machines
    bw, how = hardware.link_bandwidth(m.interconnect, gpu, "", per_machine)
    method = Method(m.mode, checkpointing=m.checkpointing, recompute=m.recompute, lora_r=m.lora_r or 16, lora_targets=m.lora_targets,
                    lora_dropout=m.kernels == "eager", attn_kernel=m.attention, fused=m.kernels == "compiled",
                    optimizer=m.optimizer)
    trainable = total if m.mode == "full" else lora_trainable(dims, m.lora_r or 16, m.lora_targets)
    return training_speed(dims, method, gpu, batch=m.batch, seq_len=m.seq_len, gpus=m.gpus, strategy=m.strategy,
                          link=m.interconnect, link_gb_s=bw, link_basis=how, total_params=total,
                          trainable_params=trainable, eff_table=eff_table)


def lora_trainable(dims: "ModelDims", r: int, targets: str) -> int:
    from planner.perf.training import _targets
    return sum(r * (d_in + d_out) * (dims.experts if dims.experts and n in ("gate_proj", "up_proj", "down_proj")
                                     else 1) for n, d_in, d_out, _ in _targets(dims, targets)) * dims.layers


def _solve(m: list[list[float]], v: list[float]) -> list[float]:
    """Gaussian elimination for the small normal equations of the fit (no numpy on the plan path)."""
    n = len(v)
    a = [row[:] + [v[i]] for i, row in enumerate(m)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(a[r][c]))
        a[c], a[p] = a[p], a[c]
        if abs(a[c][c]) < 1e-300:
            raise ZeroDivisionError("singular")
        for r in range(n):
            if r != c:
                f = a[r][c] / a[c][c]
                a[r] = [x - f * y for x, y in zip(a[r], a[c])]
    return [a[i][n] / a[i][i] for i in range(n)]


def fit(measurements: Iterable[Measurement], speeds: dict[str, "TrainingSpeed"]) -> Calibration:
    """Least squares on relative step-time error, each source weighted equally (module docstring).

    Unknowns: one scale per kernel class with measurements from >= MIN_SOURCES sources (other classes keep
    the roofline as is: scale 1) and the dequant scale when QLoRA rows come from >= MIN_SOURCES sources."""
    ms = [m for m in measurements if m.id in speeds and "exclude" not in m.note.lower()[:8]]
    by_src: dict[str, int] = {}
    for m in ms:
        by_src[m.source_key] = by_src.get(m.source_key, 0) + 1
    classes = sorted(k for k in {m.kernels for m in ms}
                     if len({m.source_key for m in ms if m.kernels == k}) >= MIN_SOURCES)
    fit_dq = len({m.source_key for m in ms if m.mode == "qlora"}) >= MIN_SOURCES
    names = [*classes, *(["dequant"] if fit_dq else [])]
    rows = []
    for m in ms:
        sp = speeds[m.id]
        dq = sp.by_kind.get("dequant", 0.0)
        t_pub = sp.tokens_per_step * sp.gpus / m.tokens_per_second
        base = (sp.step_seconds - dq) / t_pub
        fixed = (0.0 if m.kernels in classes else base) + (0.0 if fit_dq else dq / t_pub)
        x = [base if k == m.kernels else (dq / t_pub if k == "dequant" else 0.0) for k in names]
        if any(x):
            rows.append((x, 1.0 - fixed, 1.0 / by_src[m.source_key]))
    used = [i for i, k in enumerate(names) if any(r[0][i] for r in rows)]
    mat = [[sum(w * r[i] * r[j] for r, _, w in rows) for j in used] for i in used]
    vec = [sum(w * r[i] * y for r, y, w in rows) for i in used]
    sol = dict(zip([names[i] for i in used], _solve(mat, vec))) if used else {}
    sources = tuple(sorted(by_src))
    scale = {k: round(v, 4) for k, v in sol.items() if k != "dequant"}
    basis = {k: (f"x{v:.3f} fitted to {sum(1 for m in ms if m.kernels == k)} published runs from "
                 f"{', '.join(sorted({m.source_key for m in ms if m.kernels == k}))}") for k, v in scale.items()}
    return Calibration(scale, round(sol.get("dequant", 1.0), 4), len(ms), sources, basis)


def write_calibration(cal: Calibration, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["parameter", "value", "n", "sources", "basis", "source", "as_of"])
        for k, v in cal.scale.items():
            w.writerow([f"scale:{k}", v, cal.n, ";".join(cal.sources), cal.basis[k],
                        "fitted by scripts/throughput_report.py --write-fit from throughput.csv", "2026-12-08"])
        w.writerow(["dequant_scale", cal.dequant_scale, cal.n, ";".join(cal.sources),
                    "multiplier on the roofline time of QLoRA's 4-bit dequantization",
                    "fitted by scripts/throughput_report.py --write-fit from throughput.csv", "2026-12-08"])


@lru_cache(maxsize=4)
def load_calibration(path: Path | None = None) -> Calibration:
    rows = _read(path or DATA_DIR / "utilization.csv")
    scale = {r["parameter"].split(":", 1)[1]: float(r["value"]) for r in rows if r["parameter"].startswith("scale:")}
    basis = {r["parameter"].split(":", 1)[1]: r["basis"] for r in rows if r["parameter"].startswith("scale:")}
    dq = next((float(r["value"]) for r in rows if r["parameter"] == "dequant_scale"), 1.0)
    n = int(rows[0]["n"]) if rows else 0
    return Calibration(scale, dq, n, tuple(rows[0]["sources"].split(";")) if rows else (), basis)


def calibrated(speed: "TrainingSpeed", kernels: str, cal: Calibration | None = None) -> tuple[float, float, str]:
    """(tokens/s, step seconds, basis) after the fitted scales."""
    cal = load_calibration() if cal is None else cal
    s, basis = cal.scale_for(kernels)
    dq = speed.by_kind.get("dequant", 0.0)
    step = s * (speed.step_seconds - dq) + cal.dequant_scale * dq
    return speed.gpus * speed.tokens_per_step / step, step, basis + (
        f"; dequantization x{cal.dequant_scale:.3f}" if dq else "")


@lru_cache(maxsize=4)
def overheads(path: Path | None = None) -> dict[tuple[str, str], dict[str, str]]:
    return {(r["platform"], r["item"]): r for r in _read(path or DATA_DIR / "overheads.csv")}
