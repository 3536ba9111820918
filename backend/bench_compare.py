"""A ``plan bench`` measurement beside the planner's prediction, and as a calibration row.

The prediction is the JSON of ``plan MODEL --mode inference --engine vllm ... --json``; its
``serving.performance`` block names the figures (issue 21's interface): ``concurrency``,
``output_tokens_per_second``, ``requests_per_second``, ``ttft_ms``, ``ttft_p99_ms``, ``itl_ms``,
``e2e_ms`` (and ``tpot_ms`` if a plan gives it). A key that is absent or null is shown as unknown, never guessed. Calibration rows use
the field names of ``shared/reference/serving/serving_benchmarks_*.jsonl`` (isl, osl,
output_tokens_per_s, request_throughput_rps, ttft_ms, itl_ms, tpot_ms, e2e_latency_ms), so one
accuracy script can read published rows and ours alike.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

from .bench import BenchResult

MAKE_ONE = "make one with: plan MODEL --mode inference --engine vllm ... --json > FILE"
# (prediction key, label, how the measured figure is read from a level)
METRICS: tuple[tuple[str, str, Any], ...] = (
    ("output_tokens_per_second", "output tokens/s", lambda lv: lv.output_tokens_per_second),
    ("requests_per_second", "requests/s", lambda lv: lv.requests_per_second),
    ("ttft_ms", "TTFT median ms", lambda lv: lv.ttft_ms and lv.ttft_ms.median),
    ("ttft_p99_ms", "TTFT p99 ms", lambda lv: lv.ttft_ms and lv.ttft_ms.p99),
    ("itl_ms", "ITL median ms", lambda lv: lv.itl_ms and lv.itl_ms.median),
    ("tpot_ms", "TPOT median ms", lambda lv: lv.tpot_ms and lv.tpot_ms.median),
    ("e2e_ms", "E2E median ms", lambda lv: lv.e2e_ms and lv.e2e_ms.median),
)


@dataclass(frozen=True)
class Prediction:
    """The ``serving`` block of a plan's JSON: the performance figures and what they were planned for."""

    path: str
    performance: dict[str, Any]
    engine: str | None
    engine_version: str | None
    parallel: dict[str, int] = field(default_factory=dict)   # tp / pp of the planned deployment, when given

    @property
    def concurrency(self) -> int | None:
        c = self.performance.get("concurrency")
        return c if isinstance(c, int) and not isinstance(c, bool) else None


def _no_constant(token: str) -> Any:
    raise json.JSONDecodeError(f"{token} is not a number JSON allows", token, 0)


