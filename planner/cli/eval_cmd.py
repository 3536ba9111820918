"""``plan eval NAME --dataset FILE``: task metrics with and without the adapter, and the forgetting check."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from planner.errors import PlannerError

from . import app
from .output import console, info, warn


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


@app.command("eval")
def eval_adapter(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Adapter: a name from `plan adapters list`, or an adapter directory."),
    dataset: Path = typer.Option(..., "--dataset", help="Task eval data (JSONL/JSON/CSV/Parquet: text, prompt/completion or messages)."),
    general: Optional[Path] = typer.Option(None, "--general", help="General-text file for the forgetting check (default: the shipped set)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's recorded base)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Flag forgetting above this rise of general-text perplexity (default 0.10 = +10%)."),
    max_examples: Optional[int] = typer.Option(None, "--max-examples", help="Score only the first N task records."),
    exact_match: bool = typer.Option(True, "--exact-match/--no-exact-match", help="Greedy-generate each completion and compare."),
    track: bool = typer.Option(True, "--track/--no-track", help="Log the results to MLflow."),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment (default: the training run's)."),
    fail_on_forgetting: bool = typer.Option(False, "--fail-on-forgetting", help="Exit 1 when forgetting is flagged."),
    lm_eval_tasks: Optional[str] = typer.Option(None, "--lm-eval-tasks", help="Also run these lm-eval tasks (comma-separated) with and without the adapter; needs pip install '.[eval]'. general_mc ships offline."),
    lm_eval_include: Optional[Path] = typer.Option(None, "--lm-eval-include", help="Folder of local lm-eval task YAMLs (default: the shipped one, backend/data/lm_eval_tasks)."),
    lm_eval_limit: Optional[int] = typer.Option(None, "--lm-eval-limit", help="Score only the first N items of each lm-eval task."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Loss, perplexity and exact match on TASK data with and without the adapter; forgetting verdict;
    optionally lm-eval tasks (standard benchmarks or local YAMLs) with and without the adapter."""
    from .validate import check_flags, require_extra
    check_flags(ctx)
    if experiment is not None and not track:  # issue 19: no flag silently ignored
        raise PlannerError("--experiment does nothing here: it names the MLflow experiment, and --no-track "
                           "turns tracking off")
    require_extra("plan eval", "train", "torch", "transformers", "peft")
    if lm_eval_tasks:
        require_extra("plan eval --lm-eval-tasks", "eval", "lm_eval")
    from backend.adapter_io import find_adapter
    from backend.evaluate import DEFAULT_FORGETTING_THRESHOLD, evaluate_adapter
    from backend.store import AdapterStore

    store = AdapterStore()
    ref = find_adapter(name, base_model=base, store=store)
    loaded, selection = None, None
    if lm_eval_tasks is not None:  # check the tasks before the model loads; load it once for both checks
        from backend.adapter_io import load_with_adapter
        from backend.lm_eval_bridge import select_tasks

        if lm_eval_limit is not None and lm_eval_limit <= 0:
            raise PlannerError(f"--lm-eval-limit must be positive, got {lm_eval_limit}")
        selection = select_tasks(lm_eval_tasks.split(","), lm_eval_include)
        loaded = load_with_adapter(ref)
    elif lm_eval_include is not None or lm_eval_limit is not None:
        raise PlannerError("--lm-eval-include and --lm-eval-limit need --lm-eval-tasks")
    report = evaluate_adapter(ref, dataset, general, max_examples=max_examples, exact_match=exact_match,
                              threshold=DEFAULT_FORGETTING_THRESHOLD if threshold is None else threshold,
                              loaded=loaded)
    result = report.to_dict()
    lm_report = None
    if selection is not None:
        from backend.lm_eval_bridge import compare_on_tasks

        lm_report = compare_on_tasks(*loaded, selection, limit=lm_eval_limit)
        result["lm_eval"] = lm_report.to_dict()
    training_run = (store.get(ref.store_name).metadata.get("mlflow") or {}) if ref.store_name else {}
    if track:
        result["mlflow"] = _track(report, training_run, experiment,
                                  lm_report.metrics() if lm_report is not None else None)
    if ref.store_name:
        store.update_metadata(ref.store_name, eval=result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _render(report)
        if lm_report is not None:
            _render_lm_eval(lm_report)
    if fail_on_forgetting and report.verdict.forgetting:
        raise typer.Exit(1)


def _track(report, training_run: dict, experiment: str | None, extra_metrics: dict | None = None) -> dict | None:
    from backend.tracking import DEFAULT_EXPERIMENT, default_tracking_uri, mlflow_available

    if not mlflow_available():
        warn("mlflow is not installed: results not tracked (pip install '.[train]')")
        return None
    from backend.evaluate import log_to_mlflow

    uri = training_run.get("tracking_uri") or default_tracking_uri(Path.cwd())
    exp = experiment or training_run.get("experiment") or DEFAULT_EXPERIMENT
    run_id = log_to_mlflow(report, uri, exp, parent_run_id=training_run.get("run_id"), extra_metrics=extra_metrics)
    info(f"MLflow run {run_id} in experiment '{exp}' at {uri}")
    return {"tracking_uri": uri, "experiment": exp, "run_id": run_id}


def _render(report) -> None:
    from rich.table import Table

    table = Table(title=f"Adapter {report.adapter} on {report.base_model}", title_justify="left")
    for col in ("set", "metric", "without adapter", "with adapter"):
        table.add_column(col, justify="left" if col in ("set", "metric") else "right")
    for label, comp in (("task", report.task), ("general", report.general)):
        table.add_row(label, "loss", _fmt(comp.base.loss), _fmt(comp.adapter.loss))
        table.add_row(label, "perplexity", _fmt(comp.base.perplexity), _fmt(comp.adapter.perplexity))
        if comp.base.exact_match is not None:
            table.add_row(label, "exact match", f"{comp.base.exact_match:.1%}", f"{comp.adapter.exact_match:.1%}")
        table.add_row(label, "tokens scored", str(comp.base.tokens), str(comp.adapter.tokens))
    c = console()
    c.print(table)
    c.print(report.verdict.message)


def _render_lm_eval(lm_report) -> None:
    from rich.table import Table

    def cell(side: dict, metric: str) -> str:
        err = side.get(f"{metric}_stderr")
        return _fmt(side[metric]) + ("" if err is None else f" ± {_fmt(err, 2)}")

    table = Table(title="lm-eval tasks", title_justify="left")
    for col in ("task", "items", "metric", "without adapter", "with adapter", "change"):
        table.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for t in lm_report.tasks:
        for metric, change in t.delta.items():
            table.add_row(t.task, "-" if t.samples is None else str(t.samples), metric,
                          cell(t.base, metric), cell(t.adapter, metric), f"{change:+.4g}")
    console().print(table)
