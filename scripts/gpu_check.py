#!/usr/bin/env python3
"""Predicted against measured GPU memory and speed, through the project's own training path.

On one CUDA GPU with no internet: builds Llama-3.2-1B and Llama-3-8B from the shipped configs
(planner/models/*.json) with random weights, runs ``backend.train.train`` (the code behind
``plan --execute``) for qlora, lora and full at several sequence lengths, and an inference
prefill, each case in a fresh Python process, and writes for every case one row to
``DIR/gpu_check.jsonl`` -- the job, ``predicted`` (the plan's peak_allocated_bytes,
reserved_bytes, total_bytes, tokens_per_second) and ``measured`` (torch's max_memory_allocated
and max_memory_reserved, this process's device memory from NVML -- CUDA context included --
and tokens per second) -- plus a Markdown table ``DIR/gpu_check.md``. The training cases run
under both allocator policies where fragmentation matters.

The inference prefill is not a backend path: it replicates the calibration procedure
(from_pretrained in bf16 on the GPU, one no_grad forward with use_cache=True, logits_to_keep=1).

Usage:
    python scripts/gpu_check.py --out DIR            # on the GPU machine, < 8 minutes on an H100/H200
    python scripts/gpu_check.py --out DIR --smoke    # CPU, tiny model, < 3 minutes; measured fields null
Needs trl, bitsandbytes and datasets besides torch/transformers/peft/accelerate: see docs/gpu-check.md
for carrying their wheels to an offline machine.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
GIB = 1024**3
STEPS = 3

# (model, mode, seq_len, batch_size, allocators)
GPU_CASES = [
    ("llama3.2-1b", "inference", 2048, 1, ("caching",)),
    ("llama3.2-1b", "inference", 4096, 8, ("caching",)),
    ("llama3.2-1b", "qlora", 1024, 1, ("caching",)),
    ("llama3.2-1b", "qlora", 2048, 4, ("caching", "expandable")),
    ("llama3.2-1b", "lora", 1024, 1, ("caching",)),
    ("llama3.2-1b", "lora", 2048, 4, ("caching", "expandable")),
    ("llama3.2-1b", "full", 512, 2, ("caching",)),
    ("llama3.2-1b", "full", 1024, 4, ("caching", "expandable")),
    ("llama3-8b", "inference", 4096, 1, ("caching",)),
    ("llama3-8b", "qlora", 1024, 1, ("caching",)),
    ("llama3-8b", "qlora", 2048, 2, ("caching", "expandable")),
    ("llama3-8b", "lora", 1024, 1, ("caching",)),
]
SMOKE_CASES = [
    ("tiny", "inference", 64, 1, ("caching",)),
    ("tiny", "lora", 32, 2, ("caching",)),
    ("tiny", "full", 32, 1, ("caching",)),
]


def build_model(name: str, work: Path) -> Path:
    """Random weights from the shipped config (bf16) with the tiny tokenizer; or the tiny test model."""
    from tests.tiny import make_tiny_model, make_tiny_tokenizer

    out = work / name
    if (out / "config.json").exists():
        return out
    if name == "tiny":
        return make_tiny_model(out, hidden=64, layers=2)
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = dict(json.loads((ROOT / "planner" / "models" / f"{name}.json").read_text())["config"])
    config.pop("torch_dtype", None)
    tok = make_tiny_tokenizer()
    cfg = LlamaConfig(**config, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):  # random init on the GPU: seconds instead of minutes for 8B
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    return out


def write_data(path: Path, seq_len: int, records: int) -> Path:
    """Records of random vocabulary words longer than seq_len tokens (the backend truncates them)."""
    from tests.tiny import WORDS, write_jsonl

    rng = random.Random(0)
    words = [w for w in WORDS if w.isalpha()]
    return write_jsonl(path, [{"text": " ".join(rng.choice(words) for _ in range(seq_len + 16))}
                              for _ in range(records)])


def predicted_tokens_per_second(est, device_name: str | None) -> float | None:
    """pricing/timecost.py's time model on the measured card (None when the card or its TFLOPS is unknown)."""
    if not device_name or not est.job.is_training:
        return None
    from planner.errors import PlannerError
    from pricing import timecost
    from pricing.catalog import load_catalog

    cat = load_catalog(user_dir=False)
    try:
        spec = cat.gpu(cat.local_gpu(device_name).spec)
    except PlannerError:
        return None
    tokens = 1_000_000
    hours = timecost.job_hours(est, tokens=tokens, epochs=1.0, gpus=1, machines=1, spec=spec)
    return tokens / (hours * 3600) if hours else None


def _nvml_process_bytes() -> int | None:
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or 0))
        for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if p.pid == os.getpid():
                return int(p.usedGpuMemory) if p.usedGpuMemory is not None else None
        return None
    finally:
        pynvml.nvmlShutdown()


