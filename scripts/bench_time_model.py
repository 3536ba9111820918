#!/usr/bin/env python3
"""What the roofline time model adds to a cold `plan` (issue 22: must stay under 20 ms). Prints figures;
asserts nothing. CPU time of the process (time.process_time: less sensitive to a busy machine). Each run is a fresh process: it imports what `plan` imports before the time model, then
times the import of planner.perf/planner.hardware plus every timecost.job_time call of a priced plan."""
import statistics
import subprocess
import sys

CODE = r"""
import time
from planner.estimate import estimate
from pricing import catalog as _c, choose, timecost
cat = _c.load_catalog(user_dir=False)
est = estimate(MODEL, mode=MODE)
t0 = time.process_time()
import planner.perf, planner.hardware  # noqa: E401  (already imported lazily by timecost: counted below too)
spent = [time.process_time() - t0]
real = timecost.job_time
def timed(*a, **k):
    t = time.process_time()
    try:
        return real(*a, **k)
    finally:
        spent.append(time.process_time() - t)
timecost.job_time = timed
choose.build_candidates(est, cat, platform="any", tokens=10**9)
print(sum(spent) * 1000, len(spent) - 1)
"""

for model, mode in (("llama3-70b", "qlora"), ("llama3-8b", "full")):
    runs, calls = [], 0
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", f"MODEL={model!r}; MODE={mode!r}\n" + CODE], check=True,
                             capture_output=True, text=True).stdout.split()
        runs.append(float(out[0]))
        calls = int(out[1])
    print(f"plan {model} --mode {mode}: time model {statistics.median(runs):.1f} ms median over {len(runs)} cold "
          f"runs ({calls} job_time calls, import of planner.perf included)")
