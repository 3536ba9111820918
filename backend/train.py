"""The one training entry script: read the plan, load data, load model, wrap with PEFT, train, save, record.

Runs the same on a laptop and inside a SageMaker container::

    python -m backend.train --plan OUT/plan.json          # or: python backend/train.py --plan ...

``plan.json`` is a ``planner.plan.Plan`` (checked by ``Plan.from_json``: one-line errors): the job,
the estimate, the machine and strategy, and the run settings (model, dataset, output_dir, steps or
epochs, learning rate, save interval, experiment); flags override the settings. How each mode
loads, wraps and trains is its recipe (backend/recipes/: qlora, lora, full, prompt tuning,
fsdp-qlora); the steps ``train`` names are shared, each a short function below it (what they
share is one ``Run``). The data is checked by ``backend.data.preflight`` before torch loads and read
for the trainer by ``datasets``. Training is TRL's SFTTrainer; rerunning with the same output
folder resumes from the last complete checkpoint. On SageMaker the only hyperparameter is
``--plan plan.json``: the plan carries every run setting.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (SageMaker runs source_dir/backend/train.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import checkpoints, lifeline, run_identity, run_record, runlock  # noqa: E402
from backend.data import TrainingData, count_tokens, hf_datasets, no_survivors, preflight  # noqa: E402
from backend.recipes import Recipe, recipe_for  # noqa: E402
from planner.errors import PlannerError  # noqa: E402
from planner.safe_io import mark_output, read_text  # noqa: E402
from planner.plan import Plan, RunSettings  # noqa: E402

OPTIM = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "paged-adamw-8bit": "paged_adamw_8bit", "sgd": "sgd"}


# -- the recipe, top to bottom -------------------------------------------------------------------
def train(plan: Plan, *, restart: bool = False) -> dict[str, Any]:
    """Run the job the plan describes; return the final run record (also in OUT/run.json).

    Under torchrun/accelerate every process runs this; only rank 0 writes files and tracks.
    """
    s = plan.training
    out, main_process = open_folder(plan)
    data = preflight(s.dataset, s.eval_dataset, s.eval_fraction, seed=s.seed)  # before anything heavy
    run = Run(plan, recipe_for(plan.job, plan.strategy), out, main_process, describe_device())
    resume = resume_point(run, data, restart=restart)
    run.tracker = start_tracking(s, out, plan, run.record) if main_process else None
    tokenizer, model = load_model(run)
    count_data_tokens(run.record, data, tokenizer)
    trainer = make_trainer(run, data, model, tokenizer)
    fit(run, trainer, resume, has_eval=data.eval is not None)
    return save(run, trainer, tokenizer, model)


# -- the steps ----------------------------------------------------------------------------------
def open_folder(plan: Plan) -> tuple[Path, bool]:
    """The output folder (made) and whether this process is rank 0, the one that writes; rank 0
    keeps the plan it ran beside the outputs."""
    out = Path(plan.training.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process:  # launched from --emit-config files too: the folder is checked here, not only by the CLI
        run_record.check_folder(out, "the plan's training.output_dir")
    out.mkdir(parents=True, exist_ok=True)
    if main_process:
        mark_output(out, run_record.KIND)
        (out / "plan.json").write_text(plan.to_json())
    return out, main_process


@dataclass
class Run:
    """What the steps share: the plan and its recipe, the folder, the device, the run record (and the
    losses earlier attempts recorded, which the Trainer's restored history lacks), the tracker."""

    plan: Plan
    recipe: Recipe
    out: Path
    main: bool
    device: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)
    earlier: dict[str, list] = field(default_factory=dict)
    tracker: Any = None

    @property
    def checkpoints(self) -> Path:
        s = self.plan.training
        return Path(s.checkpoint_dir) if s.checkpoint_dir else self.out / "checkpoints"

    @property
    def model_name(self) -> str:
        return model_to_load(self.plan.training.model, self.plan)

    def write(self) -> None:
        if self.main:
            run_record.write(self.out, self.record)

    def update_losses(self, state) -> None:
        """Step and losses from the Trainer's log history, appended to the earlier attempts'."""
        self.record.update(global_step=state.global_step, train_loss=run_record.merged(
            self.earlier.get("loss"), run_record.losses(state.log_history, "loss")))
        if self.record.get("eval_loss") is not None:
            self.record["eval_loss"] = run_record.merged(self.earlier.get("eval_loss"),
                                                         run_record.losses(state.log_history, "eval_loss"))

    def finish(self) -> None:
        """The last write of run.json and the end of the MLflow run, completed or failed."""
        self.write()
        if self.tracker is not None:
            self.tracker.finish(self.plan.to_dict(), self.record, self.record["status"])


