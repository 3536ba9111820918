"""``plan MODEL ... --execute`` and ``--emit-config``: the CLI side of running a plan.

The backends check, build and launch and return result objects (backend/local.py ``LocalRun``
and ``LocalResult``, backend/sagemaker ``TrainingRequest`` and ``LaunchResult``,
backend/distributed ``Emitted``); this module shows them, asks for confirmation and reports.
Each backend is imported only when asked for, so a plain estimate never loads torch or boto3.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from ..errors import PlannerError
from .output import console, info

BACKENDS = ("local", "sagemaker")


def run_plan(model_name: str, est: Any, costs: Any, opts: Any) -> int:
    """Dispatch to --emit-config and/or the chosen backend; return the exit code."""
    if est.job.mode == "inference" and opts.execute:
        raise PlannerError("--execute trains a model; --mode inference has nothing to train "
                           "(use --mode full, lora, qlora or prompt-tuning)")
    if opts.backend not in BACKENDS:
        raise PlannerError(f"unknown backend '{opts.backend}'; choose {' or '.join(BACKENDS)}")
    if opts.emit_config is not None:
        emit_config(model_name, est, costs, opts)
    if not opts.execute:
        return 0
    from ..weights import all_linear_problem
    problem = all_linear_problem(est.model, est.job)
    if problem:
        raise PlannerError(problem)
    from .validate import AWS_MODULES, TRAIN_MODULES, require_extra
    require_extra("plan --execute", *(("train", *TRAIN_MODULES) if opts.backend == "local" else ("aws", *AWS_MODULES)))
    if opts.backend == "local":
        return run_local(model_name, est, costs, opts)
    return run_sagemaker(model_name, est, costs, opts)


def confirm(question: str, *, no_tty: str, error: type[PlannerError] = PlannerError) -> bool:
    """Ask on stderr; ``no_tty`` is the one-line error (of type ``error``) when there is no terminal."""
    if not sys.stdin.isatty():
        raise error(no_tty)
    return typer.confirm(question, default=False, err=True)


def emit_config(model_name: str, est: Any, costs: Any, opts: Any) -> None:
    try:
        from backend.distributed import emit
    except ImportError as exc:
        if not (getattr(exc, "name", "") or "").startswith("backend.distributed"):
            raise
        raise PlannerError("--emit-config needs backend/distributed, which this install lacks") from None
    done = emit(model_name, est, costs, opts)
    cfg = done.cfg
    if opts.as_json:  # stdout already holds the plan's one JSON object; the launch is also in plan.json
        info(f"wrote {cfg.strategy} launch files to {done.dir}; launch: {done.command}")
        return
    print(f"{cfg.strategy} on {cfg.num_processes} GPU(s) x {cfg.num_machines} machine(s); wrote "
          + ", ".join(str(p.relative_to(done.dir)) for p in done.written) + f" in {done.dir}")
    print(f"launch: {done.command}")
    for note in cfg.notes:
        info(f"note: {note}")
    if not done.validated:
        info("note: accelerate is not installed here, so the config was not validated")


def run_local(model_name: str, est: Any, costs: Any, opts: Any) -> int:
    """Check, show, confirm, train on this machine, report; the training process's exit code."""
    from backend import local

    run = local.prepare(model_name, est, opts)
    info(run.summary)
    for note in run.notes:
        info(f"note: {note}")
    if not opts.yes and not confirm("Start training?", no_tty="training needs confirmation but stdin is not "
                                    "a terminal; pass --yes"):
        raise PlannerError("not confirmed; nothing was trained")
    result = local.start(run, est)
    if result.code == 0 and result.record:
        report_run(result.record, est, costs, opts.as_json)
    elif result.message:
        info(result.message)
    return result.code


def report_run(record: dict[str, Any], est: Any, costs: Any, as_json: bool) -> None:
    """The result of a local run: JSON (estimate, costs, run record) or a short table."""
    if as_json:
        result = est.to_dict()
        if costs is not None:
            result.update(costs.to_dict())
        result["run"] = {k: v for k, v in record.items() if k != "plan"}
        print(json.dumps(result, indent=2, default=str))
        return
    from rich.table import Table

    from ..breakdown import GIB

    losses = record.get("train_loss") or []
    evals = record.get("eval_loss") or []
    measured = record.get("measured_peak_allocated_bytes")
    table = Table(title="Training run", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    rows = [("status", record["status"]), ("steps", str(record["global_step"])),
            ("train loss", f"{losses[0]['loss']:.4f} -> {losses[-1]['loss']:.4f}" if losses else "-"),
            ("eval loss", f"{evals[-1]['eval_loss']:.4f}" if evals else "-"),
            ("peak memory predicted", f"{record['predicted_peak_allocated_bytes'] / GIB:.2f} GiB"
             if record.get("predicted_peak_allocated_bytes") else "-"),
            ("peak memory measured", f"{measured / GIB:.2f} GiB" if measured else "n/a (no GPU)"),
            ("resumed from", ", ".join(Path(p).name for p in record.get("resumed_from") or []) or "-"),
            ("adapter", record.get("adapter") or ("full model" if record.get("artifacts") == "model" else "-")),
            ("mlflow run", (record.get("mlflow") or {}).get("run_id") or "-")]
    for k, v in rows:
        table.add_row(k, v)
    console().print(table)


def sagemaker_summary(r: Any) -> str:
    cost = "unknown" if r.estimated_usd is None else f"${r.estimated_usd:,.2f}"
    cap = "unknown" if r.max_usd is None else f"${r.max_usd:,.2f}"
    return (f"SageMaker job {r.job_name}: {r.instance_count} x {r.instance_type}"
            f"{' (spot)' if r.spot else ''}, {r.gpus_per_instance} GPU(s) each, estimated {cost}, "
            f"at most {cap} at the {r.max_runtime_s / 3600:.1f} h limit; data {r.dataset_s3_uri}")


def run_sagemaker(model_name: str, est: Any, costs: Any, opts: Any) -> int:
    """Dry-run, or confirm and launch, the planned job on SageMaker; optionally wait. Exit code."""
    from backend.sagemaker.aws import boto_session
    from backend.sagemaker.errors import SageMakerError
    from backend.sagemaker.jobs import wait_for
    from backend.sagemaker.launch import launch, plan_file, prepare

    session = boto_session(getattr(opts, "region", None))
    request = prepare(model_name, est, costs, opts, session)
    if opts.dry_run:
        print(json.dumps({"dry_run": True, "request": request.to_dict()}, indent=2))
        info(f"dry run: nothing was created. {sagemaker_summary(request)}")
        return 0
    info(sagemaker_summary(request))
    for note in request.notes:
        info(f"note: {note}")
    if not opts.yes and not confirm("Launch it?", no_tty="launching a paid SageMaker job needs confirmation; "
                                    "pass --yes to launch without a prompt (or --dry-run to see the request)",
                                    error=SageMakerError):
        info("not launched")
        return 1
    result = launch(request, plan_file(model_name, est, costs, request), session)
    status = result.status
    if opts.wait:
        status = wait_for(result.job_name, session=session).status
    out = {**result.to_dict(), "status": status, "request": request.to_dict()}
    if getattr(opts, "as_json", False):
        print(json.dumps(out, indent=2))
    else:
        print(f"started {result.job_name} ({status})")
        print(f"  console: {result.console_url}")
        print(f"  follow:  plan jobs status {result.job_name}   |   plan jobs wait {result.job_name}")
        print(f"  fetch:   plan jobs fetch {result.job_name} --name ADAPTER_NAME")
    return 0 if status in ("InProgress", "Completed") else 1
