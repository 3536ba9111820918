"""What ``plan bench`` measured: one request as the client saw it, a level's figures, percentiles.

Pure: ``summarize`` turns request records into a level's figures (the tests feed it hand-made
records). The definitions are vLLM's benchmark's; backend/bench.py's docstring lists them.
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Percentiles:
    """Median, p90, p99 (linear interpolation, numpy's default and vLLM's) and the mean of a sample."""

    median: float
    p90: float
    p99: float
    mean: float

    @classmethod
    def of(cls, values: list[float]) -> "Percentiles | None":
        if not values:
            return None
        return cls(median=percentile(values, 50), p90=percentile(values, 90), p99=percentile(values, 99),
                   mean=statistics.fmean(values))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy.percentile's 'linear')."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it. Times in seconds from its send; None when it failed."""

    ok: bool
    error: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    itl_s: tuple[float, ...] = ()
    prompt_tokens: int | None = None       # the server's usage
    output_tokens: int | None = None       # the server's usage
    token_chunks: int = 0                  # streamed chunks that carried a token (counted here)

    @property
    def tpot_s(self) -> float | None:
        if not self.ok or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class LevelResult:
    """The figures at one concurrency. Latencies in ms; throughputs over the level's wall time."""

    concurrency: int
    requests_sent: int
    requests_ok: int
    requests_failed: int
    requests_cancelled: int
    duration_s: float
    input_tokens_mean: float | None
    output_tokens_total: int
    output_tokens_per_second: float
    requests_per_second: float
    ttft_ms: Percentiles | None
    itl_ms: Percentiles | None
    tpot_ms: Percentiles | None
    e2e_ms: Percentiles | None
    request_output_tokens_per_second: Percentiles | None   # each request's output tokens / its E2E
    errors: tuple[str, ...] = ()                           # the distinct failure messages (first few)
    client_cpu_fraction: float | None = None               # load generator CPU time / wall time (1.0: a core)
    records: tuple[RequestRecord, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("concurrency", "requests_sent", "requests_ok", "requests_failed",
                                           "requests_cancelled", "duration_s", "input_tokens_mean",
                                           "output_tokens_total", "output_tokens_per_second", "requests_per_second",
                                           "client_cpu_fraction")}
        for k in ("ttft_ms", "itl_ms", "tpot_ms", "e2e_ms", "request_output_tokens_per_second"):
            v = getattr(self, k)
            d[k] = v.to_dict() if v is not None else None
        d["errors"] = list(self.errors)
        return d


def summarize(concurrency: int, records: list[RequestRecord], cancelled: int, duration_s: float,
              client_cpu_fraction: float | None = None) -> LevelResult:
    """The level's figures from its requests (pure: tests feed it records)."""
    ok = [r for r in records if r.ok]
    out_total = sum(r.output_tokens or 0 for r in ok)
    errors = tuple(dict.fromkeys(r.error for r in records if not r.ok and r.error))[:5]
    prompt = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]

    def dist(values: list[float | None], scale: float = 1000.0) -> Percentiles | None:
        return Percentiles.of([v * scale for v in values if v is not None])

    return LevelResult(
        concurrency=concurrency, requests_sent=len(records) + cancelled, requests_ok=len(ok),
        requests_failed=len(records) - len(ok), requests_cancelled=cancelled, duration_s=duration_s,
        input_tokens_mean=statistics.fmean(prompt) if prompt else None, output_tokens_total=out_total,
        output_tokens_per_second=out_total / duration_s if duration_s > 0 else 0.0,
        requests_per_second=len(ok) / duration_s if duration_s > 0 else 0.0,
        ttft_ms=dist([r.ttft_s for r in ok]), itl_ms=dist([g for r in ok for g in r.itl_s]),
        tpot_ms=dist([r.tpot_s for r in ok]), e2e_ms=dist([r.e2e_s for r in ok]),
        request_output_tokens_per_second=dist([r.output_tokens / r.e2e_s for r in ok if r.output_tokens and r.e2e_s],
                                              scale=1.0),
        errors=errors, client_cpu_fraction=client_cpu_fraction, records=tuple(records))
