"""What every launcher shares: the execution options and the plan's run settings (planner/plan.py).

``plan_cmd`` builds ``ExecuteOptions`` from its flags; planner/cli/execute.py hands them to the
chosen backend (local, SageMaker) or to --emit-config.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.plan import Machine, Plan, RunSettings, plan_for

@dataclass(frozen=True)
class ExecuteOptions:
    """The CLI's execution flags, as plain values (see planner/cli/plan_cmd.py for their help)."""

    backend: str = "local"
    dataset: str | None = None
    yes: bool = False
    force: bool = False
    output_dir: Path | None = None
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float | None = None
    save_steps: int | None = None
    experiment: str | None = None
    role: str | None = None
    bucket: str | None = None
    region: str | None = None
    spot: bool = False
    max_cost: float | None = None
    dry_run: bool = False
    wait: bool = False
    emit_config: Path | None = None
    execute: bool = False
    as_json: bool = False
    restart: bool = False  # local: start over, old checkpoints moved aside (backend/train.py --restart)


def slug(text: str, max_len: int = 60, *, keep: str = "._-", default: str = "run") -> str:
    """``text`` as a name for a folder or a job: runs of other characters than letters, digits and
    ``keep`` become one '-', at most ``max_len`` characters."""
    return re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", "-", text).strip("-.")[:max_len].rstrip("-.") or default


def model_source(model_name: str, est: Any) -> str:
    """What train.py loads: a local folder as an absolute path, else the Hub id (aliases resolved)."""
    path = Path(model_name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.name == "config.json" and path.is_file():
        return str(path.parent.resolve())
    return est.model.hf_id or model_name


def default_output_dir(model_name: str, est: Any, dataset: str) -> Path:
    """runs/<model>-<mode>-<data>: the same command maps to the same folder, so rerunning it resumes."""
    model = est.model.aliases[0] if est.model.aliases else Path(model_name.rstrip("/")).name
    data = Path(str(dataset).rstrip("/")).stem
    return Path("runs") / slug(f"{model}-{est.job.mode}-{data}")


def local_path(path: str | Path | None) -> str | None:
    """An existing local path as an absolute one; URIs (s3://) and Hub ids unchanged."""
    if path is None or "://" in str(path):
        return None if path is None else str(path)
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else str(path)


def run_settings(opts: Any, *, model: str, output_dir: str | Path, dataset: str | None = None,
                 **extra: Any) -> RunSettings:
    """The plan's run settings from the CLI's execution flags: the one place they are copied."""
    chosen = {"max_steps": opts.max_steps, "epochs": opts.epochs, "learning_rate": opts.learning_rate,
              "save_steps": opts.save_steps, "experiment": opts.experiment, **extra}
    return RunSettings(model=model, dataset=dataset, output_dir=str(output_dir),
                       **{k: v for k, v in chosen.items() if v is not None})


def training_plan(model_name: str, est: Any, opts: ExecuteOptions, output_dir: Path,
                  machine: Machine | None = None) -> Plan:
    """The local run's plan for backend/train.py (``machine``: several local GPUs, else this one)."""
    settings = run_settings(opts, model=model_source(model_name, est), dataset=local_path(opts.dataset),
                            output_dir=Path(output_dir).resolve())
    return plan_for(est, settings, backend="local", model_name=model_name,
                    machine=machine or Machine("local", "local"))
