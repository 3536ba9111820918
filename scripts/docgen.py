"""Shared by the scripts that generate docs: write the file, or with --check fail if it is stale."""
from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(out: Path, text: str, how: str) -> int:
    if "--check" in sys.argv:
        if not out.exists() or out.read_text() != text:
            print(f"{out.name} is out of date: run {how}", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    print(f"wrote {out}")
    return 0
