"""``plan ... --execute --backend local``: check the data and the fit, confirm, train here, report.

The data set is read and validated before anything heavy loads (a bad record is a one-line
error). The plan must fit the local GPU (``--force`` overrides); without a GPU the job still
runs, slowly, on the CPU. Training runs ``python -m backend.train --plan OUT/plan.json`` in a
child process, exactly as on SageMaker; its progress goes to stderr and the result (a table, or
JSON with --json) to stdout. Rerunning the same command resumes from the last complete checkpoint.
``prepare`` checks and returns a ``LocalRun``; the CLI shows it, asks, calls ``start`` and reports
(planner/cli/execute.py): nothing here prints or prompts.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.allocator import ALLOC_CONF_VAR, allocator_env
from planner.errors import PlannerError
from planner.plan import Machine, Plan, Strategy
from planner.safe_io import mark_output

from . import lifeline, run_record, runlock
from .data import count_tokens, dropped_at, load_training_data, no_survivors
from .execute import ExecuteOptions, default_output_dir, training_plan


def local_gpu() -> dict[str, Any] | None:
    """The first CUDA GPU's name and memory, or None. Imports torch (only on --execute)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "total_memory_bytes": int(props.total_memory), "count": torch.cuda.device_count()}


def local_fit(est: Any, gpu: dict[str, Any]):
    """pricing/fit.py's one fit rule on this machine's GPUs (count and memory as torch reports them)."""
    from pricing import fit

    return fit.fit_machine(est, gpu_memory_bytes=gpu["total_memory_bytes"], gpu_count=gpu.get("count", 1), efa=None)


def _refuse_or_force(est: Any, f: Any, gpu: dict[str, Any], line: str, force: bool) -> str:
    """The line itself when it fits; else refused with what would make it fit (planner/suggest.py)."""
    if f.fits:
        return line
    if not force:
        from planner.gpuspec import GpuSpec
        from pricing.localgpu import suggestions_for_gpu

        spec = GpuSpec(gpu.get("count", 1), gpu["total_memory_bytes"], None, "torch.cuda")
        tries = " or ".join(" ".join(s.flags) for s in suggestions_for_gpu(est, spec, more_gpus=False)[:3])
        raise PlannerError(f"{line}; try {tries + ', ' if tries else ''}--backend sagemaker, "
                           "or --force to try anyway")
    return f"{line}; running anyway (--force)"


def check_fit(est: Any, gpu: dict[str, Any] | None, force: bool) -> list[str]:
    """Refuse (PlannerError) a plan larger than the local GPU unless forced; return notes."""
    if gpu is None:
        return ["no CUDA GPU here: training runs on the CPU, slowly; the plan's memory figures are for a GPU"]
    from pricing.fit import needs_text

    f = local_fit(est, {**gpu, "count": 1})
    head = "fits" if f.fits else "does not fit"
    return [_refuse_or_force(est, f, {**gpu, "count": 1}, f"{head} {gpu['name']}: {needs_text(f.per_gpu_bytes, f.usable_bytes_per_gpu)}", force)]


def local_strategy(est: Any, gpu: dict[str, Any], force: bool) -> tuple[Machine, list[str]]:
    """With several local GPUs: the strategy pricing's fit rule picks for them (data-parallel when a
    replica fits each GPU, else FSDP, FSDP-QLoRA for qlora). Returns the machine (strategy, GPUs,
    per-GPU need) for the launcher, and notes."""
    from pricing.fit import needs_text

    n = gpu["count"]
    f = local_fit(est, gpu)
    strategy = f.strategy or (Strategy.FSDP_QLORA if est.job.mode == "qlora" else Strategy.FSDP)
    note = f"{strategy} over {n} x {gpu['name']}: {needs_text(f.per_gpu_bytes, f.usable_bytes_per_gpu)}"
    if not f.fits:
        note += "; too big even sharded over this machine's GPUs"
    note = _refuse_or_force(est, f, gpu, note, force)
    return Machine("local", "local", strategy, gpu_count=f.gpus_used if f.fits else n, machines=1,
                   per_gpu_bytes=f.per_gpu_bytes), [note]


