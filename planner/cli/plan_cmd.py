"""``plan MODEL``: the memory estimate, the cheapest machine, and (with --execute) the run.

Every flag of the issues' CLI contract is declared here; the work is done by
``planner.estimate``, ``pricing.plan_costs`` and the backends (via planner/cli/execute.py). Those packages are imported
only when their flags ask for them, so a plain estimate never loads torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import DEFAULT_COMMAND, app
from .help import PlanCommand
from .output import console, warn
from .serving_flags import ServingFlags, with_serving_flags


@app.command(DEFAULT_COMMAND, hidden=True, no_args_is_help=True, cls=PlanCommand)
@with_serving_flags  # issue 21: --engine vllm and vLLM's own flags (planner/cli/serving_flags.py)
def plan(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Alias (llama3-70b), Hugging Face id, config.json or model directory."),
    mode: str = typer.Option("qlora", "--mode", "-m", help="inference | full | lora | qlora | prompt-tuning"),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32 | bf16 | fp16 | int8 | int4 (default: the mode's standard recipe)"),
    seq_len: int = typer.Option(2048, "--seq-len", help="Tokens per sequence."),
    batch_size: int = typer.Option(1, "--batch-size", help="Sequences per step (per GPU)."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Default: on for training."),
    lora_r: int = typer.Option(16, "--lora-r"),
    lora_alpha: int = typer.Option(32, "--lora-alpha"),
    lora_dropout: float = typer.Option(0.05, "--lora-dropout"),
    lora_targets: str = typer.Option("all-linear", "--lora-targets", help="all-linear or a comma list such as q_proj,v_proj"),
    num_virtual_tokens: int = typer.Option(20, "--num-virtual-tokens"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw | adamw-8bit | paged-adamw-8bit | sgd"),
    attention: str = typer.Option("sdpa", "--attention", help="sdpa | eager"),
    allocator: str = typer.Option("caching", "--allocator",
                                  help="caching (PyTorch's default) | expandable "
                                       "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)"),
    adapters: int = typer.Option(0, "--adapters", help="Inference: LoRA adapters served beside the base."),
    max_lora_rank: Optional[int] = typer.Option(None, "--max-lora-rank", help="Inference with --adapters: largest adapter rank (default --lora-r)."),
    # pricing (issue: pricing)
    platform: str = typer.Option("any", "--platform", help="ec2 | sagemaker | any"),
    region: str = typer.Option("us-east-1", "--region", help="AWS region, or 'any' to search every region."),
    spot: bool = typer.Option(False, "--spot", help="Use spot prices (EC2 spot; SageMaker managed spot, estimated)."),
    objective: Optional[str] = typer.Option(None, "--objective", help="job-cost | hourly | time (default: job-cost with --tokens/--dataset, else hourly)."),
    max_hours: Optional[float] = typer.Option(None, "--max-hours", help="Deadline: only plans whose job takes at most H hours."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Check your own GPU instead of pricing cloud machines (e.g. 'RTX 4090')."),
    max_gpus: Optional[int] = typer.Option(None, "--max-gpus"),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens per epoch (for job time and cost): 50000000, 50M, 2B, 1.5e9."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Training data (JSONL/JSON/CSV/Parquet, or s3:// for SageMaker)."),
    epochs: float = typer.Option(1.0, "--epochs"),
    currency: Optional[str] = typer.Option(None, "--currency", help="Also show costs in this currency (needs --usd-rate)."),
    usd_rate: Optional[float] = typer.Option(None, "--usd-rate", help="Units of --currency per US dollar."),
    no_pricing: bool = typer.Option(False, "--no-pricing", help="Memory estimate only."),
    # execution (issues: local backend, SageMaker, distributed)
    execute: bool = typer.Option(False, "--execute", help="Run the planned job."),
    backend: str = typer.Option("local", "--backend", help="local | sagemaker"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Run even if the plan does not fit the local GPU."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    learning_rate: Optional[float] = typer.Option(None, "--learning-rate"),
    save_steps: Optional[int] = typer.Option(None, "--save-steps"),
    experiment: Optional[str] = typer.Option(None, "--experiment", help="MLflow experiment name."),
    role: Optional[str] = typer.Option(None, "--role", help="SageMaker execution role ARN."),
    bucket: Optional[str] = typer.Option(None, "--bucket"),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="Refuse a job estimated to cost more (USD, start-up included)."),
    restart: bool = typer.Option(False, "--restart", help="Local run: start over, moving the folder's checkpoints aside (not deleted)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="SageMaker: print the request, create nothing."),
    wait: bool = typer.Option(False, "--wait", help="SageMaker: wait for the job to finish."),
    emit_config: Optional[Path] = typer.Option(None, "--emit-config", help="Write the multi-GPU launch configuration here."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object to stdout."),
    serving: ServingFlags = ServingFlags(),
) -> None:
    """Estimate GPU memory for MODEL and MODE, find the cheapest machine, optionally run it."""
    from .validate import check_flags, context_note, ignored_flags, plan_conflicts  # issues 13, 19
    check_flags(ctx)
    if serving.engine != "transformers" or serving.given():
        from .serving_request import run_serving
        return run_serving(ctx, model, serving, mode=mode, precision=precision, gpu=gpu, platform=platform,
                           region=region, spot=spot, max_gpus=max_gpus, no_pricing=no_pricing, as_json=as_json,
                           currency=currency, usd_rate=usd_rate)
    plan_conflicts(ctx)
    ignored_flags(ctx)
    from ..estimate import estimate  # not needed by --engine vllm: imported here to keep that path light
    from ..job import Job
    job = Job(mode=mode, precision=precision, seq_len=seq_len, batch_size=batch_size,
              gradient_checkpointing=gradient_checkpointing, lora_r=lora_r, lora_alpha=lora_alpha,
              lora_dropout=lora_dropout, lora_targets=lora_targets, num_virtual_tokens=num_virtual_tokens,
              optimizer=optimizer, attention=attention, adapters=adapters, max_lora_rank=max_lora_rank,
              allocator=allocator)
    est = estimate(model, job)
    if (beyond := context_note(est)) is not None:
        warn(beyond)
    result = est.to_dict()
    vllm = None
    if job.adapters:  # the production twin of `plan serve` (planner/vllm.py)
        from ..vllm import vllm_command_for
        vllm = vllm_command_for(est.model.hf_id or model, job)
        result["vllm"] = vllm.to_dict()

    costs = None
    if not no_pricing:
        from .price_request import price_request  # pricing is light: csv + dataclasses
        costs = price_request(est, platform=platform, region=region, spot=spot, gpu=gpu, max_gpus=max_gpus,
                              tokens=tokens, dataset=dataset, epochs=epochs, currency=currency,
                              usd_rate=usd_rate, objective=objective, max_hours=max_hours, max_cost=max_cost)
        if costs is not None:
            result.update(costs.to_dict())

    if as_json and not execute:
        typer.echo(json.dumps(result, indent=2))
    elif not as_json:
        from .render import render_estimate
        render_estimate(console(), est)
        if costs is not None:
            from .render_costs import render_costs
            render_costs(console(), costs)
        if vllm is not None:
            console().print("Serve it in production with vLLM:\n  " + vllm.text
                            + "".join(f"\n  note: {n}" for n in vllm.notes), soft_wrap=True)
    if costs is not None and getattr(costs, "exit_code", 0) and not execute:
        raise typer.Exit(costs.exit_code)

    if emit_config is not None or execute:
        from backend.execute import ExecuteOptions

        from .execute import run_plan
        opts = ExecuteOptions(backend=backend, dataset=dataset, yes=yes, force=force, output_dir=output_dir,
                              max_steps=max_steps, epochs=epochs, learning_rate=learning_rate,
                              save_steps=save_steps, experiment=experiment, role=role, bucket=bucket,
                              region=_launch_region(region, costs), spot=spot, max_cost=max_cost, dry_run=dry_run, wait=wait,
                              emit_config=emit_config, execute=execute, as_json=as_json, restart=restart)
        code = run_plan(model, est, costs, opts)
        if code:
            raise typer.Exit(code)


def _launch_region(region: str, costs) -> str:
    """--region any: launch where the recommendation is (pricing named the region it chose)."""
    rec = getattr(costs, "recommendation", None)
    return rec.region if region == "any" and rec is not None else region
