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

from planner.errors import PlannerError
from planner.safe_io import check_output_target, read_json_object

FILE = "run.json"
KIND = "training-run"  # the output marker's word for a run folder (planner/safe_io.py)
OURS = (FILE, "checkpoints", ".plan.lock", ".plan.lock.guard")  # a run folder from before the marker


def check_folder(output_dir: Path, flag: str) -> Path:
    """A run folder may only be new, empty or a run folder already (never the user's files or a model)."""
    return check_output_target(output_dir, flag=flag, kind=KIND, also_ours=OURS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class DamagedRecord(PlannerError):
    """run.json is there but not a run record: unreadable, not JSON, or fields of the wrong type."""


# The fields a resume reads back, and the types they must have (null allowed for each).
_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str, "global_step": int, "identity": dict, "train_loss": list, "eval_loss": list,
    "set_aside_checkpoints": list, "resumed_from": list, "discarded_checkpoints": list, "mlflow": dict,
    "notes": list, "adapter": (dict, str), "base_model": (str, dict), "metrics": dict}
STATUSES = ("running", "completed", "failed")


def load(output_dir: Path) -> dict[str, Any] | None:
    """The typed run record in ``output_dir``: None when there is none; ``DamagedRecord`` (one line)
    when the file is there but is not a record this code wrote (not JSON, a list, odd types)."""
    path = Path(output_dir) / FILE
    return load_file(path) if os.path.lexists(path) else None


def load_file(path: Path) -> dict[str, Any]:
    """A run.json at ``path`` (a run folder's, or one unpacked from a job's artifact: untrusted)."""
    try:
        doc = read_json_object(path, "run record")
    except PlannerError as exc:
        raise DamagedRecord(str(exc)) from None
    base = doc.get("base_model")
    if isinstance(base, dict) and not isinstance(base.get("name"), (str, type(None))):
        raise DamagedRecord(f"run record {path}: 'base_model.name' is not text")
    return check_record(doc, str(path))


def check_record(doc: dict[str, Any], where: str) -> dict[str, Any]:
    """``doc`` if every field a reader relies on has its type; else ``DamagedRecord`` naming the field."""
    for key, kind in _TYPES.items():
        value = doc.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise DamagedRecord(f"run record {where}: '{key}' is {type(value).__name__}, not "
                                f"{kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
    if doc.get("status") is not None and doc["status"] not in STATUSES:
        raise DamagedRecord(f"run record {where}: status '{str(doc['status'])[:40]}' is not one of {', '.join(STATUSES)}")
    for key in ("train_loss", "eval_loss"):
        if any(not isinstance(e, dict) or not isinstance(e.get("step"), int) for e in doc.get(key) or []):
            raise DamagedRecord(f"run record {where}: '{key}' entries must be objects with an integer step")
    return doc


def read(output_dir: Path) -> dict[str, Any] | None:
    """The run record for reports, or None when there is none or it is damaged (see ``load``)."""
    try:
        return load(output_dir)
    except DamagedRecord:
        return None


def damaged_refusal(folder: Path, reason: str) -> str:
    return (f"{folder}: {reason}; its checkpoints cannot be matched to this run, so nothing is resumed or "
            "overwritten: pass --restart to start over (the run and its record are moved aside, not deleted), "
            "or another --output-dir")


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
    try:
        found = load(output_dir)
    except DamagedRecord:
        return  # a damaged record stays as it is (never overwritten): the refusal said what to do
    record = found or {"status": "running", "global_step": 0, "train_loss": []}
    if record.get("status") == "completed":
        return  # a finished run stays finished; only this attempt failed
    record.update(status="failed", reason=failure_reason(exc), finished=now())
    try:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write(output_dir, record)
    except OSError:
        pass  # an unwritable folder: the error itself is reported by the caller
