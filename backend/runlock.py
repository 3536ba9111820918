"""One run per output folder: a lock file naming its holder, taken atomically.

``OUT/.plan.lock`` holds the owner's pid, host, process start time and when it started. It is
created atomically (written to a private ``O_EXCL`` file, then hard-linked into place: ``link``
fails when the lock exists), so of two runs starting together exactly one gets it; the other is refused with one line naming the holder. A lock whose holder is gone (same host, the pid no
longer exists or now belongs to a process started at another time) is stale and taken over; the
take-over itself runs under ``flock`` on a guard file so two runs cannot both take over one stale
lock. A lock held on another host cannot be checked from here and is never taken over.

Hand-written because the libraries that do this (``filelock``, ``fasteners``) lock without saying
who holds the lock, and a lock held by a process on another machine (a shared file system) must be
reported by name rather than waited on.
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend import run_record
from planner.errors import PlannerError

FILE = ".plan.lock"


@dataclass(frozen=True)
class Holder:
    """Who holds a folder: read from its lock file."""

    pid: int
    host: str
    started: str
    pid_start: str | None = None  # the process's start time in clock ticks (Linux), guards pid reuse

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "started": self.started, "pid_start": self.pid_start}

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.started}"


def process_start(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time since boot); None where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "(comm)" start at field 3


def alive(holder: Holder) -> bool:
    """Whether the holder (on this host) still runs: the pid exists and was started when it said."""
    if holder.pid <= 0:
        return False  # an unreadable lock (kill(0 or -1) would address a whole process group)
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if holder.pid_start is not None and process_start(holder.pid) not in (None, holder.pid_start):
        return False  # the pid was reused by a later process
    state = Path(f"/proc/{holder.pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie holds nothing
    except OSError:
        return True


def read_holder(folder: Path) -> Holder | None:
    """The lock's holder, or None when the folder is not locked. An unreadable lock is stale."""
    try:
        data = json.loads((Path(folder) / FILE).read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]), data.get("pid_start"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Holder(-1, socket.gethostname(), "?")  # damaged (a full disk, an edit): nobody holds it


def busy(folder: Path) -> Holder | None:
    """A live holder of ``folder`` (or one on another host), else None: for an early refusal."""
    holder = read_holder(folder)
    if holder is None or (holder.host == socket.gethostname() and not alive(holder)):
        return None
    return holder


def refusal(folder: Path, holder: Holder) -> str:
    here = holder.host == socket.gethostname()
    fix = ("wait for it, stop it, or pass another --output-dir" if here else
           f"if that run is gone, delete {Path(folder) / FILE}; or pass another --output-dir")
    return f"{folder} is in use by another run ({holder.describe()}); {fix}"


@dataclass
class RunLock:
    """``with RunLock(out):`` holds ``out`` for this process; released on exit (a crash leaves a stale lock)."""

    folder: Path
    took_over: Holder | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        me = Holder(os.getpid(), socket.gethostname(), run_record.now(), process_start(os.getpid()))
        if _create(folder / FILE, me):
            return
        import fcntl

        with (folder / f"{FILE}.guard").open("a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # one taker at a time; released when the file closes
            holder = read_holder(folder)
            if holder is not None and (holder.host != me.host or alive(holder)):
                raise PlannerError(refusal(folder, holder))
            (folder / FILE).unlink(missing_ok=True)
            if not _create(folder / FILE, me):  # a run that did not take the guard won the race
                raise PlannerError(refusal(folder, read_holder(folder) or me))
            self.took_over = holder

    def release(self) -> None:
        holder = read_holder(self.folder)
        if holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname():
            (Path(self.folder) / FILE).unlink(missing_ok=True)


def _create(path: Path, me: Holder) -> bool:
    """Write the holder to a private file (O_EXCL), then hard-link it into place: ``link`` fails
    when the lock exists, and the lock is never seen half-written."""
    tmp = path.with_name(f"{FILE}.{me.host}.{me.pid}")
    tmp.unlink(missing_ok=True)  # left by a crashed earlier process with our pid: no live owner
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me.to_dict()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
