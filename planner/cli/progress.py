"""Progress on stderr: a line while a network call is slow (issue 13: refresh waited 308 s silently),
and a byte count while a big file is read (issue 18: the EC2 price list is hundreds of MB).

botocore has no progress hook for a request that hangs, so a daemon thread prints
"still waiting for ... (N s)" every ``every_s`` seconds after ``after_s``, until the block ends.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def waiting(what: str, *, after_s: float = 5.0, every_s: float = 15.0) -> Iterator[None]:
    done = threading.Event()
    start = time.monotonic()

    def report() -> None:
        delay = after_s
        while not done.wait(delay):
            print(f"still waiting for {what} ({time.monotonic() - start:.0f} s)...", file=sys.stderr, flush=True)
            delay = every_s

    thread = threading.Thread(target=report, name="plan-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=1.0)


@contextmanager
def byte_progress(what: str, *, every_s: float = 2.0) -> Iterator:
    """A callback ``(part, done_bytes, total_bytes)`` that redraws one line on a terminal, or prints a
    line every ``every_s`` seconds elsewhere; the final count is printed when the block ends."""
    tty = sys.stderr.isatty()
    state = {"last": 0.0, "line": ""}

    def show(part: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - state["last"] < (0.2 if tty else every_s):
            return
        state["last"] = now
        size = f"{done / 1e6:,.1f} MB" + (f" of {total / 1e6:,.1f} MB" if total else "")
        state["line"] = f"{what}: {part} {size}"
        print(("\r" + state["line"]) if tty else state["line"], end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        yield show
    finally:
        if tty and state["line"]:
            print(file=sys.stderr, flush=True)
