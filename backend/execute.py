"""What every launcher shares: the execution options and plan.json's ``training`` block.

``plan_cmd`` builds ``ExecuteOptions`` from its flags; planner/cli/execute.py hands them to the
chosen backend (local, SageMaker) or to --emit-config.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def slug(text: str, max_len: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:max_len] or "run"


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


def training_plan(model_name: str, est: Any, opts: ExecuteOptions, output_dir: Path) -> dict[str, Any]:
    """plan.json for backend/train.py: the estimate plus the ``training`` block (train.Settings)."""
    training = {"model": model_source(model_name, est), "dataset": str(Path(opts.dataset).expanduser().resolve())
                if Path(opts.dataset).expanduser().exists() else opts.dataset,
                "output_dir": str(Path(output_dir).resolve()), "max_steps": opts.max_steps, "epochs": opts.epochs,
                "learning_rate": opts.learning_rate, "save_steps": opts.save_steps, "experiment": opts.experiment}
    return {**est.to_dict(), "training": {k: v for k, v in training.items() if v is not None}}
