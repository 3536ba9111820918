"""The one way tests run the `plan` CLI: in-process through ``planner.cli.main`` (the console
script's own entry), or as a real subprocess where the process itself is under test (imports,
exit codes, environment)."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``plan ARGS`` in-process, its output read from pytest's ``capsys``: (exit code, stdout, stderr)."""
    from planner.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``plan ARGV`` in-process without a capsys fixture (hypothesis tests): (exit code, stdout, stderr)."""
    from planner.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def cli_env(**extra: str) -> dict[str, str]:
    """This environment for a `plan` subprocess: the checkout first on PYTHONPATH, no AWS
    credentials, no PLAN_DEBUG, plain 100-column output, the hub offline; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PLAN_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env.update({"NO_COLOR": "1", "COLUMNS": "100", "HF_HUB_OFFLINE": "1"})
    env.update(extra)
    return env


def run_subprocess(*args: str, env: dict[str, str] | None = None, cwd=None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m planner ARGS`` as a real process (``env`` on top of ``cli_env()``)."""
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True,
                          env=cli_env(**(env or {})), cwd=cwd, timeout=timeout)
