"""Reading and writing without harm to the user's files (issue 19).

Reads: every file the CLI reads from the user (a model path, config.json, plan.json, run.json,
price files) is checked to be a regular file of bounded size before it is opened, and opened
without blocking: a FIFO would block ``open()`` forever and ``/dev/zero`` never ends.

Writes: a folder the CLI writes into must be new, empty, or hold a previous output of the same
kind, which a marker file (``.plan-output``, holding the kind) says; a model folder (config.json
beside weights) is never an output, since every later load of "the base" would pick up what was
written beside it. ``plan adapters merge -o``, ``--emit-config`` and ``--output-dir`` all ask
``check_output_target``.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import PlannerError

MiB = 1 << 20
DEFAULT_LIMIT = 64 * MiB  # a plan.json, run.json or price file is kB; a config.json's own limit is smaller
MARKER = ".plan-output"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _size(n: int) -> str:
    return f"{n / MiB:,.1f} MiB" if n >= MiB else f"{n:,} bytes"


def regular_file(path: str | os.PathLike[str], what: str, limit: int = DEFAULT_LIMIT) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes; else one PlannerError line."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise PlannerError(f"{what} {p}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise PlannerError(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None
    _check_stat(st, p, what, limit)
    return p


def _check_stat(st: os.stat_result, p: Path, what: str, limit: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise PlannerError(f"{what} {p} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise PlannerError(f"{what} {p} is not a regular file (a FIFO, device or socket); pass a file")
    if st.st_size > limit:
        raise PlannerError(f"{what} {p} is {_size(st.st_size)}, over the {_size(limit)} a {what} can be")


def read_bytes(path: str | os.PathLike[str], what: str, limit: int = DEFAULT_LIMIT) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (checked again on the open descriptor,
    so a file swapped for a FIFO after the check cannot block or overflow the read)."""
    p = regular_file(path, what, limit)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise PlannerError(f"cannot read {what} {p}: {exc.strerror}") from None
    try:
        _check_stat(os.fstat(fd), p, what, limit)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise PlannerError(f"cannot read {what} {p}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise PlannerError(f"{what} {p} is over the {_size(limit)} a {what} can be")
    return raw


def read_text(path: str | os.PathLike[str], what: str, limit: int = DEFAULT_LIMIT) -> str:
    raw = read_bytes(path, what, limit)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlannerError(f"{what} {path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                           f"{exc.start})") from None


def parse_json(text: str, where: str) -> Any:
    """JSON text -> the document, or one PlannerError line (bad syntax, NaN, a 5,000-digit integer)."""
    def no_constant(token: str) -> Any:
        raise ValueError(f"{token} is not a number JSON allows")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise PlannerError(f"{where} nests too deep to read") from None
    except ValueError as exc:  # NaN/Infinity, or an integer past Python's digit limit
        raise PlannerError(f"{where} holds a value that cannot be read ({str(exc).splitlines()[0]})") from None


def read_json_object(path: str | os.PathLike[str], what: str, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """A JSON object from a bounded regular UTF-8 file, or one PlannerError line."""
    doc = parse_json(read_text(path, what, limit), f"{what} {path}")
    if not isinstance(doc, dict):
        raise PlannerError(f"{what} {path} holds a JSON {type(doc).__name__ if doc is not None else 'null'}, "
                           "not an object")
    return doc


# ---- writing ---------------------------------------------------------------------------------

def is_model_folder(folder: Path) -> bool:
    """config.json beside weights: a model someone loads; nothing of ours belongs in it."""
    try:
        if not (folder / "config.json").is_file():
            return False
        return any(e.name in WEIGHT_INDEXES or e.name.endswith(WEIGHT_SUFFIXES) for e in os.scandir(folder))
    except OSError:
        return False


def output_kind(folder: Path) -> str | None:
    """The kind of output our marker says ``folder`` holds, or None."""
    try:
        return (folder / MARKER).read_text(encoding="utf-8", errors="replace").strip() or None
    except OSError:
        return None


def check_output_target(folder: str | os.PathLike[str], *, flag: str, kind: str | None = None,
                        also_ours: tuple[str, ...] = ()) -> Path:
    """Refuse, in one line with the fix, a target that holds anything but an earlier output of ``kind``.

    Safe: a path that does not exist yet, an empty folder, a folder whose marker names ``kind``, or
    one holding any of ``also_ours`` (files only our earlier outputs write, e.g. run.json from before
    markers existed). ``kind=None``: only new or empty targets (``plan adapters merge -o``).
    """
    p = Path(folder).expanduser()
    if str(folder) in ("", "."):  # typer turns "" into "."; the current folder is the user's, not ours
        raise PlannerError(f"{flag} names the current folder: pass a new folder's name, e.g. {flag} out/")
    try:
        str(p.resolve()).encode("utf-8")
    except UnicodeEncodeError:  # bytes from argv that are not UTF-8: plan.json and launch.sh hold the path as text
        raise PlannerError(f"{flag} {ascii(str(folder))} is not a UTF-8 path; plan.json and launch scripts hold "
                           "it as text: pick a UTF-8 folder name") from None
    if not p.exists():
        return p
    if not p.is_dir():
        raise PlannerError(f"{flag} {p} is a file, not a folder; pass a new or empty folder")
    if is_model_folder(p):
        raise PlannerError(f"{flag} {p} is a model folder (config.json and weights); writing into it would change "
                           "what every later load of that model gets: pass a new or empty folder")
    try:
        entries = [e.name for e in os.scandir(p)]
    except OSError as exc:
        raise PlannerError(f"{flag} {p}: cannot list it ({exc.strerror})") from None
    if not entries:
        return p
    found = output_kind(p) if MARKER in entries else None
    if kind is not None and (found == kind or (found is None and any(n in entries for n in also_ours))):
        return p
    shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
    what = f"a {found} output" if found else f"files that are not an earlier {kind} output" if kind else "files"
    raise PlannerError(f"{flag} {p} already holds {what} ({shown}); nothing there is replaced: "
                       "pass a new or empty folder")


def mark_output(folder: Path, kind: str) -> None:
    """Write the marker that lets a later run of the same kind write here again."""
    marker = Path(folder) / MARKER
    if output_kind(Path(folder)) != kind:
        marker.write_text(kind + "\n", encoding="utf-8")
