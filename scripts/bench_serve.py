"""Throughput and latency of `plan serve` on the tiny CPU model with N adapters, at 1/4/16/32 clients.

    python scripts/bench_serve.py [--adapters 3] [--seconds 10] [--levels 1,4,16,32] [--max-tokens 8]
                                  [--pythonpath OLD_CHECKOUT] [--serve-arg=--batch-window-ms=2]

Builds a tiny Llama (tests/tiny.py) and N random LoRA adapters in a temporary folder, starts
`python -m planner serve` as its own process (one torch thread, as the tests use), then for each
level runs that many client threads, each sending greedy /v1/completions requests back to back
(a new connection per request, rotating over the base and the adapters) for a fixed time. Prints
one row per level: requests/s, completion tokens/s, p50 and p99 latency. A benchmark, not a test:
it asserts nothing. ``--pythonpath`` runs another checkout's server (e.g. the pre-batching one)
with the same clients, for a side-by-side figure.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["what is the capital of france ?", "what color is the sky ?", "the cat says", "one plus two equals"]


def build(folder: Path, n_adapters: int) -> tuple[Path, list[tuple[str, Path]]]:
    """The tiny base and ``n_adapters`` random rank-8 LoRA adapters (non-zero B, so they change outputs)."""
    sys.path.insert(0, str(ROOT))
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tests.tiny import make_tiny_model

    base = make_tiny_model(folder / "tiny")
    adapters = []
    for i in range(n_adapters):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                                                init_lora_weights=False, task_type="CAUSAL_LM"))
        peft.save_pretrained(folder / f"a{i}")
        adapters.append((f"a{i}", folder / f"a{i}"))
    return base, adapters


def start(base: Path, adapters: list[tuple[str, Path]], pythonpath: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": pythonpath, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "planner", "serve", str(base), "--served-model-name", "tiny", "--port", "0",
            "--dtype", "fp32", "--quiet", *[f"--adapter={n}={p}" for n, p in adapters], *extra]
    proc = subprocess.Popen(argv, env=env, cwd=pythonpath, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        m = re.search(r"on http://([\d.]+):(\d+)/v1", line)
        if m:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, f"{m.group(1)}:{m.group(2)}"
    proc.kill()
    raise SystemExit(f"the server did not start (rc={proc.poll()})")


def one_request(netloc: str, body: bytes) -> int:
    host, port = netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
        return int(json.loads(data)["usage"]["completion_tokens"])
    finally:
        conn.close()


def level(netloc: str, clients: int, seconds: float, models: list[str], max_tokens: int) -> dict[str, float]:
    latencies: list[float] = []
    tokens, errors = [0], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < stop_at:
            body = json.dumps({"model": models[i % len(models)], "prompt": PROMPTS[i % len(PROMPTS)],
                               "max_tokens": max_tokens, "temperature": 0}).encode()
            t0 = time.monotonic()
            try:
                n = one_request(netloc, body)
            except (OSError, RuntimeError):  # a reset or refused connection, a 5xx: counted, not fatal
                with lock:
                    errors[0] += 1
                i += clients
                continue
            with lock:
                latencies.append(time.monotonic() - t0)
                tokens[0] += n
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    done = len(latencies)
    latencies = sorted(latencies) or [float("nan")]
    return {"clients": clients, "requests": done, "errors": errors[0], "req_s": done / wall,
            "tok_s": tokens[0] / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--levels", default="1,4,16,32")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--pythonpath", default=str(ROOT), help="checkout whose `planner serve` to run")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra `plan serve` argument (repeatable)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base, adapters = build(Path(tmp), args.adapters)
        proc, netloc = start(base, adapters, args.pythonpath, args.serve_arg)
        try:
            models = ["tiny", *[n for n, _ in adapters]]
            level(netloc, 1, 1.0, models, args.max_tokens)  # warm-up
            print(f"# {args.adapters} adapters + base, greedy, max_tokens={args.max_tokens}, {args.seconds:g} s per level,"
                  f" server {args.pythonpath}")
            print(f"{'clients':>7} {'requests':>8} {'errors':>6} {'req/s':>8} {'tokens/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
            for clients in (int(c) for c in args.levels.split(",")):
                r = level(netloc, clients, args.seconds, models, args.max_tokens)
                print(f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['req_s']:>8.1f} {r['tok_s']:>9.1f} "
                      f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
