#!/usr/bin/env python3
"""Time cold `plan` commands (a new process each run). Prints figures; asserts nothing.

Usage: python scripts/bench_plan.py [PLAN ARGS...]   (default: the two commands docs/performance.md
records, `llama3-70b --mode qlora` and `llama3-70b --mode qlora --gpu "RTX 4090"`). Exit status 1
of `plan` ("nothing fits") is a normal outcome for the --gpu command; any other failure stops the run.
"""
import statistics
import subprocess
import sys
import time

RUNS = 7
DEFAULT = [["llama3-70b", "--mode", "qlora"], ["llama3-70b", "--mode", "qlora", "--gpu", "RTX 4090"]]


def bench(args: list[str]) -> None:
    runs = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True)
        runs.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            sys.exit(f"plan {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    shown = " ".join(f'"{a}"' if " " in a else a for a in args)
    print(f"plan {shown}: median {statistics.median(runs) * 1000:.0f} ms, "
          f"min {min(runs) * 1000:.0f} ms, max {max(runs) * 1000:.0f} ms over {len(runs)} cold runs")


for argv in ([sys.argv[1:]] if sys.argv[1:] else DEFAULT):
    bench(argv)
