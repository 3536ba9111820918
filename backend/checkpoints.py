"""Crash-safe checkpoints: only a checkpoint known to be complete is ever resumed.

The Trainer writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG state, then
``trainer_state.json``) and only afterwards calls ``on_save``. ``CompleteMarker`` writes a
``COMPLETE`` file, fsynced, in that callback, so a folder with the marker was fully written. A
process killed mid-save leaves a folder without it; ``last_complete_checkpoint`` skips such
folders and ``discard_incomplete`` removes them before the resumed run saves over them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

MARKER = "COMPLETE"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int | None:
    m = _CHECKPOINT.match(Path(path).name)
    return int(m.group(1)) if m else None


def is_complete(path: Path) -> bool:
    """Marker present and trainer_state.json parseable (belt and braces)."""
    path = Path(path)
    if not (path / MARKER).is_file():
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return True


def checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders, lowest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=checkpoint_step)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint in ``folder``, or None."""
    complete = [p for p in checkpoints(folder) if is_complete(p)]
    return complete[-1] if complete else None


def discard_incomplete(folder: Path) -> list[Path]:
    """Delete half-written checkpoint folders; return what was removed."""
    removed = [p for p in checkpoints(folder) if not is_complete(p)]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def write_marker(path: Path, step: int) -> None:
    marker = Path(path) / MARKER
    with marker.open("w") as fh:
        fh.write(f"{step}\n")
        fh.flush()
        os.fsync(fh.fileno())


def marker_callback():
    """A TrainerCallback that marks each checkpoint complete once the Trainer has saved it."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if path.is_dir():
                    write_marker(path, state.global_step)
            return control

    return CompleteMarker()
