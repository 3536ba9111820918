#!/usr/bin/env python3
"""One QLoRA step of a ~1B model through the real entry script: predicted against measured peak memory.

Builds Llama-3.2-1B from its shipped config (planner/models/llama3.2-1b.json) with random bf16
weights, no download, plus the tiny word-level tokenizer (ids stay below the vocabulary), writes
a text data set whose every record fills --seq-len tokens, plans the job with the planner, runs
``backend.train.train`` for --steps steps, and prints the plan's peak_allocated_bytes beside
``torch.cuda.max_memory_allocated()`` from run.json.

Usage (needs a CUDA GPU; ~3 GB of disk for the random weights):
    HF_HUB_OFFLINE=1 python scripts/gpu_qlora_check.py [--seq-len 1024] [--batch-size 1] [--steps 1]
    python scripts/gpu_qlora_check.py --tiny     # CPU smoke test of the script itself (2-layer model)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from planner.breakdown import GIB  # noqa: E402


def build_model(dir: Path, tiny: bool) -> Path:
    """Random-weight Llama-3.2-1B (or a 2-layer miniature) saved with the tiny tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from tests.tiny import make_tiny_model, make_tiny_tokenizer

    if tiny:
        return make_tiny_model(dir, hidden=64, layers=2)
    config = dict(json.loads((ROOT / "planner" / "models" / "llama3.2-1b.json").read_text())["config"])
    config.pop("torch_dtype", None)
    tok = make_tiny_tokenizer()
    model = AutoModelForCausalLM.from_config(LlamaConfig(**config, bos_token_id=tok.bos_token_id,
                                                         eos_token_id=tok.eos_token_id,
                                                         pad_token_id=tok.pad_token_id), dtype=torch.bfloat16)
    model.save_pretrained(dir)
    tok.save_pretrained(dir)
    return dir


def write_data(path: Path, seq_len: int, records: int) -> Path:
    """Text records of random vocabulary words, each longer than seq_len tokens (truncated to it)."""
    from tests.tiny import WORDS, write_jsonl

    rng = random.Random(0)
    words = [w for w in WORDS if w.isalpha()]
    return write_jsonl(path, [{"text": " ".join(rng.choice(words) for _ in range(seq_len + 16))}
                              for _ in range(records)])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--tiny", action="store_true", help="CPU smoke test with a 2-layer model")
    p.add_argument("--workdir", type=Path, help="keep the model and run here (default: a temp folder)")
    args = p.parse_args()

    import torch

    from backend.train import train
    from planner.estimate import estimate
    from planner.plan import RunSettings, plan_for

    if not torch.cuda.is_available() and not args.tiny:
        print("error: no CUDA GPU here; this check measures GPU memory (use --tiny for a CPU smoke test)",
              file=sys.stderr)
        return 2
    work = args.workdir or Path(tempfile.mkdtemp(prefix="qlora-check-"))
    model_dir = build_model(work / "model", args.tiny)
    data = write_data(work / "data.jsonl", args.seq_len, records=args.batch_size * args.steps)
    est = estimate(str(model_dir), mode="qlora", seq_len=args.seq_len, batch_size=args.batch_size,
                   lora_r=args.lora_r, lora_alpha=2 * args.lora_r)
    plan = plan_for(est, RunSettings(model=str(model_dir), dataset=str(data), output_dir=str(work / "run"),
                                     max_steps=args.steps, save_steps=10_000, logging_steps=1, register=False,
                                     track=False))
    record = train(plan)

    predicted = record["predicted_peak_allocated_bytes"]
    measured = record["measured_peak_allocated_bytes"]
    device = record["device"]
    print(f"model      {est.model.name}: {est.params.total:,} params, qlora r={args.lora_r}, "
          f"seq {args.seq_len} x batch {args.batch_size}, {args.steps} step(s), torch {torch.__version__}")
    print(f"device     {device['name']}")
    print(f"predicted  {predicted / GIB:8.3f} GiB  ({predicted:,} B; phase: {est.phase})")
    if measured is None:
        print("measured        n/a  (no GPU: torch.cuda.max_memory_allocated() is unavailable)")
    else:
        print(f"measured   {measured / GIB:8.3f} GiB  ({measured:,} B)")
        print(f"error      {(predicted - measured) / measured:+8.1%}  (predicted - measured) / measured")
    print(json.dumps({"model": est.model.name, "seq_len": args.seq_len, "batch_size": args.batch_size,
                      "steps": args.steps, "device": device["name"], "predicted_peak_allocated_bytes": predicted,
                      "measured_peak_allocated_bytes": measured, "train_loss": record["train_loss"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
