#!/usr/bin/env python3
"""Time a cold `plan llama3-70b --mode qlora` (new process each run). Prints figures; asserts nothing."""
import statistics
import subprocess
import sys
import time

ARGS = sys.argv[1:] or ["llama3-70b", "--mode", "qlora"]
runs = []
for _ in range(7):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "planner", *ARGS], check=True, capture_output=True)
    runs.append(time.perf_counter() - t0)
print(f"plan {' '.join(ARGS)}: median {statistics.median(runs) * 1000:.0f} ms, "
      f"min {min(runs) * 1000:.0f} ms, max {max(runs) * 1000:.0f} ms over {len(runs)} cold runs")
