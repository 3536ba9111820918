#!/usr/bin/env python3
"""Write planner/data/replays.json: the allocator replay of every shipped model's default job in
each mode, and of the pure-bf16 FSDP-QLoRA recipe pricing figures beside QLoRA (planner/replays.py).

Usage: python scripts/precompute_replays.py [--check]   (--check: exit 1 if the table is stale)
Run it after changing planner/allocator.py, planner/steptrace.py or planner/data/step_ops.json.
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from planner import replays, steptrace  # noqa: E402
from planner.errors import PlannerError  # noqa: E402
from planner.job import MODES, Job  # noqa: E402
from planner.memory import build_estimate, live_replay, replay_args  # noqa: E402
from planner.params import count_params  # noqa: E402
from planner.registry import shipped_models  # noqa: E402


def default_jobs():
    for mode in MODES:
        yield Job(mode=mode)
    yield Job(mode="qlora", kbit_prep=False)


def entries() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for spec in shipped_models():
        params = count_params(spec)
        for job in default_jobs():
            try:
                est = build_estimate(spec, params, job)
            except PlannerError:
                continue
            args = replay_args(spec, params, job, est.terms)
            k = replays.key(steptrace.trace_inputs(spec, params, *args))
            if k not in out:
                r = live_replay(spec, params, *args)
                out[k] = [r.reserved_bytes, r.peak_allocated_bytes, r.segments]
    return out


def main() -> int:
    if "--check" in sys.argv:
        doc = json.loads(replays.TABLE.read_text())
        stale = doc.get("code") != replays.code_digest()
        print("stale: run scripts/precompute_replays.py" if stale else "current")
        return int(stale)
    doc = {"source": "scripts/precompute_replays.py (planner/allocator.py replaying planner/steptrace.py)",
           "date": datetime.date.today().isoformat(), "code": replays.code_digest(),
           "value": "key -> [reserved bytes, peak allocated bytes, segments]", "entries": entries()}
    replays.TABLE.write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")
    print(f"wrote {replays.TABLE} ({len(doc['entries'])} replays)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