def check_writable(out: Path) -> None:
    """--output-dir must be (or become) a folder we can write: one line when it is a file or read-only."""
    if out.exists() and not out.is_dir():
        raise PlannerError(f"--output-dir {out} is a file, not a folder; pass a folder path")
    parent = out
    while not parent.exists():  # the nearest existing ancestor is where mkdir will write
        parent = parent.parent
    if not parent.is_dir():
        raise PlannerError(f"--output-dir {out}: {parent} is a file, so the folder cannot be made there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PlannerError(f"--output-dir {out}: {parent} is not writable; pass a folder you can write to")


def check_output_dir(out: Path, restart: bool = False) -> str | None:
    """A completed run is not trained again; an unfinished one is resumed. Returns a note."""
    check_writable(out)
    holder = runlock.busy(out)  # issue 13: another live run owns the folder
    if holder is not None:
        raise PlannerError(runlock.refusal(out, holder))
    run_record.check_folder(out, "--output-dir")
    try:
        previous = run_record.load(out)
    except run_record.DamagedRecord as exc:
        if not restart:
            raise PlannerError(run_record.damaged_refusal(out, str(exc))) from None
        previous = {"status": "damaged"}
    if previous is None:
        return None
    if restart:
        return f"--restart: {out}'s checkpoints and run record will be moved aside (not deleted) and training starts over"
    if previous.get("status") == "completed":
        raise PlannerError(f"{out} already holds a completed run ({previous.get('global_step')} steps); "
                           "pass another --output-dir, or --restart to train again (the old run is moved aside)")
    return f"{out} holds an unfinished run: resuming from its last complete checkpoint"


def survivors_note(model: str, data: Any, seq_len: int) -> list[str]:
    """The preflight's count of records TRL would drop at --seq-len, with the model's own tokenizer:
    all of them is refused here (not two minutes later as num_samples=0), some is a note. Without
    the tokenizer (a Hub id offline) the training process counts them after TRL prepares the data."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception:  # noqa: BLE001 - any failure here is the trainer's to report, with its own message
        return []
    dropped = dropped_at(data.train, tokenizer, seq_len)
    given = len(data.train.records)
    if dropped == given:
        raise PlannerError(no_survivors(given, seq_len))
    return [f"{dropped} of {given} training records will be dropped: their prompt fills --seq-len {seq_len}, "
            "leaving no trained token (TRL's truncation)"] if dropped else []


@dataclass(frozen=True)
class LocalRun:
    """A checked local run, ready to start: what the CLI shows before asking for confirmation."""

    out: Path
    plan: Plan
    summary: str
    notes: tuple[str, ...]
    gpu_count: int = 1
    machine: Machine | None = None  # several local GPUs: local_strategy's choice
    restart: bool = False  # --restart: backend/train.py moves the old checkpoints aside

    @property
    def plan_path(self) -> Path:
        return self.out / "plan.json"


@dataclass(frozen=True)
class LocalResult:
    """How the training process ended: exit code, its run record, and a line for the user when it stopped."""

    code: int
    record: dict[str, Any] | None
    message: str | None = None


def prepare(model_name: str, est: Any, opts: ExecuteOptions) -> LocalRun:
    """Validate the data and the fit and build plan.json; nothing heavy loads, nothing is written."""
    if not opts.dataset:
        raise PlannerError("--execute needs --dataset PATH (a JSONL/JSON/CSV/Parquet file, or a folder "
                           "with train.jsonl and optionally eval.jsonl)")
    data = load_training_data(opts.dataset)  # validated here: errors before anything loads
    out = Path(opts.output_dir) if opts.output_dir else default_output_dir(model_name, est, opts.dataset)
    notes = [n for n in (check_output_dir(out, opts.restart),) if n]
    gpu = local_gpu()
    machine = None
    if gpu is not None and gpu.get("count", 1) > 1:
        machine, fit_notes = local_strategy(est, gpu, opts.force)
    else:
        fit_notes = check_fit(est, gpu, opts.force)
    notes += fit_notes
    plan = training_plan(model_name, est, opts, out, machine)
    notes += survivors_note(plan.training.model, data, est.job.seq_len)
    tokens = count_tokens(data.train)
    summary = (f"train {plan.training.model} ({est.job.mode}, {est.job.precision}) on "
               f"{len(data.train.records)} {data.train.format} records (~{tokens:,} tokens"
               + (f", {len(data.eval.records)} for eval" if data.eval else "") + f") into {out}")
    return LocalRun(out, plan, summary, tuple(notes), gpu["count"] if machine else 1, machine, opts.restart)


def start(run: LocalRun, est: Any) -> LocalResult:
    """Write plan.json and train (one process, or accelerate over this machine's GPUs); wait for it."""
    run.out.mkdir(parents=True, exist_ok=True)
    mark_output(run.out, run_record.KIND)
    run.plan_path.write_text(run.plan.to_json())
    if run.machine is not None:  # accelerate launch over this machine's GPUs (backend/distributed)
        from .distributed.launch import run_on_local_gpus
        code = run_on_local_gpus(est, run.machine, run.plan, run.out, run.gpu_count,
                                 env=allocator_env(est.job.allocator, os.environ.get(ALLOC_CONF_VAR)),
                                 restart=run.restart)
    else:
        code = launch(run.plan_path, allocator=est.job.allocator, restart=run.restart)
    record = run_record.read(run.out)
    message = None
    if code not in (0, 2):
        reason = (record or {}).get("reason") if (record or {}).get("status") == "failed" else None
        message = (f"training stopped (exit {code}) at step {(record or {}).get('global_step')}"
                   + (f": {reason}" if reason else "") + "; rerun the same command to resume from the last "
                   "complete checkpoint" + (" once that is fixed" if reason else ""))
    return LocalResult(code, record, message)


def launch(plan_path: Path, allocator: str = "caching", *, restart: bool = False) -> int:
    """Run the entry script in a child process; its stdout goes to our stderr (stdout is for results).
    The allocator policy the plan modelled is set in its environment (planner/allocator.py)."""
    root = str(Path(__file__).resolve().parent.parent)  # so -m backend.train imports this checkout
    env = {**os.environ, **allocator_env(allocator, os.environ.get(ALLOC_CONF_VAR))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env, dies_with_us = lifeline.child_env(env), lifeline.preexec(os.getpid())  # kill -9 of plan ends it
    cmd = [sys.executable, "-m", "backend.train", "--plan", str(plan_path), *(["--restart"] if restart else [])]
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
