"""Runs own their folder, and the trainer dies with its parent: real processes, real signals.

A lock held by a live process refuses a second run in one line naming the holder; a lock left by
a dead process (or a reused pid) is taken over; of several runs racing for a stale lock exactly one
wins. ``kill -9`` of the launching process ends the trainer within seconds (PR_SET_PDEATHSIG), and
the watchdog alone does it too where the kernel signal is not set.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend import runlock
from backend.runlock import FILE, RunLock
from planner.errors import PlannerError
from tests.backend.conftest import REPO, make_plan, write_plan


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def python(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, **kw)


def gone(pid: int) -> bool:
    """No such process, or a zombie (dead, waiting for a reaper that may not exist in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout_s} s")
        time.sleep(0.05)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


HOLD = """
    import sys, time
    from backend.runlock import RunLock
    lock = RunLock(sys.argv[1]); lock.acquire(); print("held", flush=True); time.sleep(60)
"""


def test_a_second_run_on_a_held_folder_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD), str(tmp_path)], env=env(), text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = json.loads((tmp_path / FILE).read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        with pytest.raises(PlannerError) as err:
            RunLock(tmp_path).acquire()
        assert str(err.value) == (f"{tmp_path} is in use by another run (pid {holder.pid} on {socket.gethostname()} "
                                  f"since {lock['started']}); wait for it, stop it, or pass another --output-dir")
        assert runlock.busy(tmp_path).pid == holder.pid
        # the training entry script refuses the same way, in one line, before loading anything
        plan = write_plan(tmp_path / "p.json", {"schema_version": 1, "job": {"mode": "lora"}, "training": {
            "model": "m", "dataset": "d.jsonl", "output_dir": str(tmp_path)}})
        run = subprocess.run([sys.executable, "-m", "backend.train", "--plan", str(plan)], cwd=REPO, env=env(),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and run.stderr == f"error: {err.value}\n"
    finally:
        holder.kill()
        holder.wait()
    assert runlock.busy(tmp_path) is None  # its holder is dead now: stale
    with RunLock(tmp_path) as lock:
        assert lock.took_over.pid == holder.pid
        assert json.loads((tmp_path / FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / FILE).exists()  # released


def test_stale_locks_are_taken_over_and_foreign_hosts_are_not(tmp_path):
    me = socket.gethostname()
    (tmp_path / FILE).write_text(json.dumps({"pid": dead_pid(), "host": me, "started": "x"}))
    with RunLock(tmp_path) as lock:
        assert lock.took_over is not None
    # our own pid but another start time: the pid was reused, the holder is gone
    (tmp_path / FILE).write_text(json.dumps({"pid": os.getppid(), "host": me, "started": "x", "pid_start": "1"}))
    with RunLock(tmp_path) as lock:
        assert lock.took_over.pid == os.getppid()
    (tmp_path / FILE).write_text('{"pid": 12')  # damaged: nobody can hold it
    with RunLock(tmp_path):
        pass
    (tmp_path / FILE).write_text(json.dumps({"pid": 1, "host": "gpu-box-7", "started": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(PlannerError) as err:
        RunLock(tmp_path).acquire()
    assert str(err.value) == (f"{tmp_path} is in use by another run (pid 1 on gpu-box-7 since 2026-01-01T00:00:00+00:00)"
                              f"; if that run is gone, delete {tmp_path / FILE}; or pass another --output-dir")


RACE = """
    import sys, time
    from backend.runlock import RunLock
    from planner.errors import PlannerError
    while time.time() < float(sys.argv[2]):
        pass
    try:
        RunLock(sys.argv[1]).acquire()
        print("won", flush=True)
        time.sleep(3)
    except PlannerError:
        print("refused", flush=True)
"""


@pytest.mark.parametrize("stale", [False, True])
def test_of_runs_racing_for_a_folder_exactly_one_wins(tmp_path, stale):
    if stale:
        (tmp_path / FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "x"}))
    start = str(time.time() + 2.0)  # all four start their attempt at the same moment
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(RACE), str(tmp_path), start], env=env(),
                              text=True, stdout=subprocess.PIPE) for _ in range(4)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused", "refused", "refused", "won"]


PARENT = """
    import sys
    from pathlib import Path
    from backend.local import launch
    sys.exit(launch(Path(sys.argv[1])))
"""


@pytest.mark.slow
def test_kill_9_of_the_launcher_leaves_no_trainer(tmp_path, tiny_model, facts_file):
    out = tmp_path / "run"
    plan = make_plan(tiny_model, "lora", facts_file, out, max_steps=100_000, save_steps=50_000, logging_steps=1,
                     register=False, track=False)
    plan_path = write_plan(tmp_path / "plan.json", plan)
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(PARENT), str(plan_path)], cwd=REPO, env=env(),
                              stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("w"))

    def training() -> bool:
        if parent.poll() is not None:
            pytest.fail(f"launcher exited {parent.returncode}: {(tmp_path / 'log').read_text()[-2000:]}")
        try:
            return bool(json.loads((out / "run.json").read_text())["train_loss"])
        except (OSError, ValueError, KeyError):
            return False

    wait_until(training, 240, "no training step")
    child = json.loads((out / FILE).read_text())["pid"]  # the trainer holds the folder's lock
    assert child != parent.pid and not gone(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    # Bounded waits, generous for a busy machine: the trainer may be inside a step when SIGTERM comes.
    wait_until(lambda: gone(child), 120, f"trainer {child} still running after its launcher was killed")
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and record["reason"].startswith("terminated (exit 143")
    assert not (out / FILE).exists()  # released on the way out
    assert runlock.busy(out) is None


WATCHED = """
    import os, subprocess, sys, time
    from backend import lifeline
    code = ("import os, time\\nfrom backend import lifeline\\nlifeline.terminate_on_sigterm()\\n"
            "lifeline.watch_parent(interval_s=0.1)\\nprint(os.getpid(), flush=True)\\ntime.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], env=lifeline.child_env(dict(os.environ)))  # no prctl
    time.sleep(60)
"""


def test_the_watchdog_alone_ends_an_orphaned_trainer(tmp_path):
    parent = python(WATCHED)
    child = int(parent.stdout.readline())
    assert not gone(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_until(lambda: gone(child), 60, f"watched child {child} still running after its parent was killed")


def test_plan_execute_on_a_held_folder_is_refused_before_confirmation(tmp_path, capsys, tiny_model):
    from planner.cli import main
    from tests.tiny import write_jsonl

    out = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD), str(out)], env=env(), text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held"
        data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
        code = main([str(tiny_model), "--mode", "lora", "--seq-len", "32", "--no-pricing", "--execute", "--yes", "--dataset", str(data),
                     "--output-dir", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"error: {out} is in use by another run (pid {holder.pid} on ")
        assert err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
