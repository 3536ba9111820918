"""``run.json``: what a training run did, written atomically while it runs and when it ends.

Fields: status (running | completed | failed), global_step, train_loss and eval_loss (one entry
per logged step), predicted_peak_allocated_bytes (the plan's) against
measured_peak_allocated_bytes (``torch.cuda.max_memory_allocated()``; null off a GPU), the data
summary, resume history, MLflow ids, the stored adapter's name and the plan itself.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FILE = "run.json"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read(output_dir: Path) -> dict[str, Any] | None:
    """The run record in ``output_dir``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(output_dir) / FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write(output_dir: Path, record: dict[str, Any]) -> None:
    """Replace run.json atomically: a crash leaves the old or the new file, never half of one."""
    path = Path(output_dir) / FILE
    tmp = path.with_name(f".{FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def losses(log_history: list[dict[str, Any]], key: str) -> list[dict[str, float]]:
    """[{step, <key>}] from the Trainer's log history (which a resume restores from the checkpoint)."""
    return [{"step": e["step"], key: e[key]} for e in log_history if key in e and "step" in e]
