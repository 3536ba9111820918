"""The one training entry script: read the plan, load data, load model, wrap with PEFT, train, save, record.

Runs the same on a laptop and inside a SageMaker container::

    python -m backend.train --plan OUT/plan.json          # or: python backend/train.py --plan ...

``plan.json`` is the planner's estimate (``MemoryEstimate.to_dict()``) plus a ``training`` block
(model, dataset, output_dir, steps or epochs, learning rate, save interval, experiment); flags
override the block. The recipe is the one the memory model assumes (docs/memory-model.md):
QLoRA = 4-bit NF4 weights with double quantization and bf16 compute (fp32 where bf16 is missing)
+ ``prepare_model_for_kbit_training`` + LoRA; LoRA = frozen base in the plan's precision + LoRA;
prompt tuning = frozen base + trainable virtual tokens; full = every weight trained. Training is
TRL's SFTTrainer; rerunning with the same output folder resumes from the last complete checkpoint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (SageMaker runs source_dir/backend/train.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend import checkpoints, lifeline, run_identity, run_record, runlock  # noqa: E402
from backend.data import count_tokens, load_training_data  # noqa: E402
from planner.errors import PlannerError  # noqa: E402

# Learning rates of the common recipes when the plan gives none: QLoRA paper (arXiv:2305.14314)
# 2e-4 for LoRA/QLoRA; 2e-5 for full fine-tuning (Alpaca); prompt tuning 3e-2 (Lester et al. 2021 used 0.3 with Adafactor).
DEFAULT_LR = {"qlora": 2e-4, "lora": 2e-4, "full": 2e-5, "prompt-tuning": 3e-2}
OPTIM = {"adamw": "adamw_torch", "adamw-8bit": "adamw_bnb_8bit", "paged-adamw-8bit": "paged_adamw_8bit", "sgd": "sgd"}


@dataclass(frozen=True)
class Settings:
    """The ``training`` block of plan.json."""

    model: str
    dataset: str
    output_dir: str
    eval_dataset: str | None = None
    eval_fraction: float = 0.0
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float | None = None
    save_steps: int = 100
    logging_steps: int | None = None  # default: every min(10, save_steps) steps, and the last
    save_total_limit: int | None = 2
    experiment: str | None = None
    seed: int = 0
    register: bool = True
    adapter_name: str | None = None
    checkpoint_dir: str | None = None  # default OUTPUT/checkpoints; SageMaker: /opt/ml/checkpoints
    track: bool = True

    @classmethod
    def from_plan(cls, plan: dict[str, Any], **overrides: Any) -> "Settings":
        block = dict(plan.get("training") or {})
        block.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise PlannerError(f"plan.json 'training' has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for req in ("model", "dataset", "output_dir"):
            if not block.get(req):
                raise PlannerError(f"no {req.replace('_', ' ')} given: set training.{req} in the plan or pass --{req.replace('_', '-')}")
        s = cls(**block)
        if s.max_steps is not None and s.max_steps <= 0:
            raise PlannerError(f"--max-steps must be positive, got {s.max_steps}")
        if s.logging_steps is None:
            s = replace(s, logging_steps=min(10, s.save_steps))
        if s.save_steps <= 0 or s.logging_steps <= 0:
            raise PlannerError("--save-steps and logging steps must be positive")
        if s.learning_rate is not None and s.learning_rate <= 0:
            raise PlannerError(f"--learning-rate must be positive, got {s.learning_rate}")
        return s


# -- the recipe, top to bottom -------------------------------------------------------------------
def train(plan: dict[str, Any], s: Settings, *, restart: bool = False) -> dict[str, Any]:
    """Run the job the plan describes; return the final run record (also in OUT/run.json).

    Under torchrun/accelerate every process runs this; only rank 0 writes files and tracks.
    """
    import torch

    job = plan["job"]
    out = Path(s.output_dir)
    ckpt_dir = Path(s.checkpoint_dir) if s.checkpoint_dir else out / "checkpoints"
    main_process = int(os.environ.get("RANK", "0")) == 0
    write = run_record.write if main_process else (lambda *a: None)
    out.mkdir(parents=True, exist_ok=True)
    if main_process:
        (out / "plan.json").write_text(json.dumps({**plan, "training": asdict(s)}, indent=2) + "\n")

    # 1. data (checked before anything heavy happens)
    data = load_training_data(s.dataset, s.eval_dataset, s.eval_fraction, seed=s.seed)
    device = describe_device(torch)
    if device["type"] == "cpu" and main_process:
        print("note: no CUDA GPU: training on the CPU (slow); measured memory will be null", file=sys.stderr)

    # 2. resume point and run record (issue 13: same identity, damaged checkpoints set aside, history kept)
    ident = run_identity.identity(job, model=s.model, learning_rate=s.learning_rate or DEFAULT_LR[job["mode"]],
                                  seed=s.seed, eval_fraction=s.eval_fraction, data=data.to_dict())
    set_aside: list[str] = []
    if restart and main_process:
        set_aside = checkpoints.set_aside_all(ckpt_dir, "restart")
        if (out / run_record.FILE).exists():
            set_aside.append(str(checkpoints.set_aside(out / run_record.FILE, "restart")))
    previous = run_record.read(out) or {}
    changed = run_identity.changes(previous.get("identity"), ident)
    if changed:
        raise PlannerError(run_identity.refusal(str(out), changed))
    discarded = checkpoints.discard_incomplete(ckpt_dir) if main_process else []
    resume, damaged = checkpoints.pick_resume(ckpt_dir, move=main_process)
    earlier = {"loss": previous.get("train_loss") or [], "eval_loss": previous.get("eval_loss") or []}
    record = {
        "status": "running", "started": run_record.now(), "finished": None,
        "global_step": previous.get("global_step", 0), "identity": ident,
        "train_loss": earlier["loss"], "eval_loss": earlier["eval_loss"] if data.eval else None,
        "set_aside_checkpoints": [*previous.get("set_aside_checkpoints", []), *damaged],
        "predicted_peak_allocated_bytes": plan.get("memory", {}).get("peak_allocated_bytes"),
        "measured_peak_allocated_bytes": None, "device": device,
        # the strategy launched and the per-GPU figure pricing fitted for it (one GPU: the plan's total)
        "strategy": (plan.get("distributed") or {}).get("strategy", "single-gpu"),
        "predicted_per_gpu_bytes": (plan.get("distributed") or {}).get("per_gpu_bytes",
                                                                       plan.get("memory", {}).get("total_bytes")),
        "resumed_from": [*previous.get("resumed_from", []), *([str(resume)] if resume else [])],
        "discarded_checkpoints": [*previous.get("discarded_checkpoints", []), *map(str, discarded)],
        "data": data.to_dict(), "mlflow": previous.get("mlflow"), "adapter": None, "notes": [],
        "plan": plan,
    }
    if restart and set_aside:
        record["notes"].append(f"--restart: moved {len(set_aside)} checkpoint(s)/record(s) aside, not deleted")
    if resume is None and previous.get("status") == "running":
        record["notes"].append("a previous run left no complete checkpoint: started from step 0")
    write(out, record)
    tracker = start_tracking(s, out, plan, record) if main_process else None

    # 3. model and tokenizer
    s = replace(s, model=model_to_load(s.model, plan))
    tokenizer = load_tokenizer(s.model)
    record["data"]["train"]["tokens"] = count_tokens(data.train, tokenizer)
    if data.eval:
        record["data"]["eval"]["tokens"] = count_tokens(data.eval, tokenizer)
    compute_dtype = pick_compute_dtype(torch, job, device)
    from transformers import set_seed
    set_seed(s.seed)  # LoRA / virtual-token init draws from the RNG: same seed, same run
    model = load_model(s.model, job, compute_dtype, device, plan.get("distributed") or {})
    model = wrap_peft(model, job)

    # 4. trainer
    from datasets import Dataset
    from trl import SFTTrainer

    callbacks = [checkpoints.marker_callback(), record_callback(out, record, write, earlier)]
    if tracker is not None:
        callbacks.append(tracker.callback())
    trainer = SFTTrainer(
        model=model,
        args=sft_config(s, job, ckpt_dir, compute_dtype, device, has_eval=data.eval is not None),
        train_dataset=Dataset.from_list(data.train.rows()),
        eval_dataset=Dataset.from_list(data.eval.rows()) if data.eval else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.add_callback(checkpoints.keep_trained_dtypes(trainer.model))  # QLoRA resume == uninterrupted
    if device["type"] == "cuda":
        torch.cuda.reset_peak_memory_stats()

    # 5. train (resuming from the last complete checkpoint), then a final eval
    status = "failed"
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if data.eval:
            trainer.evaluate()
        status = "completed"
    finally:
        record.update(status=status, finished=run_record.now(), global_step=trainer.state.global_step,
                      train_loss=run_record.merged(earlier["loss"], run_record.losses(trainer.state.log_history, "loss")),
                      eval_loss=run_record.merged(earlier["eval_loss"], run_record.losses(
                          trainer.state.log_history, "eval_loss")) if data.eval else None)
        if device["type"] == "cuda":
            record["measured_peak_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
        if status != "completed":
            write(out, record)
            if tracker is not None:
                tracker.finish(plan, record, status)

    # 6. save the adapter (or the full model) and the tokenizer, register, record
    trainer.save_model(str(out))
    if not main_process:
        return record
    tokenizer.save_pretrained(str(out))
    record["artifacts"] = "model" if job["mode"] == "full" else "adapter"
    record["base_model"] = base_model_info(s.model, model)
    if record["artifacts"] == "adapter" and s.register:
        from backend.store import register_run
        record["adapter"] = register_run(out, record, name=s.adapter_name).name
    write(out, record)
    if tracker is not None:
        tracker.finish(plan, record, status)
    return record


# -- the steps ----------------------------------------------------------------------------------
def model_to_load(name: str, plan: dict[str, Any]) -> str:
    """A local folder or Hub id as given; a planner alias (llama3-8b) becomes the plan's Hub id."""
    hf_id = (plan.get("model") or {}).get("hf_id")
    if Path(name).expanduser().exists() or "/" in name or not hf_id:
        return name
    return hf_id


