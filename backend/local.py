"""``plan ... --execute --backend local``: check the data and the fit, confirm, train here, report.

The data set is read and validated before anything heavy loads (a bad record is a one-line
error). The plan must fit the local GPU (``--force`` overrides); without a GPU the job still
runs, slowly, on the CPU. Training runs ``python -m backend.train --plan OUT/plan.json`` in a
child process, exactly as on SageMaker; its progress goes to stderr and the result (a table, or
JSON with --json) to stdout. Rerunning the same command resumes from the last complete checkpoint.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

from . import lifeline, run_record, runlock
from .data import count_tokens, load_training_data
from .execute import ExecuteOptions, default_output_dir, training_plan

GIB = 1024**3


def local_gpu() -> dict[str, Any] | None:
    """The first CUDA GPU's name and memory, or None. Imports torch (only on --execute)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "total_memory_bytes": int(props.total_memory), "count": torch.cuda.device_count()}


def check_fit(est: Any, gpu: dict[str, Any] | None, force: bool) -> list[str]:
    """Refuse (PlannerError) a plan larger than the local GPU unless forced; return notes."""
    if gpu is None:
        return ["no CUDA GPU here: training runs on the CPU, slowly; the plan's memory figures are for a GPU"]
    need, have = est.total_bytes, gpu["total_memory_bytes"]
    if need <= have:
        return [f"fits {gpu['name']}: needs {need / GIB:.1f} GiB of {have / GIB:.1f} GiB"]
    msg = (f"the plan needs {need / GIB:.1f} GiB on one GPU but the local {gpu['name']} has {have / GIB:.1f} GiB")
    if not force:
        raise PlannerError(f"{msg}; try --mode qlora, a shorter --seq-len or smaller --batch-size, "
                           "--backend sagemaker, or --force to try anyway")
    return [f"{msg}; running anyway (--force)"]


def local_strategy(est: Any, gpu: dict[str, Any], force: bool) -> tuple[dict[str, Any], list[str]]:
    """With several local GPUs: data-parallel when a replica fits each GPU, else FSDP (FSDP-QLoRA
    for qlora) when the sharded plan fits; the same per-GPU rules pricing uses (pricing/fit.py).
    Returns a pricing-style recommendation for the launcher, and notes."""
    from pricing import fit

    n, have = gpu["count"], gpu["total_memory_bytes"]
    ddp, fsdp = fit.ddp_bytes(est), fit.fsdp_bytes(est, n)
    if ddp <= have:
        strategy, need = "data-parallel", ddp
    else:
        strategy, need = ("fsdp-qlora" if est.job.mode == "qlora" else "fsdp"), fsdp
    note = f"{strategy} over {n} x {gpu['name']}: needs {need / GIB:.1f} GiB per GPU of {have / GIB:.1f} GiB"
    if need > have:
        if not force:
            raise PlannerError(f"{note}; too big even sharded over this machine's GPUs: try --mode qlora, a "
                               "shorter --seq-len, --backend sagemaker, or --force to try anyway")
        note += "; running anyway (--force)"
    rec = {"strategy": strategy, "gpu_count": n, "machines": 1, "per_gpu_bytes": need,
           "instance_type": "local", "platform": "local"}
    return rec, [note]


def check_output_dir(out: Path) -> str | None:
    """A completed run is not trained again; an unfinished one is resumed. Returns a note."""
    holder = runlock.busy(out)  # issue 13: another live run owns the folder
    if holder is not None:
        raise PlannerError(runlock.refusal(out, holder))
    previous = run_record.read(out)
    if previous is None:
        return None
    if previous.get("status") == "completed":
        raise PlannerError(f"{out} already holds a completed run ({previous.get('global_step')} steps); "
                           "pass another --output-dir or delete that folder")
    return f"{out} holds an unfinished run: resuming from its last complete checkpoint"


def confirm(question: str) -> None:
    import typer

    if not sys.stdin.isatty():
        raise PlannerError("training needs confirmation but stdin is not a terminal; pass --yes")
    if not typer.confirm(question, default=False, err=True):
        raise PlannerError("not confirmed; nothing was trained")


def run(model_name: str, est: Any, costs: Any, opts: ExecuteOptions) -> int:
    """Train the plan on this machine; return the exit code of the training process."""
    if not opts.dataset:
        raise PlannerError("--execute needs --dataset PATH (a JSONL/JSON/CSV/Parquet file, or a folder "
                           "with train.jsonl and optionally eval.jsonl)")
    data = load_training_data(opts.dataset)  # validated here: errors before anything loads
    out = Path(opts.output_dir) if opts.output_dir else default_output_dir(model_name, est, opts.dataset)
    notes = [n for n in (check_output_dir(out),) if n]
    gpu = local_gpu()
    multi = gpu is not None and gpu.get("count", 1) > 1
    if multi:
        local_rec, fit_notes = local_strategy(est, gpu, opts.force)
    else:
        fit_notes = check_fit(est, gpu, opts.force)
    notes += fit_notes
    plan = training_plan(model_name, est, opts, out)

    tokens = count_tokens(data.train)
    print(f"train {plan['training']['model']} ({est.job.mode}, {est.job.precision}) on {len(data.train.records)} "
          f"{data.train.format} records (~{tokens:,} tokens"
          + (f", {len(data.eval.records)} for eval" if data.eval else "") + f") into {out}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not opts.yes:
        confirm("Start training?")

    out.mkdir(parents=True, exist_ok=True)
    plan_path = out / "plan.json"
    plan_path.write_text(json.dumps(plan, indent=2) + "\n")
    if multi:  # accelerate launch over this machine's GPUs (backend/distributed); run.json names the strategy
        from .distributed.launch import run_on_local_gpus
        code = run_on_local_gpus(est, {"recommendation": local_rec}, plan, out, gpu["count"])
    else:
        code = launch(plan_path)
    record = run_record.read(out)
    if code == 0 and record:
        report(record, est, costs, opts.as_json)
    elif code not in (0, 2):
        step = (record or {}).get("global_step")
        print(f"training stopped (exit {code}) at step {step}; rerun the same command to resume "
              "from the last complete checkpoint", file=sys.stderr)
    return code


def launch(plan_path: Path) -> int:
    """Run the entry script in a child process; its stdout goes to our stderr (stdout is for results)."""
    root = str(Path(__file__).resolve().parent.parent)  # so -m backend.train imports this checkout
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env, dies_with_us = lifeline.child_env(env), lifeline.preexec(os.getpid())  # kill -9 of plan ends it
    cmd = [sys.executable, "-m", "backend.train", "--plan", str(plan_path)]
    try:
        try:
            fd = sys.stderr.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):
            fd = None
        if fd is not None:
            return subprocess.run(cmd, env=env, stdout=fd, check=False, preexec_fn=dies_with_us).returncode
        # stderr is not a real file (captured, e.g. under pytest): forward the child's output
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=dies_with_us) as proc:
            for line in proc.stdout:
                sys.stderr.write(line)
            return proc.wait()
    except KeyboardInterrupt:
        return 130


def report(record: dict[str, Any], est: Any, costs: Any, as_json: bool) -> None:
    """The result: JSON (estimate, costs, run record) or a short table."""
    if as_json:
        result = est.to_dict()
        if costs is not None:
            result.update(costs.to_dict())
        result["run"] = {k: v for k, v in record.items() if k != "plan"}
        print(json.dumps(result, indent=2, default=str))
        return
    from rich.table import Table

    from planner.cli.output import console

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
