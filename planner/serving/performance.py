"""Speed of one vLLM replica under a workload: a continuous-batching step model on the perf core.

Step times come from ``planner.perf`` (roofline per op, efficiencies as data) on per-rank shapes: TP
splits heads, KV heads (never below one), MLP/expert widths and the vocabulary, as the memory model
does. Per engine step (vLLM V1 scheduler, ``vllm/v1/core/sched/scheduler.py``): every running request
decodes one token, and prompt tokens fill the rest of the ``max_num_batched_tokens`` budget (chunked
prefill, always on in V1). Tensor parallelism adds two all-reduces per layer (attention and MLP outputs,
Megatron-LM's layout) over the replica's link (``planner.hardware.link_bandwidth``): ring all-reduce moves
``2 (tp - 1) / tp x bytes`` per GPU plus a latency per call. Decode batches pad up to the next CUDA-graph
capture size (``EngineMemory.cudagraph_capture_sizes``); concurrency is capped by ``max_num_seqs`` and by
the KV blocks a request of input + output tokens needs.

Workload (fixed-length requests):
- at concurrency C (a closed loop of C users): B = min(C, caps) run; while one request emits its OSL
  tokens the other B - 1 are replaced once each, adding (B - 1) x ISL / OSL prompt tokens per step: the
  mean ITL adds their prefill time and makes E2E; the median ITL is a decode step unless most steps carry
  a prompt chunk (then a mixed step); TTFT = the prompt's chunks + a decode step, plus
  the wait of the C - B users that KV or ``max_num_seqs`` holds back; throughput = C x OSL / E2E (Little).
- at a request rate R (open loop, Poisson arrivals): the concurrency is the fixed point C = R x E2E(C);
  TTFT adds the queueing of prompts on the GPU as an M/M/1 wait with the prompt's prefill time as service:
  ``P(W > t) = rho exp(-(1 - rho) t / s)`` gives the median and p99 (an assumption: Kleinrock, Queueing
  Systems vol. 1, sec. 3.2; deterministic service would wait less). R at or above the replica's capacity
  is unstable: ``saturated`` and TTFT is infinite.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PlannerError
from ..hardware import Gpu
from ..perf import ModelDims, decode_ops, load_efficiencies, prefill_ops, step_time
from ..spec import ModelSpec
from .vllm_memory import DTYPE_BYTES, EngineMemory, EngineSettings, weights_per_rank

_EFF = Path(__file__).parent / "data" / "serving_efficiency.csv"


@lru_cache(maxsize=1)
def serving_terms() -> dict[str, float]:
    with open(_EFF, newline="", encoding="utf-8") as fh:
        return {r["term"]: float(r["value"]) for r in csv.DictReader(fh) if r["engine"] == "vllm"}


@dataclass(frozen=True)
class Workload:
    """Fixed-length requests at a concurrency (an int, or None with ``max``) or a request rate (req/s)."""

    input_tokens: int
    output_tokens: int
    concurrency: int | None = None
    request_rate: float | None = None
    max_concurrency: bool = False

    def __post_init__(self) -> None:
        if self.input_tokens < 1 or self.output_tokens < 1:
            raise PlannerError("--input-tokens and --output-tokens must be positive integers")
        given = sum(x is not None and x is not False for x in (self.concurrency, self.request_rate)) + \
            bool(self.max_concurrency)
        if given != 1:
            raise PlannerError("give one of --concurrency N, --concurrency max or --request-rate R")


@dataclass(frozen=True)
class Link:
    """The replica's GPU-to-GPU link as the perf core rates it (GB/s achieved per GPU, latency per call)."""

    name: str
    bandwidth_gb_s: float
    latency_us: float