def run_case(case: dict) -> dict:
    """One case in this (fresh) process: plan, run, measure."""
    import torch

    from planner import Job, estimate

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.init()
        free_start = torch.cuda.mem_get_info()[0]
    work = Path(case["work"])
    job = Job(mode=case["mode"], seq_len=case["seq_len"], batch_size=case["batch_size"], allocator=case["allocator"])
    est = estimate(case["model_dir"], job)
    tokens = case["seq_len"] * case["batch_size"] * (STEPS if job.is_training else 1)
    t0 = time.perf_counter()
    if job.is_training:
        from backend.train import train
        from planner.plan import RunSettings, plan_for

        data = write_data(work / "data.jsonl", case["seq_len"], records=case["batch_size"] * STEPS)
        plan = plan_for(est, RunSettings(model=case["model_dir"], dataset=str(data), output_dir=str(work / "run"),
                                         max_steps=STEPS, save_steps=10_000, logging_steps=1, register=False,
                                         track=False))
        record = train(plan)
        device = record["device"]["name"]
        path = "backend.train.train (the --execute path)"
    else:
        from transformers import AutoModelForCausalLM

        dev = "cuda" if cuda else "cpu"
        model = AutoModelForCausalLM.from_pretrained(case["model_dir"], dtype=torch.bfloat16).to(dev).eval()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        ids = torch.randint(0, model.config.vocab_size, (case["batch_size"], case["seq_len"]), device=dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids, use_cache=True, logits_to_keep=1)
        if cuda:
            torch.cuda.synchronize()
        device = torch.cuda.get_device_properties(0).name if cuda else "cpu"
        path = "calibration procedure (from_pretrained bf16, one no_grad prefill)"
    seconds = time.perf_counter() - t0
    mem = est.to_dict()["memory"]
    measured = {"peak_allocated_bytes": None, "reserved_bytes": None, "device_used_bytes": None,
                "nvml_process_bytes": None, "tokens_per_second": None}
    if cuda:
        measured.update(peak_allocated_bytes=int(torch.cuda.max_memory_allocated()),
                        reserved_bytes=int(torch.cuda.max_memory_reserved()),
                        device_used_bytes=int(free_start - torch.cuda.mem_get_info()[0]),
                        nvml_process_bytes=_nvml_process_bytes(), tokens_per_second=tokens / seconds)
    return {"model": case["model"], "job": {k: v for k, v in job.to_dict().items()
                                            if k in ("mode", "precision", "seq_len", "batch_size",
                                                     "gradient_checkpointing", "lora_r", "optimizer", "allocator")},
            "steps": STEPS if job.is_training else None, "path": path, "device": device,
            "torch": torch.__version__,
            "predicted": {"peak_allocated_bytes": mem["peak_allocated_bytes"], "reserved_bytes": mem["reserved_bytes"],
                          "total_bytes": mem["total_bytes"], "cuda_context_bytes": mem["cuda_context_bytes"],
                          "tokens_per_second": predicted_tokens_per_second(est, device if cuda else None)},
            "measured": measured}


def _gib(n) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def _err(p, m) -> str:
    return "-" if p is None or not m else f"{(p - m) / m:+.1%}"


def render_md(rows: list[dict]) -> str:
    lines = ["# GPU check: predicted against measured", "",
             (f"Generated by `python scripts/gpu_check.py` on {rows[0]['device'] if rows else '?'} "
             f"(torch {rows[0]['torch'] if rows else '?'}); {STEPS} training steps per case. GiB."), "",
             ("| model | mode | seq | batch | allocator | peak pred | peak meas | err | reserved pred | reserved meas | err "
             "| total pred | device used | NVML process | tok/s pred | tok/s meas |"),
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        j, p, m = r["job"], r["predicted"], r["measured"]
        tps = lambda v: "-" if v is None else f"{v:,.0f}"
        lines.append(f"| {r['model']} | {j['mode']} | {j['seq_len']} | {j['batch_size']} | {j['allocator']} "
                     f"| {_gib(p['peak_allocated_bytes'])} | {_gib(m['peak_allocated_bytes'])} "
                     f"| {_err(p['peak_allocated_bytes'], m['peak_allocated_bytes'])} "
                     f"| {_gib(p['reserved_bytes'])} | {_gib(m['reserved_bytes'])} | {_err(p['reserved_bytes'], m['reserved_bytes'])} "
                     f"| {_gib(p['total_bytes'])} | {_gib(m['device_used_bytes'])} | {_gib(m['nvml_process_bytes'])} "
                     f"| {tps(p['tokens_per_second'])} | {tps(m['tokens_per_second'])} |")
    lines += ["", ("Device used = free memory at CUDA init minus free memory at the end (the run's own device memory, "
              "no CUDA context); NVML process = the process's whole device memory (context included)."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="folder for gpu_check.jsonl and gpu_check.md")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model: checks the script itself")
    p.add_argument("--workdir", type=Path, help="models and runs (default: a temp folder)")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case (JSON) in this process
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return 0
    if args.out is None:
        p.error("--out DIR is required")
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("error: no CUDA GPU here; run with --smoke for the CPU check of the script", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows: list[dict] = []
    jsonl = args.out / "gpu_check.jsonl"
    jsonl.write_text("")
    for i, (model, mode, seq, batch, allocators) in enumerate(SMOKE_CASES if args.smoke else GPU_CASES):
        model_dir = build_model(model, work / "models")
        for allocator in allocators:
            case = {"model": model, "model_dir": str(model_dir), "mode": mode, "seq_len": seq, "batch_size": batch,
                    "allocator": allocator, "work": str(work / f"case{i}-{allocator}")}
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            if allocator == "expandable":
                env["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], check=False, env=env,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                row = {"model": model, "job": {"mode": mode, "seq_len": seq, "batch_size": batch, "allocator": allocator},
                       "error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
                print(f"case failed: {row}", file=sys.stderr)
            else:
                row = json.loads(res.stdout.strip().splitlines()[-1])
            row["wall_seconds"] = round(time.perf_counter() - t0, 1)
            with jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{model} {mode} seq {seq} batch {batch} {allocator}: {row['wall_seconds']} s", file=sys.stderr)
    (args.out / "gpu_check.md").write_text(render_md([r for r in rows if "error" not in r]))
    print(f"wrote {jsonl} and {args.out / 'gpu_check.md'}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
