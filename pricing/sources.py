"""What the source codes of the price rows mean (pricing/data/source_codes.csv), for `plan prices show`."""
from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

CODES_FILE = Path(__file__).parent / "data" / "source_codes.csv"


@lru_cache(maxsize=1)
def source_codes() -> dict[str, str]:
    with open(CODES_FILE, newline="", encoding="utf-8") as fh:
        return {r["code"]: r["meaning"] for r in csv.DictReader(fh)}


def codes_in(source: str) -> list[str]:
    """The known codes a row's free-text source names, in order ('derived: SMK-C / SMK-B' -> derived, SMK-C, SMK-B)."""
    known = source_codes()
    found = re.findall(r"[A-Za-z0-9-]+", source.split(" via ")[0])
    return list(dict.fromkeys(w for w in found if w in known))


def short_source(source: str) -> str:
    """The codes joined ('SKY8+PL2503'), or 'other' when a row cites a document by name (see --json)."""
    codes = codes_in(source)
    return "+".join(codes) if codes else "other"
