"""``plan bench --url URL --concurrency 1,4,16``: measure a live OpenAI-compatible endpoint, beside the plan."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import PlannerError
from . import app
from .output import console, info, warn

API_KEY_ENV = "OPENAI_API_KEY"  # as vllm bench serve reads it
CLIENT_BUSY = 0.8  # the driver is one Python process: past this share of a core it may be the bottleneck


def parse_levels(text: str) -> tuple[int, ...]:
    """'1,4,16' -> (1, 4, 16); one line naming the bad part otherwise."""
    levels = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise PlannerError(f"--concurrency takes positive integers separated by commas, e.g. 1,4,16; got '{text}'")
        levels.append(int(part))
    return tuple(levels)


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "unknown"
    return f"{v:,.0f}" if abs(v) >= 10**digits else f"{v:.{digits}g}"


@app.command("bench")
def bench(
    ctx: typer.Context,
    url: str = typer.Option(..., "--url", help="The endpoint: its root or its /v1 (vLLM, plan serve, any OpenAI-compatible server)."),
    concurrency: str = typer.Option("1", "--concurrency", help="Levels to measure, comma-separated (requests in flight at once), e.g. 1,4,16."),
    input_tokens: int = typer.Option(128, "--input-tokens", help="Prompt tokens per request (sized with two probe requests; the server's count is reported)."),
    output_tokens: int = typer.Option(128, "--output-tokens", help="max_tokens per request (fewer when the model stops; see --ignore-eos)."),
    num_prompts: Optional[int] = typer.Option(None, "--num-prompts", help="Requests per level (default: max(10, 4 x concurrency))."),
    max_seconds: float = typer.Option(300.0, "--max-seconds", help="Each level stops after this long; requests still running are cancelled and counted."),
    request_timeout: float = typer.Option(300.0, "--request-timeout", help="Seconds one request may take before it counts as failed."),
    model: Optional[str] = typer.Option(None, "--model", help="Model name in the requests (default: the first of GET /v1/models)."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Send vLLM's ignore_eos so every request yields --output-tokens (servers without it refuse)."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, show_envvar=True, help="Bearer key for the endpoint."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random prompt words."),
    predicted: Optional[Path] = typer.Option(None, "--predicted", help="A plan's JSON (plan MODEL --mode inference --engine vllm ... --json) to compare with."),
    append_calibration: Optional[Path] = typer.Option(None, "--append-calibration", help="Append one JSON line per level to this calibration file (needs --gpu; engine and version from the flags or --predicted)."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="The hardware behind the endpoint, for the calibration row, e.g. '1x H100 SXM 80GB'."),
    engine: Optional[str] = typer.Option(None, "--engine", help="The serving engine, for the calibration row (default: the prediction's), e.g. vllm."),
    engine_version: Optional[str] = typer.Option(None, "--engine-version", help="Its version, for the calibration row (default: the prediction's), e.g. 0.19.0."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Measure TTFT, ITL, E2E and throughput of a live endpoint at each concurrency (median, p90, p99),
    beside a plan's prediction; optionally append the result as calibration rows."""
    from .validate import check_flags, require_extra
    check_flags(ctx)
    require_extra("plan bench", "bench", "aiohttp")
    from backend.bench import BenchSettings, run_bench
    from backend.bench_compare import (Provenance, append_calibration as append, calibration_rows,
                                       check_calibration_file, compare, level_to_compare, load_prediction)

    settings = BenchSettings(base_url=url, concurrencies=parse_levels(concurrency), input_tokens=input_tokens,
                             output_tokens=output_tokens, num_prompts=num_prompts, max_seconds=max_seconds,
                             request_timeout_s=request_timeout, model=model, ignore_eos=ignore_eos,
                             api_key=api_key, seed=seed)
    prediction = load_prediction(predicted) if predicted is not None else None
    if prediction is not None:
        level_to_compare(prediction, settings.concurrencies)
    provenance = None
    if append_calibration is not None:
        check_calibration_file(append_calibration)
        eng = engine or (prediction.engine if prediction else None)
        ver = engine_version or (prediction.engine_version if prediction else None)
        missing = [flag for flag, v in (("--gpu", gpu), ("--engine", eng), ("--engine-version", ver)) if not v]
        if missing:
            raise PlannerError(f"--append-calibration needs {', '.join(missing)}: a calibration row names the "
                               "hardware and engine it was measured on")
        provenance = Provenance(gpu=gpu, engine=eng, engine_version=ver)
    elif gpu or engine or engine_version:
        raise PlannerError("--gpu, --engine and --engine-version label a calibration row: use them with "
                           "--append-calibration FILE")

    def progress(lv) -> None:
        info(f"concurrency {lv.concurrency}: {lv.requests_ok} ok, {lv.requests_failed} failed, "
             f"{lv.requests_cancelled} cut in {lv.duration_s:.1f} s")

    result = run_bench(settings, on_level=progress)
    comparison = compare(result, prediction) if prediction is not None else None
    if provenance is not None:
        written = append(append_calibration, calibration_rows(result, provenance, comparison))
        info(f"appended {written} calibration row(s) to {append_calibration}")
    if as_json:
        doc = result.to_dict()
        doc["comparison"] = comparison.to_dict() if comparison is not None else None
        typer.echo(json.dumps(doc, indent=2))
    else:
        _render(result, comparison)
    for lv in result.levels:
        if lv.client_cpu_fraction is not None and lv.client_cpu_fraction > CLIENT_BUSY:
            warn(f"at concurrency {lv.concurrency} the load generator used {lv.client_cpu_fraction:.0%} of a CPU "
                 "core: the figures may be bounded by this client, not by the server")
    if not any(lv.requests_ok for lv in result.levels):
        raise PlannerError(f"no request succeeded: {'; '.join(e for lv in result.levels for e in lv.errors[:1])}")


