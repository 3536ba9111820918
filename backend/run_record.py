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


def merged(earlier: list[dict[str, Any]] | None, current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history so far plus the current process's entries; for a step both have, the current ones win.

    A resumed Trainer restores the log history of its checkpoint only; entries a crashed run logged
    after it (or the whole history, when it fell back to an older checkpoint) stay in run.json until
    retrained, so the record is only ever extended, never reset.
    """
    steps = {e["step"] for e in current}  # a step may hold two entries (the last save's eval, the final eval)
    return sorted([e for e in earlier or [] if e["step"] not in steps] + list(current), key=lambda e: e["step"])


def failure_reason(exc: BaseException) -> str:
    """One line for run.json's ``reason``."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, SystemExit):
        return f"terminated (exit {exc.code}: SIGTERM, e.g. the launching process died)"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text if type(exc).__name__ == "PlannerError" else f"{type(exc).__name__}: {text}".rstrip(": ")


def mark_failed(output_dir: Path, exc: BaseException) -> None:
    """Record a failure at any stage: status failed, the reason, the time (creating run.json if none)."""
    record = read(output_dir) or {"status": "running", "global_step": 0, "train_loss": []}
    if record.get("status") == "completed":
        return  # a finished run stays finished; only this attempt failed
    record.update(status="failed", reason=failure_reason(exc), finished=now())
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write(output_dir, record)
    except OSError:
        pass  # an unwritable folder: the error itself is reported by the caller
