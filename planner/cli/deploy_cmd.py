"""``plan deploy``, ``plan registry ...`` and ``plan endpoints ...``: registered adapters on endpoints.

``plan deploy JOB|PACKAGE_ARN --name EP --role ARN`` registers a finished job's adapter (when
given a job) and deploys it; ``plan endpoints list|status|invoke|delete`` follows and removes
endpoints; ``plan registry register|list`` manages the model packages. Thin layer over
backend/sagemaker/{registry,deploy}.py.
"""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer

from . import app
from .jobs_cmd import JSON, REGION, echo_json
from .output import console
from .validate import HelpAwareGroup

endpoints_app = typer.Typer(cls=HelpAwareGroup, help="SageMaker real-time endpoints made by `plan deploy`.", no_args_is_help=True,
                            rich_markup_mode=None)
registry_app = typer.Typer(cls=HelpAwareGroup, help="Model packages: one group per base model, one package per adapter.",
                           no_args_is_help=True, rich_markup_mode=None)
app.add_typer(endpoints_app, name="endpoints")
app.add_typer(registry_app, name="registry")


@endpoints_app.callback()
def _endpoints_need_aws(ctx: typer.Context) -> None:
    from .validate import require_group_extra
    require_group_extra(ctx, "aws")


@registry_app.callback()
def _registry_needs_aws(ctx: typer.Context) -> None:
    from .validate import require_group_extra
    require_group_extra(ctx, "aws")

APPROVAL = typer.Option("PendingManualApproval", "--approval", help="Approved | PendingManualApproval | Rejected")


def _session(region: Optional[str]):
    from backend.sagemaker.aws import boto_session
    return boto_session(region)


@app.command("deploy")
def deploy_cmd(ctx: typer.Context, source: str = typer.Argument(..., help="A Completed training job name, or a model package ARN."),
               name: str = typer.Option(..., "--name", help="Endpoint name."),
               role: Optional[str] = typer.Option(None, "--role", help="Execution role ARN (or SAGEMAKER_ROLE_ARN)."),
               instance_type: str = typer.Option("ml.g5.2xlarge", "--instance-type"),
               count: int = typer.Option(1, "--count", help="Instances behind the endpoint."),
               adapter_name: Optional[str] = typer.Option(None, "--adapter-name", help="Adapter name requests use (default: the job name)."),
               approval: str = APPROVAL,
               wait: bool = typer.Option(False, "--wait", help="Wait until the endpoint is InService."),
               region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Deploy an adapter to a real-time endpoint (vLLM image, LoRA on the base model). Bills per hour."""
    from .validate import AWS_MODULES, check_flags, require_extra
    check_flags(ctx)
    require_extra("plan deploy", "aws", *AWS_MODULES)
    from backend.sagemaker import deploy, registry
    session = _session(region)
    if source.startswith("arn:") and ":model-package/" in source:
        package = source
    else:
        package = registry.register_job(source, session=session, adapter_name=adapter_name, approval=approval).arn
        print(f"registered {source} as {package}", file=sys.stderr)
    info = deploy.deploy(package, endpoint_name=name, role_arn=role, session=session, instance_type=instance_type,
                         instance_count=count, wait=wait)
    if as_json:
        echo_json(info.to_dict())
        return
    typer.echo(f"endpoint {info.name}: {info.status} ({info.instance_count} x {info.instance_type})")
    typer.echo(f"  invoke:  plan endpoints invoke {info.name} 'PROMPT'")
    typer.echo(f"  delete:  plan endpoints delete {info.name}   (it bills every hour until deleted)")


@endpoints_app.command("list")
def endpoints_list(region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Endpoints in the region, newest first."""
    from backend.sagemaker.deploy import list_endpoints
    found = list_endpoints(session=_session(region))
    if as_json:
        echo_json([e.to_dict() for e in found])
        return
    if not found:
        print("no endpoints", file=sys.stderr)
    for e in found:
        console().print(f"{e.name}  {e.status}  {e.created}")


@endpoints_app.command("status")
def endpoints_status(name: str = typer.Argument(...), region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """One endpoint's status and instances."""
    from backend.sagemaker.deploy import status
    info = status(name, session=_session(region))
    if as_json:
        echo_json(info.to_dict())
        return
    typer.echo(f"{info.name}: {info.status} ({info.instance_count} x {info.instance_type})"
               + (f": {info.failure_reason}" if info.failure_reason else ""))


@endpoints_app.command("invoke")
def endpoints_invoke(ctx: typer.Context, name: str = typer.Argument(...), prompt: str = typer.Argument(...),
                     adapter: Optional[str] = typer.Option(None, "--adapter", help="Adapter to answer with (vLLM 'model')."),
                     max_tokens: int = typer.Option(256, "--max-tokens", min=1),
                     region: Optional[str] = REGION) -> None:
    """Send one chat message; print the endpoint's JSON answer."""
    from .validate import check_flags
    check_flags(ctx)
    from backend.sagemaker.deploy import chat_request, invoke
    answer = invoke(name, chat_request(prompt, adapter, max_tokens), session=_session(region))
    typer.echo(answer if isinstance(answer, str) else json.dumps(answer, indent=2))


@endpoints_app.command("delete")
def endpoints_delete(name: str = typer.Argument(...), region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Delete the endpoint, its config and its model (stops the hourly bill)."""
    from backend.sagemaker.deploy import delete
    deleted = delete(name, session=_session(region))
    if as_json:
        echo_json({"endpoint": name, "deleted": deleted})
        return
    typer.echo(f"deleted {', '.join(deleted)} '{name}'")


@registry_app.command("register")
def registry_register(job: str = typer.Argument(..., help="A Completed training job launched by plan."),
                      adapter_name: Optional[str] = typer.Option(None, "--adapter-name"), approval: str = APPROVAL,
                      region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Register a job's adapter as a new package version in its base model's group."""
    from backend.sagemaker.registry import register_job
    pkg = register_job(job, session=_session(region), adapter_name=adapter_name, approval=approval)
    echo_json(pkg.to_dict()) if as_json else typer.echo(f"registered {pkg.arn} ({pkg.approval})")


@registry_app.command("list")
def registry_list(base_model: str = typer.Argument(..., help="Base model Hugging Face id, e.g. Qwen/Qwen2.5-0.5B."),
                  region: Optional[str] = REGION, as_json: bool = JSON) -> None:
    """Packages registered for a base model, newest first."""
    from backend.sagemaker.registry import list_packages
    found = list_packages(base_model, session=_session(region))
    if as_json:
        echo_json([p.to_dict() for p in found])
        return
    if not found:
        print(f"no packages for {base_model}", file=sys.stderr)
    for p in found:
        console().print(f"v{p.version}  {p.approval:<22} {p.metadata.get('adapter', '-'):<30} {p.model_data_url}")
