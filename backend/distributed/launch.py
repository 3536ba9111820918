"""From a priced plan to files on disk and a running ``accelerate launch``: the I/O around config.py.

``emit`` serves ``plan MODEL ... --emit-config DIR``: it writes the accelerate config (plus the
DeepSpeed alternative for sharded plans), ``plan.json`` for the entry script (with a
``distributed`` block naming the strategy and the per-GPU estimate pricing used, which the run
copies into run.json) and ``launch.sh`` with the exact command. ``launch_local`` runs the same
command on this machine (``--execute --backend local`` with several GPUs, and the CPU tests).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

from .config import ACCELERATE_FILE, FSDP, FSDP_QLORA, SINGLE, ZERO3, LaunchConfig, build_launch_config, \
    normalize_strategy

PLAN_FILE = "plan.json"
SCRIPT_FILE = "launch.sh"


def recommendation(costs: Any) -> dict[str, Any]:
    """The pricing recommendation as a dict (``costs.to_dict()["recommendation"]``), or a clear error."""
    if costs is None:
        raise PlannerError("--emit-config needs a priced plan to know how many GPUs to launch; drop --no-pricing")
    doc = costs.to_dict() if hasattr(costs, "to_dict") else dict(costs)
    rec = doc.get("recommendation")
    if not rec:
        raise PlannerError("nothing fits this plan, so there is no launch configuration to write; "
                           "see the candidates above (--max-gpus, --platform, a smaller --seq-len)")
    return rec


def machines_of(rec: dict[str, Any]) -> tuple[int, int]:
    """(total GPUs, machines) of a recommendation; ``gpu_count`` counts GPUs over all machines."""
    machines = int(rec.get("machines") or rec.get("instance_count") or rec.get("num_machines") or 1)
    gpus = int(rec.get("gpu_count") or 1)
    return gpus, machines


def plan_launch(est: Any, costs: Any, *, entry_args: tuple[str, ...] = (), engine: str | None = None,
                offload: bool | None = None, use_cpu: bool = False, num_processes: int | None = None) -> LaunchConfig:
    """The LaunchConfig for a priced plan: strategy, GPU and machine counts from pricing's
    recommendation, the architecture and mode from the estimate; the per-GPU estimate pricing fitted
    goes into the metadata (and from there into plan.json and run.json)."""
    rec = recommendation(costs)
    gpus, machines = machines_of(rec)
    strategy = normalize_strategy(rec.get("strategy") or SINGLE)
    if num_processes is not None:  # e.g. the GPUs this machine really has
        gpus, machines = num_processes, 1
    if offload is None:
        offload = "offload" in str(rec.get("strategy", "")).lower()
    meta = {"planned_strategy": rec.get("strategy"), "per_gpu_bytes": rec.get("per_gpu_bytes"),
            "instance_type": rec.get("instance_type"), "platform": rec.get("platform"),
            "gpu_count": rec.get("gpu_count"), "single_gpu_total_bytes": est.total_bytes,
            "single_gpu_peak_allocated_bytes": est.peak_allocated_bytes}
    return build_launch_config(strategy, gpus, machines, est.model.model_type, est.job.mode,
                               compute_dtype=est.job.compute_dtype, engine=engine, offload=bool(offload),
                               use_cpu=use_cpu, entry_args=entry_args, metadata=meta)


def plan_document(model_name: str, est: Any, cfg: LaunchConfig, training: dict[str, Any]) -> dict[str, Any]:
    """plan.json for ``backend.train``: the estimate, the ``training`` block, the ``distributed`` block."""
    block = {"model": model_name, **{k: v for k, v in training.items() if v is not None}}
    return {**est.to_dict(), "training": block, "distributed": dict(cfg.metadata)}


def training_block(opts: Any, dir: Path) -> dict[str, Any]:
    """The entry script's settings from the CLI options (train.py's Settings fields)."""
    return {"dataset": str(Path(opts.dataset).resolve()) if opts.dataset and "://" not in str(opts.dataset)
            else opts.dataset,
            "output_dir": str(Path(opts.output_dir).resolve()) if opts.output_dir else str((dir / "output").resolve()),
            "max_steps": opts.max_steps, "epochs": opts.epochs, "learning_rate": opts.learning_rate,
            "save_steps": opts.save_steps, "experiment": opts.experiment}


def write_launch(cfg: LaunchConfig, dir: Path, plan: dict[str, Any] | None = None,
                 alternative: LaunchConfig | None = None) -> list[Path]:
    """Write the config files, plan.json and launch.sh into ``dir``; return the paths written."""
    dir = Path(dir)
    try:
        dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlannerError(f"cannot create {dir}: {exc.strerror}") from None
    where = str(dir.resolve())
    written = []
    for name, text in cfg.rendered_files(where):
        written.append(_write(dir / name, text))
    if plan is not None:
        written.append(_write(dir / PLAN_FILE, json.dumps(plan, indent=2) + "\n"))
    lines = ["#!/usr/bin/env bash", f"# {cfg.strategy} on {cfg.num_processes} GPU(s), {cfg.num_machines} machine(s); "
             "generated by `plan --emit-config`, see docs/distributed.md", "set -euo pipefail"]
    if cfg.num_machines > 1:
        lines += ['# On every machine: MACHINE_RANK=0..N-1, MAIN_PROCESS_IP=<address of rank 0>',
                  ': "${MACHINE_RANK:?set MACHINE_RANK}" "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP}"']
    lines.append(cfg.shell_command(where))
    if alternative is not None:
        alt_dir = dir / alternative.engine  # deepspeed/ beside an FSDP plan, fsdp/ beside a ZeRO-3 one
        alt_dir.mkdir(exist_ok=True)
        alt_where = str(alt_dir.resolve())
        for name, text in alternative.rendered_files(alt_where):
            written.append(_write(alt_dir / name, text))
        lines += [f"# Alternative ({alternative.engine}, {alternative.strategy}):",
                  "# " + alternative.shell_command(alt_where)]
    script = _write(dir / SCRIPT_FILE, "\n".join(lines) + "\n")
    script.chmod(0o755)
    return [*written, script]


def _write(path: Path, text: str) -> Path:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PlannerError(f"cannot write {path}: {exc.strerror}") from None
    return path


@dataclass(frozen=True)
class Emitted:
    """What ``emit`` wrote: the launch config, the files, and whether accelerate validated them."""

    cfg: LaunchConfig
    dir: Path
    written: tuple[Path, ...]
    validated: bool

    @property
    def command(self) -> str:
        return self.cfg.shell_command(str(self.dir.resolve()))


def emit(model_name: str, est: Any, costs: Any, opts: Any) -> Emitted:
    """``plan MODEL ... --emit-config DIR``: write the launch files for the priced plan."""
    dir = Path(opts.emit_config)
    entry = ("--plan", "{dir}/" + PLAN_FILE)
    cfg = plan_launch(est, costs, entry_args=entry)
    alternative = None
    if cfg.strategy in (FSDP, FSDP_QLORA, ZERO3):  # the other engine, for those who prefer it
        other = "fsdp" if cfg.engine == "deepspeed" else "deepspeed"
        alternative = plan_launch(est, costs, entry_args=("--plan", str((dir / PLAN_FILE).resolve())), engine=other,
                                  offload=cfg.metadata["offload"])
    plan = plan_document(model_name, est, cfg, training_block(opts, dir))
    written = write_launch(cfg, dir, plan, alternative)
    return Emitted(cfg, dir, tuple(written), validate_dir(dir))


def validate_dir(dir: Path) -> bool:
    """Load the written config(s) with accelerate; False when accelerate is not installed."""
    try:
        from .validate import validate_config
    except ImportError:  # pragma: no cover - accelerate missing
        return False
    for path in (dir / ACCELERATE_FILE, dir / "deepspeed" / ACCELERATE_FILE, dir / "fsdp" / ACCELERATE_FILE):
        if path.exists():
            validate_config(path)
    return True


def run_on_local_gpus(est: Any, costs: Any, plan: dict[str, Any], out: Path, gpus: int) -> int:
    """``--execute --backend local`` on a machine with ``gpus`` > 1 GPUs: the plan's strategy over
    this machine's GPUs under ``accelerate launch``; launch files go to OUT/launch."""
    out = Path(out)
    cfg = plan_launch(est, costs, entry_args=("--plan", str((out / PLAN_FILE).resolve())), num_processes=gpus)
    plan = {**plan, "distributed": dict(cfg.metadata)}
    _write(out / PLAN_FILE, json.dumps(plan, indent=2) + "\n")
    return launch_local(cfg, out / "launch")


def launch_local(cfg: LaunchConfig, dir: Path, plan: dict[str, Any] | None = None, *,
                 env: dict[str, str] | None = None, timeout: float | None = None) -> int:
    """Write the launch files into ``dir`` and run ``accelerate launch`` here; its exit code.

    Uses this interpreter's accelerate (``python -m accelerate.commands.launch``), so the launched
    processes see the same packages as the planner.
    """
    write_launch(cfg, dir, plan)
    argv = cfg.argv(str(Path(dir).resolve()))
    argv = [sys.executable, "-m", "accelerate.commands.launch", *argv[2:]]
    root = Path(__file__).resolve().parents[2]  # so ``-m backend.train`` imports this checkout
    child_env = {**os.environ, **(env or {})}
    if cfg.metadata.get("use_cpu"):
        # accelerate's multi-GPU launcher does not pass --cpu on; without it the ranks pick no backend.
        child_env["ACCELERATE_USE_CPU"] = "true"
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), child_env.get("PYTHONPATH")) if p)
    try:
        return subprocess.run(argv, env=child_env, timeout=timeout, check=False).returncode
    except FileNotFoundError as exc:  # pragma: no cover - python itself missing
        raise PlannerError(f"cannot start accelerate: {exc}") from None
