"""The trainer dies with its parent: ``kill -9`` of ``plan`` leaves no trainer running.

Two mechanisms, because neither covers every case alone:

- ``preexec``: in the child, between fork and exec, Linux's ``prctl(PR_SET_PDEATHSIG, SIGTERM)``
  asks the kernel to signal the child the moment its parent dies (also on SIGKILL, which the
  parent cannot handle). Called through ctypes: the standard library has no wrapper, and
  ``python-prctl`` would be a compiled dependency for one call. It is a no-op off Linux.
- ``watch_parent``: in the trainer, a daemon thread that polls the parent pid once a second and,
  when the parent is gone (the child is re-parented), sends itself SIGTERM and, after a grace
  period, exits hard. This covers macOS, a parent that died before ``prctl`` ran, and a trainer
  started by something that is not ``plan``'s launcher but passed ``PLAN_PARENT_PID``.

SIGTERM rather than SIGKILL: the trainer turns it into an exception (``terminate_on_sigterm``), so
run.json says ``failed`` with the reason and the folder lock is released.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

ENV = "PLAN_PARENT_PID"  # set by the launcher: the pid the trainer must outlive no longer than
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def preexec(parent_pid: int):
    """A ``preexec_fn`` for ``subprocess``: the child gets SIGTERM when ``parent_pid`` dies."""

    def set_parent_death_signal() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(143)

    return set_parent_death_signal


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the parent pid the trainer watches (``watch_parent``)."""
    return {**env, ENV: str(os.getpid())}


def watch_parent(parent_pid: int | None = None, *, interval_s: float = 1.0, grace_s: float = 30.0) -> bool:
    """Start the watchdog thread for ``parent_pid`` (default ``$PLAN_PARENT_PID``); False when there is none."""
    if parent_pid is None:
        raw = os.environ.get(ENV, "")
        if not raw.isdigit():
            return False
        parent_pid = int(raw)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(143)

    threading.Thread(target=watch, name="plan-parent-watchdog", daemon=True).start()
    return True


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM, so ``finally`` blocks record the run as failed."""


def terminate_on_sigterm() -> None:
    def handler(signum, frame):
        raise Terminated(128 + signum)

    signal.signal(signal.SIGTERM, handler)