def describe_device(torch) -> dict[str, Any]:
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return {"type": "cuda", "name": props.name, "total_memory_bytes": int(props.total_memory),
                "bf16": bool(torch.cuda.is_bf16_supported())}
    return {"type": "cpu", "name": "cpu", "total_memory_bytes": None, "bf16": False}


def pick_compute_dtype(torch, job: dict[str, Any], device: dict[str, Any]):
    """bf16 where the GPU has it (the plan's default), fp16 on older GPUs, fp32 on the CPU."""
    if device["type"] != "cuda":
        return torch.float32
    if job.get("compute_dtype", "bf16") == "bf16" and device["bf16"]:
        return torch.bfloat16
    return torch.float32 if job.get("compute_dtype") == "fp32" else torch.float16


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


def load_model(model_name: str, job: dict[str, Any], compute_dtype, device: dict[str, Any],
               distributed: dict[str, Any]):
    """The base model in the plan's precision; 4-bit NF4 (or 8-bit) for QLoRA.

    ``distributed`` is the plan's block from backend/distributed: FSDP-QLoRA stores the 4-bit
    weights in the compute dtype (``bnb_4bit_quant_storage``) and lets FSDP place them.
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict[str, Any] = {"attn_implementation": job.get("attention", "sdpa")}
    precision = job["precision"]
    if job["mode"] == "qlora":
        storage = distributed.get("bnb_4bit_quant_storage")
        if precision == "int4":
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=compute_dtype,
                **({"bnb_4bit_quant_storage": getattr(torch, storage)} if storage else {}))
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        kwargs["dtype"] = getattr(torch, storage) if storage else compute_dtype
    else:
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        # Off a GPU half-precision weights only slow things down: load them in fp32.
        kwargs["dtype"] = dtypes[precision] if device["type"] == "cuda" else torch.float32
    sharded = distributed.get("strategy") in ("fsdp", "fsdp-qlora", "zero3") or \
        os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    if device["type"] == "cuda" and not sharded:  # one whole copy per process (DDP) or the only GPU
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_name, **kwargs)
    except OSError as exc:
        raise PlannerError(f"cannot load model '{model_name}' ({str(exc).splitlines()[0]}); pass a folder "
                           "with config.json and weights, or a Hub id when online") from None
    model.config.use_cache = False  # no KV cache while training
    if job["mode"] == "qlora":
        from peft import prepare_model_for_kbit_training
        # Casts norms/embeddings to fp32 and freezes the base; the Trainer turns on checkpointing.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def wrap_peft(model, job: dict[str, Any]):
    """LoRA for lora/qlora, virtual tokens for prompt tuning, the bare model for full."""
    mode = job["mode"]
    if mode == "full":
        return model
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    if mode in ("lora", "qlora"):
        targets = job.get("lora_targets") or "all-linear"
        if targets.strip() not in ("all-linear", "all_linear", "all"):
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        else:
            targets = "all-linear"
        config = LoraConfig(r=job["lora_r"], lora_alpha=job["lora_alpha"], lora_dropout=job["lora_dropout"],
                            target_modules=targets, task_type="CAUSAL_LM")
    else:
        config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=job["num_virtual_tokens"])
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # e.g. target modules not found in the model
        raise PlannerError(f"cannot apply {mode} to this model: {str(exc).splitlines()[0]}") from None


def sft_config(s: Settings, job: dict[str, Any], ckpt_dir: Path, compute_dtype, device: dict[str, Any], *,
               has_eval: bool):
    import torch
    from trl import SFTConfig

    on_gpu = device["type"] == "cuda"
    optim = OPTIM[job.get("optimizer", "adamw")]
    if not on_gpu and optim != "sgd":
        optim = "adamw_torch"  # bitsandbytes' 8-bit and paged optimizers need a GPU
    elif on_gpu and optim == "adamw_torch":
        optim = "adamw_torch_fused"
    # Mixed precision (autocast) when weights or adapters are fp32 and the GPU computes in half.
    half_weights = job["mode"] != "qlora" and job["precision"] in ("bf16", "fp16")
    mixed = on_gpu and compute_dtype != torch.float32 and not (job["mode"] == "full" and half_weights)
    gc = bool(job["gradient_checkpointing"])
    return SFTConfig(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=job["batch_size"],
        per_device_eval_batch_size=job["batch_size"],
        max_length=job["seq_len"],
        learning_rate=s.learning_rate or DEFAULT_LR[job["mode"]],
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


def record_callback(out: Path, record: dict[str, Any], write, earlier: dict[str, list] | None = None):
    """Keep run.json current at every log, so a crash still leaves the losses so far."""
    from transformers import TrainerCallback

    class RunRecord(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:  # always log the last step's loss
                control.should_log = True
            return control

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                before = earlier or {}
                record.update(global_step=state.global_step,
                              train_loss=run_record.merged(before.get("loss"), run_record.losses(state.log_history, "loss")))
                if record.get("eval_loss") is not None:
                    record["eval_loss"] = run_record.merged(before.get("eval_loss"),
                                                            run_record.losses(state.log_history, "eval_loss"))
                write(out, record)
            return control

    return RunRecord()


def start_tracking(s: Settings, out: Path, plan: dict[str, Any], record: dict[str, Any]):
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
    params = {"job": plan.get("job", {}), "training": asdict(s),
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


def read_plan(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        plan = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PlannerError(f"cannot read plan {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(plan, dict) or "job" not in plan:
        raise PlannerError(f"{path} is not a plan (no 'job'); write one with `plan MODEL --mode M --json`")
    if plan["job"].get("mode") == "inference":
        raise PlannerError(f"{path} plans inference; training needs --mode full, lora, qlora or prompt-tuning")
    return plan


def run_owned(plan: dict[str, Any], s: Settings, *, restart: bool = False) -> dict[str, Any]:
    """``train`` holding the folder's lock (rank 0); any failure is recorded in run.json as failed."""
    out = Path(s.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return train(plan, s, restart=restart)
    with runlock.RunLock(out):
        try:
            return train(plan, s, restart=restart)
        except BaseException as exc:
            run_record.mark_failed(out, exc)
            raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("plan", "restart")}
    lifeline.terminate_on_sigterm()  # issue 13: SIGTERM (e.g. the parent died) records `failed`
    lifeline.watch_parent()
    try:
        plan = read_plan(args.plan)
        settings = Settings.from_plan(plan, **overrides)
        record = run_owned(plan, settings, restart=args.restart)
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
    print(f"done: {record['global_step']} steps, last train loss {last}, output in {settings.output_dir}"
          + (f", adapter '{record['adapter']}' stored" if record.get("adapter") else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