def load_prediction(path: Path) -> Prediction:
    """Read ``path``; one-line PlannerError when it is not a plan's JSON with ``serving.performance``."""
    from planner.safe_io import read_text  # a regular file of bounded size: a FIFO or /dev/zero would hang

    if not Path(path).exists():
        raise PlannerError(f"cannot read --predicted {path}: no such file")
    try:
        doc = json.loads(read_text(path, "--predicted"), parse_constant=_no_constant)
    except OSError as exc:
        raise PlannerError(f"cannot read --predicted {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlannerError(f"--predicted {path} is not JSON ({exc}); {MAKE_ONE}") from None
    serving = doc.get("serving") if isinstance(doc, dict) else None
    perf = serving.get("performance") if isinstance(serving, dict) else None
    if not isinstance(perf, dict):
        raise PlannerError(f"--predicted {path} has no serving.performance block; {MAKE_ONE}")
    c = perf.get("concurrency")
    if isinstance(c, float) and math.isfinite(c) and c > 0:
        if not c.is_integer():
            raise PlannerError(f"--predicted {path} is for a mean concurrency of {c:g} (a --request-rate plan?); "
                               "plan bench measures fixed concurrencies: plan with --concurrency N")
        c = int(c)
        perf = {**perf, "concurrency": c}
    if c is not None and not (isinstance(c, int) and not isinstance(c, bool) and c >= 1):
        raise PlannerError(f"--predicted {path}: serving.performance.concurrency must be a positive integer, got {c!r}")

    def text(key: str) -> str | None:
        v = serving.get(key)
        return str(v) if v is not None else None

    parallel = {short: v for short, key in (("tp", "tensor_parallel_size"), ("pp", "pipeline_parallel_size"))
                if isinstance(v := serving.get(key), int) and not isinstance(v, bool)}
    return Prediction(path=str(path), performance=perf, engine=text("engine"), engine_version=text("engine_version"),
                      parallel=parallel)


def level_to_compare(prediction: Prediction, concurrencies: tuple[int, ...]) -> int:
    """The measured level the prediction is for; PlannerError (before any request) when none is."""
    c = prediction.concurrency
    if c is None:
        if len(concurrencies) == 1:
            return concurrencies[0]
        raise PlannerError(f"--predicted {prediction.path} names no serving.performance.concurrency: "
                           "measure one level (--concurrency N) to compare with it")
    if c not in concurrencies:
        raise PlannerError(f"--predicted {prediction.path} is for concurrency {c}, which --concurrency "
                           f"{','.join(map(str, concurrencies))} does not measure: add {c}")
    return c


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


@dataclass(frozen=True)
class MetricComparison:
    key: str
    label: str
    predicted: float | None
    measured: float | None

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured: +0.25 means the plan said 25% more than was measured."""
        if self.predicted is None or not self.measured:
            return None
        return (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "predicted": self.predicted, "measured": self.measured,
                "error": self.error}


@dataclass(frozen=True)
class Comparison:
    """Predicted beside measured at one concurrency."""

    concurrency: int
    predicted_from: str
    metrics: tuple[MetricComparison, ...]
    parallel: dict[str, int] = field(default_factory=dict)   # the plan's tp / pp (the row's tp / pp)

    def to_dict(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "predicted_from": self.predicted_from,
                "metrics": [m.to_dict() for m in self.metrics]}


def compare(result: BenchResult, prediction: Prediction) -> Comparison:
    c = level_to_compare(prediction, result.settings.concurrencies)
    lv = result.level(c)
    rows = tuple(MetricComparison(key, label, _number(prediction.performance.get(key)), _number(read(lv)))
                 for key, label, read in METRICS)
    return Comparison(concurrency=c, predicted_from=prediction.path, metrics=rows, parallel=prediction.parallel)


@dataclass(frozen=True)
class Provenance:
    """What was measured on: the hardware and engine behind the endpoint (the endpoint cannot tell us)."""

    gpu: str
    engine: str
    engine_version: str


def check_calibration_file(path: Path) -> None:
    """Refuse, before any request, a calibration path that cannot be appended to."""
    path = Path(path)
    if path.is_dir():
        raise PlannerError(f"--append-calibration {path} is a folder: name a .jsonl file")
    if not path.parent.is_dir():
        raise PlannerError(f"--append-calibration {path}: the folder {path.parent} does not exist")


def calibration_rows(result: BenchResult, provenance: Provenance,
                     comparison: Comparison | None = None) -> list[dict[str, Any]]:
    """One row per measured level (levels where no request succeeded are left out)."""
    s = result.settings
    rows = []
    for lv in result.levels:
        if not lv.requests_ok:
            continue
        row = {
            "model": result.model, "engine": provenance.engine, "engine_version": provenance.engine_version,
            "gpu": provenance.gpu, "isl": s.input_tokens, "osl": s.output_tokens,
            "isl_measured_mean": lv.input_tokens_mean,
            "osl_measured_mean": lv.output_tokens_total / lv.requests_ok,
            "dataset": f"random words, {result.words_per_prompt} per prompt (plan bench)",
            "concurrency": lv.concurrency, "request_rate": "inf", "num_prompts": lv.requests_ok,
            "output_tokens_per_s": lv.output_tokens_per_second, "request_throughput_rps": lv.requests_per_second,
            "ttft_ms": lv.ttft_ms.median, "ttft_p99_ms": lv.ttft_ms.p99,
            "itl_ms": lv.itl_ms.median if lv.itl_ms else None, "itl_p99_ms": lv.itl_ms.p99 if lv.itl_ms else None,
            "tpot_ms": lv.tpot_ms.median if lv.tpot_ms else None, "e2e_latency_ms": lv.e2e_ms.median,
            "metric_definition": "latencies: medians (and p99) over the level's requests, as vllm bench serve; "
                                 "throughputs: totals over the level's wall time",
            "settings": {**s.to_dict(), "concurrencies": None, "base_url": None,
                         "requests_failed": lv.requests_failed, "requests_cancelled": lv.requests_cancelled},
            "load_generator": result.load_generator,
            "date": result.started_at, "source": "plan bench",
        }
        row["settings"] = {k: v for k, v in row["settings"].items() if v is not None}
        if comparison is not None:
            row.update(comparison.parallel)  # the deployment the plan was for (tp, pp), as published rows give it
        if comparison is not None and comparison.concurrency == lv.concurrency:
            row["predicted"] = {m.key: m.predicted for m in comparison.metrics}
            row["predicted_from"] = comparison.predicted_from
        rows.append(row)
    return rows


def append_calibration(path: Path, rows: list[dict[str, Any]]) -> int:
    """Append ``rows`` as JSON lines (existing lines are kept as they are); returns how many were written."""
    path = Path(path)
    check_calibration_file(path)
    lead = ""
    if path.exists() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, 2)
            lead = "" if f.read(1) == b"\n" else "\n"
    with path.open("a") as f:
        f.write(lead + "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return len(rows)