def resume_point(run: Run, data: TrainingData, *, restart: bool) -> Path | None:
    """The checkpoint to resume from; starts the run record (issue 13: the same identity or a
    refusal, damaged checkpoints set aside, the history only ever appended)."""
    plan, s, ckpt = run.plan, run.plan.training, run.checkpoints
    ident = run_identity.identity(plan.job.to_dict(), model=s.model,
                                  learning_rate=s.learning_rate or run.recipe.learning_rate,
                                  seed=s.seed, eval_fraction=s.eval_fraction, data=data.to_dict())
    set_aside: list[str] = []
    if restart and run.main:
        set_aside = checkpoints.set_aside_all(ckpt, "restart")
        if (run.out / run_record.FILE).exists():
            set_aside.append(str(checkpoints.set_aside(run.out / run_record.FILE, "restart")))
    try:
        previous = run_record.load(run.out) or {}
    except run_record.DamagedRecord as exc:
        raise PlannerError(run_record.damaged_refusal(run.out, str(exc))) from None
    changed = run_identity.changes(previous.get("identity"), ident)
    if changed:
        raise PlannerError(run_identity.refusal(str(run.out), changed))
    discarded = checkpoints.discard_incomplete(ckpt) if run.main else []
    resume, damaged = checkpoints.pick_resume(ckpt, move=run.main)
    run.earlier = {"loss": previous.get("train_loss") or [], "eval_loss": previous.get("eval_loss") or []}
    run.record = {
        "status": "running", "started": run_record.now(), "finished": None,
        "global_step": previous.get("global_step", 0), "identity": ident,
        "train_loss": run.earlier["loss"], "eval_loss": run.earlier["eval_loss"] if data.eval else None,
        "set_aside_checkpoints": [*previous.get("set_aside_checkpoints", []), *damaged],
        "predicted_peak_allocated_bytes": plan.memory.get("peak_allocated_bytes"),
        "measured_peak_allocated_bytes": None, "device": run.device,
        # the strategy launched and the per-GPU figure pricing fitted for it (one GPU: the plan's total)
        "strategy": plan.strategy.value,
        # the allocator policy the plan modelled and what this process really runs with (issue 10)
        "allocator": {"policy": plan.memory.get("allocator", "caching"),
                      "PYTORCH_CUDA_ALLOC_CONF": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")},
        "predicted_per_gpu_bytes": (plan.distributed or {}).get("per_gpu_bytes", plan.memory.get("total_bytes")),
        "resumed_from": [*previous.get("resumed_from", []), *([str(resume)] if resume else [])],
        "discarded_checkpoints": [*previous.get("discarded_checkpoints", []), *map(str, discarded)],
        "data": data.to_dict(), "mlflow": previous.get("mlflow"), "adapter": None, "notes": [],
        "plan": plan.to_dict(),
    }
    if restart and set_aside:
        run.record["notes"].append(f"--restart: moved {len(set_aside)} checkpoint(s)/record(s) aside, not deleted")
    if resume is None and previous.get("status") == "running":
        run.record["notes"].append("a previous run left no complete checkpoint: started from step 0")
    run.write()
    return resume


def load_model(run: Run):
    """The tokenizer and the model as the recipe loads and wraps it (seeded: LoRA and virtual-token
    init draw from the RNG, so the same seed gives the same run)."""
    from transformers import set_seed

    job = run.plan.job
    tokenizer = load_tokenizer(run.model_name)
    set_seed(run.plan.training.seed)
    model = run.recipe.load(run.model_name, job, compute_dtype(job, run.device), run.device,
                            dict(run.plan.distributed or {}))
    return tokenizer, run.recipe.wrap(model, job)


def count_data_tokens(record: dict[str, Any], data: TrainingData, tokenizer) -> None:
    """Exact token counts with the model's tokenizer, into the record (the plan estimated them)."""
    record["data"]["train"]["tokens"] = count_tokens(data.train, tokenizer)
    if data.eval:
        record["data"]["eval"]["tokens"] = count_tokens(data.eval, tokenizer)


def make_trainer(run: Run, data: TrainingData, model, tokenizer):
    """TRL's SFTTrainer on the data as ``datasets`` reads it (split as the preflight split it)."""
    from trl import SFTTrainer

    train_ds, eval_ds = hf_datasets(data)
    callbacks = [checkpoints.marker_callback(), record_callback(run)]
    if run.tracker is not None:
        callbacks.append(run.tracker.callback())
    args = sft_config(run.plan.training, run.recipe, run.plan.job, run.checkpoints,
                      compute_dtype(run.plan.job, run.device), run.device, has_eval=eval_ds is not None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tokenizer, callbacks=callbacks)
    trainer.add_callback(checkpoints.keep_trained_dtypes(trainer.model))  # QLoRA resume == uninterrupted
    check_survivors(run, len(train_ds), len(trainer.train_dataset))
    return trainer


def check_survivors(run: Run, given: int, kept: int) -> None:
    """TRL truncates at --seq-len and drops examples with no trained token left (a prompt that fills
    the length): refuse when none survive (else the Trainer dies on num_samples=0), note the dropped."""
    seq_len = run.plan.job.seq_len
    if kept == 0:
        raise PlannerError(no_survivors(given, seq_len))
    if kept < given:
        note = (f"{given - kept} of {given} training records dropped: their prompt fills --seq-len {seq_len}, "
                "leaving no trained token (TRL's truncation)")
        run.record.setdefault("notes", []).append(note)
        print(f"note: {note}", file=sys.stderr)


def fit(run: Run, trainer, resume: Path | None, *, has_eval: bool) -> None:
    """Train (from the last complete checkpoint), then a final eval; a failure is recorded and
    tracked before it propagates."""
    import torch

    on_gpu = run.device["type"] == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    status = "failed"
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if has_eval:
            trainer.evaluate()
        status = "completed"
    finally:
        run.update_losses(trainer.state)
        run.record.update(status=status, finished=run_record.now())
        if on_gpu:
            run.record["measured_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        if status != "completed":
            run.finish()


def save(run: Run, trainer, tokenizer, model) -> dict[str, Any]:
    """Save the adapter (or the full model) and the tokenizer, register the adapter, record, track."""
    trainer.save_model(str(run.out))
    if not run.main:
        return run.record
    tokenizer.save_pretrained(str(run.out))
    run.record["artifacts"] = run.recipe.artifacts
    run.record["base_model"] = base_model_info(run.model_name, model)
    if run.record["artifacts"] == "adapter" and run.plan.training.register:
        from backend.store import register_run
        run.record["adapter"] = register_run(run.out, run.record, name=run.plan.training.adapter_name).name
    run.finish()
    return run.record


def model_to_load(name: str, plan: Plan) -> str:
    """A local folder or Hub id as given; a planner alias (llama3-8b) becomes the plan's Hub id."""
    hf_id = plan.hf_id
    if Path(name).expanduser().exists() or "/" in name or not hf_id:
        return name
    return hf_id


def describe_device() -> dict[str, Any]:
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"type": "cuda", "name": props.name, "total_memory_bytes": int(props.total_memory),
                "bf16": bool(torch.cuda.is_bf16_supported())}
    if int(os.environ.get("RANK", "0")) == 0:
        print("note: no CUDA GPU: training on the CPU (slow); measured memory will be null", file=sys.stderr)
    return {"type": "cpu", "name": "cpu", "total_memory_bytes": None, "bf16": False}


def compute_dtype(job, device: dict[str, Any]):
    """bf16 where the GPU has it (the plan's default), fp16 on older GPUs, fp32 on the CPU."""
    import torch

    if device["type"] != "cuda":
        return torch.float32
    if job.compute_dtype == "bf16" and device["bf16"]:
        return torch.bfloat16
    return torch.float32 if job.compute_dtype == "fp32" else torch.float16


def load_tokenizer(model_name: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model_name)
    except (OSError, ValueError) as exc:
        raise PlannerError(f"cannot load the tokenizer of '{model_name}' ({str(exc).splitlines()[0]}); "
                           "pass a model folder with tokenizer files or a Hub id (online)") from None
    if tok.pad_token is None:  # Llama-style tokenizers ship without one
        tok.pad_token = tok.eos_token
    return tok


def sft_config(s: RunSettings, recipe: Recipe, job, ckpt_dir: Path, compute_dtype, device: dict[str, Any], *,
               has_eval: bool):
    import torch
    from trl import SFTConfig

    on_gpu = device["type"] == "cuda"
    optim = OPTIM[job.optimizer]
    if not on_gpu and optim != "sgd":
        optim = "adamw_torch"  # bitsandbytes' 8-bit and paged optimizers need a GPU
    elif on_gpu and optim == "adamw_torch":
        optim = "adamw_torch_fused"
    # Mixed precision (autocast) when the GPU computes in half and the recipe trains fp32 weights or adapters.
    mixed = on_gpu and compute_dtype != torch.float32 and recipe.autocast(job)
    gc = bool(job.gradient_checkpointing)
    return SFTConfig(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=job.batch_size,
        per_device_eval_batch_size=job.batch_size,
        max_length=job.seq_len,
        learning_rate=s.learning_rate or recipe.learning_rate,
        num_train_epochs=s.epochs,
        max_steps=s.max_steps or -1,
        optim=optim,
        activation_checkpointing=gc,
        activation_checkpointing_kwargs={"use_reentrant": False} if gc else None,
        bf16=mixed and compute_dtype == torch.bfloat16,
        fp16=mixed and compute_dtype == torch.float16,
        use_cpu=not on_gpu,
        save_strategy="steps",
        save_steps=s.save_steps,
        save_total_limit=s.save_total_limit,
        logging_steps=s.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=s.save_steps if has_eval else None,
        report_to="none",  # MLflow is driven by backend.tracking, one run across resumes
        seed=s.seed,
        data_seed=s.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )


def record_callback(run: Run):
    """Keep run.json current at every log, so a crash still leaves the losses so far."""
    from transformers import TrainerCallback

    class RunRecord(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:  # always log the last step's loss
                control.should_log = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                run.update_losses(state)
                run.write()
            return control

    return RunRecord()


def start_tracking(s: RunSettings, out: Path, plan: Plan, record: dict[str, Any]):
    """Start (or, after a crash, continue) the MLflow run; None when tracking is off or missing."""
    if not s.track:
        return None
    from backend.tracking import DEFAULT_EXPERIMENT, Tracker, default_tracking_uri, mask, mlflow_available

    if not mlflow_available():
        print("warning: mlflow is not installed: no experiment tracking (pip install '.[train]')", file=sys.stderr)
        return None
    prev = record.get("mlflow") or {}
    uri = default_tracking_uri(out)
    experiment = s.experiment or DEFAULT_EXPERIMENT
    same = prev.get("tracking_uri") == mask(uri) and prev.get("experiment") == experiment
    tracker = Tracker(uri, experiment, run_id=prev.get("run_id") if same else None)
    params = {"job": plan.job.to_dict(), "training": s.to_dict(),
              "predicted_peak_allocated_bytes": record["predicted_peak_allocated_bytes"]}
    if tracker.start(out, run_name=out.name, params=params) is None:
        return None  # one warning was printed; the run goes on untracked (issue 13)
    record["mlflow"] = {"tracking_uri": mask(uri), "experiment": experiment, "run_id": tracker.run_id}
    run_record.write(out, record)
    return tracker


def base_model_info(model_name: str, model) -> dict[str, Any]:
    """The base model and the revision it was loaded at (the Hub commit, or a local config hash)."""
    import hashlib

    base = getattr(model, "get_base_model", lambda: model)()
    revision = getattr(base.config, "_commit_hash", None)
    config = Path(model_name) / "config.json"
    if revision is None and config.is_file():
        revision = "local-sha256:" + hashlib.sha256(config.read_bytes()).hexdigest()[:16]
    return {"name": model_name, "revision": revision}


# -- command line -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m backend.train", description=__doc__.split("\n")[0])
    p.add_argument("--plan", required=True, help="plan.json written by `plan MODEL ... --execute`")
    p.add_argument("--model", help="override training.model (Hub id or local folder)")
    p.add_argument("--dataset", default=os.environ.get("SM_CHANNEL_TRAIN"), help="data file or folder")
    p.add_argument("--eval-dataset", default=os.environ.get("SM_CHANNEL_EVAL"))
    p.add_argument("--eval-fraction", type=float)
    p.add_argument("--output-dir")
    p.add_argument("--checkpoint-dir")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--save-steps", type=int)
    p.add_argument("--logging-steps", type=int)
    p.add_argument("--experiment")
    p.add_argument("--adapter-name")
    p.add_argument("--no-register", dest="register", action="store_false", default=None,
                   help="do not add the adapter to the local adapter store")
    p.add_argument("--no-track", dest="track", action="store_false", default=None, help="no MLflow")
    p.add_argument("--restart", action="store_true", help="start over: move the folder's checkpoints and "
                   "run.json aside (not deleted) instead of resuming")
    return p.parse_args(argv)


def read_plan(path: str | os.PathLike[str], **overrides: Any) -> Plan:
    """The checked plan at ``path``, the flags' ``overrides`` applied to its run settings."""
    text = read_text(path, "plan")
    plan = Plan.from_json(text, where=str(path), **overrides)
    if not plan.job.is_training:
        raise PlannerError(f"{path} plans inference; training needs --mode full, lora, qlora or prompt-tuning")
    return plan


def run_owned(plan: Plan, *, restart: bool = False) -> dict[str, Any]:
    """``train`` holding the folder's lock (rank 0); any failure is recorded in run.json as failed."""
    out = Path(plan.training.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return train(plan, restart=restart)
    with runlock.RunLock(out):
        try:
            return train(plan, restart=restart)
        except BaseException as exc:
            run_record.mark_failed(out, exc)
            raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("plan", "restart")}
    lifeline.terminate_on_sigterm()  # issue 13: SIGTERM (e.g. the parent died) records `failed`
    lifeline.watch_parent()
    try:
        plan = read_plan(args.plan, **overrides)
        record = run_owned(plan, restart=args.restart)
    except PlannerError as exc:
        if os.environ.get("PLAN_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a fault in training: recorded in run.json, one line here
        if os.environ.get("PLAN_DEBUG"):
            raise
        print(f"error: training failed: {run_record.failure_reason(exc)} (PLAN_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1
    last = record["train_loss"][-1]["loss"] if record["train_loss"] else None
    print(f"done: {record['global_step']} steps, last train loss {last}, output in {plan.training.output_dir}"
          + (f", adapter '{record['adapter']}' stored" if record.get("adapter") else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