@dataclass(frozen=True)
class ServingPerformance:
    concurrency: float
    running: int                      # requests decoding together (after the KV and max_num_seqs caps)
    output_tokens_per_second: float
    requests_per_second: float
    ttft_ms: float
    ttft_p99_ms: float
    itl_ms: float
    e2e_ms: float
    saturated: bool
    capacity_rps: float               # the replica's request rate at its largest batch
    kv_limited_concurrency: int
    decode_step_ms: float
    prefill_ms: float
    basis: str
    output_tokens: int = 1

    @property
    def itl_mean_ms(self) -> float:
        """Mean inter-token latency (TPOT): the decode part of E2E over the tokens after the first."""
        return self.itl_ms if self.output_tokens < 2 else (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if math.isinf(x) or math.isnan(x) else round(x, 3)
        return {"concurrency": r(self.concurrency), "running": self.running,
                "output_tokens_per_second": r(self.output_tokens_per_second),
                "requests_per_second": r(self.requests_per_second), "ttft_ms": r(self.ttft_ms),
                "ttft_p99_ms": r(self.ttft_p99_ms), "itl_ms": r(self.itl_ms), "e2e_ms": r(self.e2e_ms),
                "itl_mean_ms": r(self.itl_mean_ms),
                "saturated": self.saturated, "capacity_rps": r(self.capacity_rps),
                "kv_limited_concurrency": self.kv_limited_concurrency, "decode_step_ms": r(self.decode_step_ms),
                "prefill_ms": r(self.prefill_ms), "basis": self.basis}


class StepModel:
    """Per-step times of one replica (one rank's shapes; every rank works in lockstep)."""

    def __init__(self, spec: ModelSpec, mem: EngineMemory, gpu: Gpu, link: Link, settings: EngineSettings):
        tp = mem.tensor_parallel_size
        self.mem, self.gpu, self.link, self.tp, self.pp = mem, gpu, link, tp, mem.pipeline_parallel_size
        self.spec = spec
        moe = spec.is_moe
        width = spec.moe_intermediate_size if moe else spec.intermediate_size
        self.dims = ModelDims(hidden=spec.hidden_size, layers=spec.num_hidden_layers,
                              heads=spec.num_attention_heads // tp, kv_heads=max(1, spec.num_key_value_heads // tp),
                              head_dim=spec.head_dim, intermediate=math.ceil(width / tp),
                              vocab=math.ceil(spec.vocab_size / tp), experts=spec.num_local_experts if moe else 0,
                              experts_per_token=spec.num_experts_per_tok if moe else 0,
                              sliding_window=spec.sliding_window)
        db = DTYPE_BYTES[mem.dtype]
        plain, _ = weights_per_rank(spec, replace(settings, pipeline_parallel_size=1), None)
        held, _ = weights_per_rank(spec, replace(settings, pipeline_parallel_size=1), mem.quantization, 0,
                                   gpu.generation)
        self.weight_bytes = db * held / plain        # bytes per weight, averaged over the checkpoint
        self.kv_bytes = 1 if mem.kv_cache_dtype == "fp8" else db
        q = mem.quantization
        self.precision = {"fp8": "fp8", "int8": "fp8", "fp4": "fp4"}.get(q.compute, "bf16") if q else "bf16"
        terms = serving_terms()
        base = load_efficiencies()
        self.graph_table = {k: replace(e, launch_us=e.launch_us * terms["graph_launch_factor"]) for k, e in base.items()}
        self.step_overhead = terms["step_overhead_ms"] / 1e3
        self.max_graph = max(mem.cudagraph_capture_sizes, default=0)
        self._cache: dict[tuple[str, int, int], float] = {}

    def _allreduce(self, tokens: int) -> float:
        if self.tp == 1:
            return 0.0
        nbytes = tokens * self.spec.hidden_size * DTYPE_BYTES[self.mem.dtype]
        one = 2 * (self.tp - 1) / self.tp * nbytes / (self.link.bandwidth_gb_s * 1e9) + self.link.latency_us * 1e-6
        return 2 * self.spec.num_hidden_layers * one

    def padded(self, batch: int) -> int:
        for size in self.mem.cudagraph_capture_sizes:
            if size >= batch:
                return size
        return batch

    def decode(self, batch: int, context: int) -> float:
        """Seconds of a decode-only step of ``batch`` sequences at ``context`` cached tokens."""
        b = self.padded(batch)
        key = ("d", b, context)
        if key in self._cache:
            return self._cache[key]
        graphs = b <= self.max_graph
        ops = decode_ops(self.dims, b, context, weight_bytes=self.weight_bytes, kv_bytes=self.kv_bytes,
                         precision=self.precision)
        t = step_time(ops, self.gpu, self.graph_table if graphs else None).seconds
        self._cache[key] = t = t + self._allreduce(b) + self.step_overhead
        return t

    def prefill(self, tokens: int) -> float:
        """Seconds of prefill compute for ``tokens`` prompt tokens (one prompt, its own causal attention)."""
        if tokens <= 0:
            return 0.0
        key = ("p", tokens, 0)
        if key not in self._cache:
            ops = prefill_ops(self.dims, 1, tokens, weight_bytes=self.weight_bytes, precision=self.precision)
            self._cache[key] = step_time(ops, self.gpu).seconds + self._allreduce(tokens)
        return self._cache[key]


def kv_limited_concurrency(mem: EngineMemory, tokens_per_request: int) -> int:
    """Requests of ``tokens_per_request`` tokens the KV blocks hold at once (every layer group needs them)."""
    block = 16
    per = math.ceil(tokens_per_request / block)
    return mem.num_blocks // mem.kv_groups // per if per else 0


def _closed_loop(sm: StepModel, w: Workload, users: float) -> tuple[float, float, float, float, int]:
    """(TTFT s, ITL s, E2E s, decode step s, running) for ``users`` concurrent users."""
    mem = sm.mem
    isl, osl = w.input_tokens, w.output_tokens
    cap = min(mem.max_num_seqs, kv_limited_concurrency(mem, isl + osl))
    if cap < 1:
        return math.inf, math.inf, math.inf, math.inf, 0
    running = max(1, min(math.ceil(users), cap))
    key = ("loop", isl * 1_000_003 + osl, running)
    if key not in sm._cache:
        sm._cache[key] = _running(sm, isl, osl, running)
    ttft, itl, itl_mean, td = sm._cache[key]
    e2e = ttft + (osl - 1) * itl_mean
    if users > cap:  # the rest wait for a slot: each slot frees every e2e / cap seconds on average
        ttft += (users - cap) * e2e / cap
        e2e = ttft + (osl - 1) * itl_mean
    return ttft, itl, e2e, td, running


def _running(sm: StepModel, isl: int, osl: int, running: int) -> tuple[float, float, float, float]:
    """(TTFT, median ITL, mean ITL, decode step) in seconds with ``running`` requests decoding together."""
    mem = sm.mem
    td = sm.decode(running, isl + osl // 2)
    budget = max(1, mem.max_num_batched_tokens - running)
    chunks = math.ceil(isl / budget)
    chunk = sm.prefill(min(isl, budget))
    # While one request emits its OSL tokens, each of the other running requests is replaced once: their
    # prompts add (running - 1) x ISL / OSL prompt tokens per step on average (chunked into the budget).
    # The median step carries a chunk only when most do.
    prompt_tokens = (running - 1) * isl / osl
    per_token = sm.prefill(isl) / isl
    frac = min(1.0, prompt_tokens / budget)
    itl = td if frac < 0.5 else td + chunk
    ttft = sm.prefill(isl) + chunks * td
    # Prompt tokens of many requests share one step's GEMMs: the cheaper of one batched chunk of that size
    # and the prompt's own per-token rate (which carries its attention over the whole prompt).
    itl_mean = td + min(sm.prefill(max(1, round(prompt_tokens))), prompt_tokens * per_token) if prompt_tokens else td
    return ttft, itl, itl_mean, td


def performance(sm: StepModel, w: Workload) -> ServingPerformance:
    """Predicted TTFT / ITL / throughput of one replica (module docstring)."""
    mem = sm.mem
    isl, osl = w.input_tokens, w.output_tokens
    kv_cap = kv_limited_concurrency(mem, isl + osl)
    cap = min(mem.max_num_seqs, kv_cap)
    basis = "closed loop" if w.request_rate is None else "open loop, M/M/1 prompt queue"
    if cap < 1:
        inf = math.inf
        return ServingPerformance(0, 0, 0.0, 0.0, inf, inf, inf, inf, True, 0.0, kv_cap, inf, inf,
                                  f"one request of {isl + osl} tokens does not fit the KV cache", osl)
    ttft_c, itl_c, e2e_c, td_c, _ = _closed_loop(sm, w, cap)
    capacity = cap / e2e_c
    prefill_s = sm.prefill(isl)
    if w.request_rate is None:
        users = cap if w.max_concurrency else w.concurrency
        ttft, itl, e2e, td, running = _closed_loop(sm, w, users)
        rps = users / e2e
        return ServingPerformance(users, running, rps * osl, rps, ttft * 1e3, ttft * 1e3, itl * 1e3, e2e * 1e3,
                                  False, capacity, kv_cap, td * 1e3, prefill_s * 1e3, basis, osl)
    rate = w.request_rate
    if rate >= capacity:
        inf = math.inf
        return ServingPerformance(cap, cap, capacity * osl, capacity, inf, inf, itl_c * 1e3, inf, True, capacity,
                                  kv_cap, td_c * 1e3, prefill_s * 1e3, basis + f": {rate:g} req/s is at or above "
                                  f"the replica's capacity of {capacity:.3g} req/s", osl)
    users = 1.0
    for _ in range(60):  # fixed point C = R x E2E(C); E2E grows with C, so this converges from below
        _, _, e2e, _, _ = _closed_loop(sm, w, min(users, cap))
        nxt = rate * e2e
        if abs(nxt - users) < 1e-3:
            break
        users = nxt
    users = min(users, cap)
    ttft, itl, e2e, td, running = _closed_loop(sm, w, users)
    rho = min(rate * prefill_s, 0.999)
    s = prefill_s
    wait50 = max(0.0, s / (1 - rho) * math.log(2 * rho)) if rho > 0 else 0.0
    wait99 = max(0.0, s / (1 - rho) * math.log(100 * rho)) if rho > 0 else 0.0
    return ServingPerformance(users, running, rate * osl, rate, (ttft + wait50) * 1e3, (ttft + wait99) * 1e3,
                              itl * 1e3, (e2e + wait50) * 1e3, False, capacity, kv_cap, td * 1e3, prefill_s * 1e3,
                              basis, osl)