def _render(result, comparison) -> None:
    from rich.table import Table

    s = result.settings
    c = console()
    c.print(f"{result.model} at {s.v1_url}: {s.input_tokens} input tokens ({result.words_per_prompt} words), "
            f"max {s.output_tokens} output tokens{' (ignore_eos)' if s.ignore_eos else ''}")
    c.print(f"load generator: {result.load_generator}; started {result.started_at}")
    table = Table(title="Measured throughput (totals over each level's wall time)", title_justify="left")
    # cut: still running at --max-seconds, cancelled; in/out tok: per request, the server's count
    for col in ("concurrency", "ok", "failed", "cut", "seconds", "in tok", "out tok", "out tok/s", "req/s",
                "client CPU"):
        table.add_column(col, justify="right")
    for lv in result.levels:
        out_mean = lv.output_tokens_total / lv.requests_ok if lv.requests_ok else None
        table.add_row(str(lv.concurrency), str(lv.requests_ok), str(lv.requests_failed), str(lv.requests_cancelled),
                      _fmt(lv.duration_s, 3), _fmt(lv.input_tokens_mean), _fmt(out_mean),
                      _fmt(lv.output_tokens_per_second), _fmt(lv.requests_per_second),
                      "-" if lv.client_cpu_fraction is None else f"{lv.client_cpu_fraction:.0%}")
    c.print(table)
    table = Table(title="Measured latency, ms (per request; ITL pooled over all token gaps)", title_justify="left")
    for col in ("concurrency", "figure", "median", "p90", "p99", "mean"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for lv in result.levels:
        for label, p in (("TTFT", lv.ttft_ms), ("ITL", lv.itl_ms), ("TPOT", lv.tpot_ms), ("E2E", lv.e2e_ms)):
            if p is None:
                table.add_row(str(lv.concurrency), label, "-", "-", "-", "-")
            else:
                table.add_row(str(lv.concurrency), label, _fmt(p.median), _fmt(p.p90), _fmt(p.p99), _fmt(p.mean))
    c.print(table)
    for lv in result.levels:
        for err in lv.errors:
            c.print(f"concurrency {lv.concurrency}: failed: {err}")
    if comparison is None:
        return
    table = Table(title=f"Predicted vs measured at concurrency {comparison.concurrency} ({comparison.predicted_from})",
                  title_justify="left")
    for col in ("figure", "predicted", "measured", "error"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for m in comparison.metrics:
        table.add_row(m.label, _fmt(m.predicted), _fmt(m.measured), "-" if m.error is None else f"{m.error:+.1%}")
    c.print(table)
