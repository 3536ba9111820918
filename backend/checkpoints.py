"""Crash-safe checkpoints: only a checkpoint known to be complete is ever resumed.

The Trainer writes ``checkpoint-N/`` file by file (weights, optimizer, scheduler, RNG state, then
``trainer_state.json``) and only afterwards calls ``on_save``. ``CompleteMarker`` writes a
``COMPLETE`` file, fsynced, in that callback, so a folder with the marker was fully written. A
process killed mid-save leaves a folder without it; ``last_complete_checkpoint`` skips such
folders and ``discard_incomplete`` removes them before the resumed run saves over them.

A checkpoint with its marker can still be damaged afterwards (a full disk, a copy cut short). The
marker therefore lists every file's size, and ``damage`` checks those sizes and the files'
structure (a safetensors header that accounts for the whole file, a torch zip whose central
directory reads). ``pick_resume`` sets a damaged checkpoint aside (renamed into ``set-aside/``,
never deleted) and tries the previous complete one. Sizes, not hashes: hashing a full model's
checkpoint at every save would cost minutes; truncation is the damage that happens.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

MARKER = "COMPLETE"
SET_ASIDE = "set-aside"  # not checkpoint-*: the Trainer's rotation never touches it
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
    """COMPLETE, fsynced: the step and the size of every file the Trainer wrote (a manifest)."""
    path = Path(path)
    files = {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*"))
             if f.is_file() and f.name != MARKER}
    marker = path / MARKER
    with marker.open("w") as fh:
        fh.write(json.dumps({"step": step, "files": files}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def damage(path: Path) -> str | None:
    """What is wrong with a complete-looking checkpoint, or None when nothing found is."""
    path = Path(path)
    try:
        manifest = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        manifest = None
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}  # old markers: "N\n"
    for name, size in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        if f.stat().st_size != size:
            return f"{name} has {f.stat().st_size} bytes, {size} when saved"
    for f in sorted(path.iterdir()):
        problem = _structure(f)
        if problem:
            return f"{f.name}: {problem}"
    return None


def _structure(f: Path) -> str | None:
    """A safetensors file must hold what its header says; a torch .pt/.bin (a zip) must open."""
    if f.suffix == ".safetensors":
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, struct.error, ValueError, UnicodeDecodeError):
            return "unreadable safetensors header"
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if f.stat().st_size != 8 + n + end:
            return f"truncated ({f.stat().st_size} bytes, the header says {8 + n + end})"
    elif f.suffix in (".pt", ".bin", ".pth") and f.is_file():
        try:
            with zipfile.ZipFile(f) as z:
                z.infolist()
        except (OSError, zipfile.BadZipFile):
            return "truncated or not a torch file"
    return None


def set_aside(path: Path, why: str) -> Path:
    """Move a checkpoint (or any run file) into ``set-aside/`` beside it, under a unique name."""
    import time

    path = Path(path)
    dest_dir = path.parent / SET_ASIDE
    dest_dir.mkdir(exist_ok=True)
    dest = dest_dir / f"{path.name}-{why}-{time.strftime('%Y%m%dT%H%M%S')}"
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{path.name}-{why}-{time.strftime('%Y%m%dT%H%M%S')}-{n}")
    os.replace(path, dest)
    return dest


def pick_resume(folder: Path, *, move: bool = True) -> tuple[Path | None, list[dict[str, str]]]:
    """The newest complete, undamaged checkpoint; damaged newer ones are set aside (returned).

    ``move=False`` (the other ranks of a distributed run) picks the same one without touching files.
    """
    moved: list[dict[str, str]] = []
    for p in reversed([p for p in checkpoints(folder) if is_complete(p)]):
        problem = damage(p)
        if problem is None:
            return p, moved
        moved.append({"checkpoint": str(p), "reason": problem,
                      **({"moved_to": str(set_aside(p, "damaged"))} if move else {})})
    return None, moved


def set_aside_all(folder: Path, why: str) -> list[str]:
    """``--restart``: every checkpoint moved aside (not deleted); returns where they went."""
    return [str(set_aside(p, why)) for p in checkpoints(folder)]


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


def keep_trained_dtypes(model):
    """A TrainerCallback that gives the trained parameters back the dtype they had before a resume.

    TRL's SFTTrainer casts a quantized model's LoRA weights to bf16 (the QLoRA paper's recipe), but
    resuming loads the checkpoint's adapter through PEFT, which casts adapter weights to fp32; the
    resumed run then trained fp32 weights (and fp32 Adam moments) where the uninterrupted run had
    bf16 ones, and its losses drifted from the first step after the resume. The dtypes are taken
    when the trainer is built and restored, with the optimizer's state, before the first step
    (both round-trip exactly: the checkpoint holds the bf16 values).
    """
    import torch
    from transformers import TrainerCallback

    wanted = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}

    class KeepTrainedDtypes(TrainerCallback):
        done = False

        def on_step_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if self.done or model is None:
                return control
            self.done = True
            for name, p in model.named_parameters():
                dtype = wanted.get(name) or wanted.get(name.removeprefix("module."))
                if dtype is None or p.dtype == dtype:
                    continue
                p.data = p.data.to(dtype)
                for key, value in (optimizer.state.get(p, {}) if optimizer is not None else {}).items():
                    if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                        optimizer.state[p][key] = value.to(dtype)
            return control

    return KeepTrainedDtypes()
