"""``plan jobs list|status|wait|fetch``: follow SageMaker training jobs launched by ``plan --execute``.

Thin layer over backend/sagemaker/jobs.py; boto3 and the SDK load only when a command runs.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Optional

import typer

from . import app
from .output import console
from .validate import HelpAwareGroup

jobs_app = typer.Typer(cls=HelpAwareGroup, help="SageMaker training jobs launched by plan (list, status, wait, fetch).",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(jobs_app, name="jobs")


@jobs_app.callback()
def _needs_aws(ctx: typer.Context) -> None:
    from .validate import require_group_extra
    require_group_extra(ctx, "aws")

REGION = typer.Option(None, "--region", help="AWS region (default: AWS_DEFAULT_REGION or your AWS config).")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _show(info) -> None:
    c = console()
    c.print(f"{info.name}: {info.status}" + (f" ({info.secondary_status})" if info.secondary_status else ""))
    rows = [("instances", f"{info.instance_count} x {info.instance_type}" + (" (spot)" if info.spot else "")),
            ("created", info.created), ("ended", info.ended or "-"),
            ("billable", "-" if info.billable_seconds is None else f"{info.billable_seconds} s"),
            ("model", info.tags.get("plan:model", "-")), ("artifacts", info.model_artifacts or "-"),
            ("checkpoints", info.checkpoint_s3_uri or "-")]
    rows += [(f"metric {k}", f"{v:g}") for k, v in sorted(info.metrics.items())]
    if info.failure_reason:
        rows.append(("failure", info.failure_reason))
    for k, v in rows:
        c.print(f"  {k:<12} {v}")


@jobs_app.command("list")
def list_cmd(ctx: typer.Context, region: Optional[str] = REGION,
             all_jobs: bool = typer.Option(False, "--all", help="Every training job, not only plan-* ones."),
             status: Optional[str] = typer.Option(None, "--status", help="InProgress | Completed | Failed | Stopping | Stopped"),
             limit: int = typer.Option(20, "--limit", min=1, max=100),
             as_json: bool = JSON) -> None:
    """The newest training jobs (those launched by plan unless --all)."""
    from .validate import check_flags
    check_flags(ctx)
    from backend.sagemaker.jobs import NAME_PREFIX, list_jobs
    jobs = list_jobs(region=region, name_contains="" if all_jobs else NAME_PREFIX, status=status, max_results=limit)
    if as_json:
        echo_json([j.to_dict() for j in jobs])
        return
    if not jobs:
        print("no training jobs", file=sys.stderr)
        return
    from rich.table import Table
    table = Table(title="Training jobs", title_justify="left")
    for col in ("name", "status", "detail", "created"):
        table.add_column(col)
    for j in jobs:
        table.add_row(j.name, j.status, j.secondary_status, j.created)
    console().print(table)


@jobs_app.command("status")
def status_cmd(name: str = typer.Argument(..., help="Training job name."), region: Optional[str] = REGION,
               as_json: bool = JSON) -> None:
    """One job's status, machines, cost-relevant times, artifacts and metrics."""
    from backend.sagemaker.jobs import job_status
    info = job_status(name, region=region)
    echo_json(info.to_dict()) if as_json else _show(info)


@jobs_app.command("wait")
def wait_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Training job name."), region: Optional[str] = REGION,
             poll: float = typer.Option(30.0, "--poll", min=0.0, help="Seconds between checks."),
             timeout: Optional[float] = typer.Option(None, "--timeout", help="Give up after this many seconds."),
             as_json: bool = JSON) -> None:
    """Wait until the job ends; exit 0 when Completed, 1 when Failed or Stopped."""
    from .validate import check_flags
    check_flags(ctx)
    from backend.sagemaker.jobs import wait_for

    def progress(info) -> None:
        print(f"{info.name}: {info.status} {info.secondary_status}".rstrip(), file=sys.stderr)

    info = wait_for(name, region=region, poll_s=poll, timeout_s=timeout, on_change=progress)
    echo_json(info.to_dict()) if as_json else _show(info)
    if info.status != "Completed":
        raise typer.Exit(1)


@jobs_app.command("fetch")
def fetch_cmd(name: str = typer.Argument(..., help="Completed training job name."),
              adapter_name: Optional[str] = typer.Option(None, "--name", help="Name in the adapter store (default: the job name)."),
              region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Download the job's adapter and run.json into the local adapter store (`plan adapters list`)."""
    from backend.sagemaker.jobs import fetch
    result = fetch(name, adapter_name, region=region)
    if as_json:
        echo_json(result.to_dict())
        return
    typer.echo(f"stored adapter '{result.adapter_name}' (base {result.base_model}) in {result.adapter_path}")
