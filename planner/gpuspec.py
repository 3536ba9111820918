"""``--gpu SPEC``: which GPU(s) the user has, as a count and the memory of each.

SPEC is ``NAME``, ``Nx NAME``, ``MEMORY`` or ``Nx MEMORY``: ``"RTX 4090"``, ``"2x RTX 3090"``,
``"24GiB"``, ``"2x 80GB"``. Names are looked up in a table of known cards (name, aliases,
nvidia-smi memory in MiB; pricing/data/local_gpus.csv); a family name that matches several cards
(``A100``, ``H100``) is ambiguous and the error lists the choices. Memory is GiB/GB/MiB/MB/TB
(binary or decimal as written; a bare number is GiB). Pure: the caller passes the table.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import PlannerError

UNITS = {"gib": 1024**3, "gb": 10**9, "mib": 1024**2, "mb": 10**6, "tib": 1024**4, "tb": 10**12, "g": 1024**3}
_COUNT = re.compile(r"^\s*(-?\d+)\s*[x×*]\s*(.+?)\s*$", re.IGNORECASE)
_MEMORY = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
EXAMPLES = '"RTX 4090", "2x RTX 3090", "24GiB" or "2x 80GB"'


@dataclass(frozen=True)
class Card:
    """One known card: its name, other spellings, and the memory nvidia-smi reports."""

    name: str
    aliases: tuple[str, ...]
    memory_mib: int
    source: str = ""


@dataclass(frozen=True)
class GpuSpec:
    """What ``--gpu`` resolved to: ``count`` cards of ``memory_bytes`` each."""

    count: int
    memory_bytes: int
    name: str | None        # None for a bare memory size
    source: str             # where the memory figure comes from

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "memory_bytes": self.memory_bytes, "name": self.name, "source": self.source}


def _norm(s: str) -> str:
    return re.sub(r"[\s_\-]+", "", s.lower()).replace("nvidia", "").replace("geforce", "")


def _lookup(name: str, cards: Iterable[Card]) -> Card:
    cards = tuple(cards)
    want = _norm(name)
    for c in cards:
        if want in {_norm(n) for n in (c.name, *c.aliases)}:
            return c
    family = [c.name for c in cards if _norm(c.name).startswith(want)]
    if len(family) > 1:
        raise PlannerError(f"--gpu '{name}' is ambiguous: choose one of {', '.join(repr(f) for f in family)}")
    if len(family) == 1:
        return next(c for c in cards if c.name == family[0])
    names = [c.name for c in cards]
    hint = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
    did = f"did you mean '{hint[0]}'? " if hint else ""
    raise PlannerError(f"unknown GPU '{name}'; {did}give its memory instead (e.g. \"24GiB\") or one of: "
                       f"{', '.join(names)}")


def _memory(text: str) -> int | None:
    m = _MEMORY.match(text)
    if not m:
        return None
    unit = (m.group(2) or "gib").lower()
    if unit not in UNITS:
        return None
    value = float(m.group(1))
    if value <= 0:
        raise PlannerError(f"--gpu memory must be positive, got '{text.strip()}'; e.g. {EXAMPLES}")
    return int(value * UNITS[unit])


def parse_gpu_spec(spec: str, cards: Iterable[Card]) -> GpuSpec:
    """Parse SPEC (see module docstring); raise PlannerError with one line on bad input."""
    text = (spec or "").strip()
    if not text:
        raise PlannerError(f"--gpu is empty; give e.g. {EXAMPLES}")
    count = 1
    m = _COUNT.match(text)
    if m:
        count = int(m.group(1))
        if count <= 0:
            raise PlannerError(f"--gpu needs at least one GPU, got '{text}'; e.g. {EXAMPLES}")
        text = m.group(2)
    if text.startswith("-"):
        raise PlannerError(f"--gpu memory must be positive, got '{text}'; e.g. {EXAMPLES}")
    mem = _memory(text)
    if mem is not None:
        return GpuSpec(count, mem, None, "given on the command line")
    card = _lookup(text, cards)
    return GpuSpec(count, card.memory_mib * 1024**2, card.name, card.source)


def cards_from_rows(rows: Iterable[Any]) -> tuple[Card, ...]:
    """Cards from objects with ``name``, ``aliases``, ``memory_mib``, ``source`` (pricing's LocalGpu)."""
    return tuple(Card(r.name, tuple(r.aliases), int(r.memory_mib), getattr(r, "source", "")) for r in rows)
