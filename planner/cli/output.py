"""Console helpers: results to stdout, diagnostics to stderr, fixed width when not a terminal."""
from __future__ import annotations

import os
import sys
from functools import lru_cache

from rich.console import Console


def _width() -> int | None:
    if os.environ.get("COLUMNS"):
        return None
    return None if sys.stdout.isatty() else 100


@lru_cache(maxsize=None)
def _console(stderr: bool, width: int | None, color: bool) -> Console:
    return Console(stderr=stderr, width=width, no_color=not color, highlight=False,
                   color_system="auto" if color else None, soft_wrap=False)


def console(stderr: bool = False) -> Console:
    """A rich console; colour only on a terminal and without NO_COLOR."""
    stream = sys.stderr if stderr else sys.stdout
    color = stream.isatty() and not os.environ.get("NO_COLOR")
    return _console(stderr, _width(), color)


def warn(message: str) -> None:
    """One diagnostic line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)
