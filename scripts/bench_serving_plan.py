"""Cold-start time of `plan ... --engine vllm --request-rate 5 --json` (issue 21 asks < 0.3 s), beside the
plain `plan ... --mode inference --json` it builds on. A benchmark that prints figures, never a test.

    PYTHONPATH=$PWD python scripts/bench_serving_plan.py [runs]

Each run is a fresh interpreter (cold imports, bytecode cached); CPU time (user + sys of the child) is
printed beside wall time because the wall clock on a shared machine mostly measures the neighbours.
"""
from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "plan llama3.1-8b --mode inference --json (baseline)":
        ["llama3.1-8b", "--mode", "inference", "--json"],
    "plan llama3.1-8b --mode inference --engine vllm --request-rate 5 --json":
        ["llama3.1-8b", "--mode", "inference", "--engine", "vllm", "--request-rate", "5", "--json"],
    "plan llama3-70b --mode inference --engine vllm --request-rate 5 --ttft-ms 1000 --itl-ms 50 --json":
        ["llama3-70b", "--mode", "inference", "--engine", "vllm", "--request-rate", "5", "--ttft-ms", "1000",
         "--itl-ms", "50", "--json"],
}


def one(args: list[str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "planner", *args], check=True, capture_output=True, env=os.environ)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for name, args in CASES.items():
        one(args)  # warm the bytecode cache
        walls, cpus = zip(*(one(args) for _ in range(runs)))
        print(f"{name}\n  wall median {statistics.median(walls):.3f} s (min {min(walls):.3f}), "
              f"cpu median {statistics.median(cpus):.3f} s (min {min(cpus):.3f}) over {runs} runs")


if __name__ == "__main__":
    main()
