"""A progress line on stderr while a network call is slow (issue 13: refresh waited 308 s silently).

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
