"""Merge a LoRA adapter into its base and save a standard Hugging Face model directory.

A merged model runs with zero added latency and needs no PEFT at serving time, but it is one
full-size model per task. The base is loaded unquantized (bf16 or fp32): merging into a 4-bit
base would round the merged weights back to 4 bits and lose most of what the adapter learned
(PEFT warns of the same, https://huggingface.co/docs/peft/developer_guides/lora#merge-lora-weights-into-the-base-model).
A QLoRA adapter is therefore merged into the bf16/fp32 copy of the base it was trained on.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.safe_io import check_output_target, read_json_object

from .adapter_io import AdapterRef, adapter_config, load_with_adapter

MERGE_DTYPES = ("bf16", "fp32")
MERGE_RECORD = "plan_merge.json"
# Adapter types whose weights fold into the base's linear layers (prompt tuning has none to fold).
MERGEABLE = ("LORA", "ADALORA", "IA3", "LOHA", "LOKR", "OFT", "BOFT", "VERA")


@dataclass(frozen=True)
class MergeResult:
    """Where the merged model went and, when checked, how far its logits are from base + adapter."""

    output_dir: Path
    base_model: str
    adapter_path: Path
    dtype: str
    max_abs_logit_diff: float | None
    max_abs_logit: float | None  # the scale the difference is to be read against
    files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"output_dir": str(self.output_dir), "base_model": self.base_model,
                "adapter_path": str(self.adapter_path), "dtype": self.dtype,
                "max_abs_logit_diff": self.max_abs_logit_diff, "max_abs_logit": self.max_abs_logit,
                "files": list(self.files)}


def check_mergeable(ref: AdapterRef, dtype: str, output_dir: Path) -> None:
    """Every reason to refuse, before loading anything large."""
    if dtype not in MERGE_DTYPES:
        raise PlannerError(f"merge dtype must be {' or '.join(MERGE_DTYPES)}, got '{dtype}' "
                           "(merging into a quantized base re-quantizes the adapter)")
    peft_type = str(adapter_config(ref.path).get("peft_type", "LORA")).upper()
    if peft_type not in MERGEABLE:
        raise PlannerError(f"a {peft_type} adapter has no weights to merge into the base; "
                           f"serve it beside the base instead (`plan serve {ref.base_model} --adapter NAME=PATH`)")
    quant = _base_quantization(ref.base_model)
    if quant:
        raise PlannerError(f"base model '{ref.base_model}' is a {quant}-quantized checkpoint; merging into it "
                           "re-quantizes the adapter: pass --base with the unquantized (bf16/fp32) weights")
    check_output_target(output_dir, flag="--output")  # new or empty only (planner/safe_io.py)


def _base_quantization(base_model: str) -> str | None:
    """The quantization method recorded in the base's config.json, if any."""
    path = Path(base_model).expanduser()
    if path.is_dir():
        cfg_file = path / "config.json"
        cfg = read_json_object(cfg_file, "model config") if cfg_file.exists() else {}
    else:
        try:
            from transformers import AutoConfig
            cfg = AutoConfig.from_pretrained(base_model).to_dict()
        except OSError as exc:
            raise PlannerError(f"cannot read the config of base model '{base_model}': "
                               f"{str(exc).splitlines()[0]}") from None
    q = cfg.get("quantization_config")
    if not q:
        return None
    return str(q.get("quant_method") or ("bitsandbytes" if q.get("load_in_4bit") or q.get("load_in_8bit") else "an unknown"))


def _probe_logits(model: Any, vocab_size: int, device: str) -> Any:
    """Logits on a fixed random batch (2 x 16 tokens, seed 0): the same input before and after."""
    import torch

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (2, 16), generator=gen).to(device)
    with torch.inference_mode():
        return model(input_ids=ids).logits.float().cpu()


def merge_adapter(ref: AdapterRef, output_dir: str | Path, *, dtype: str = "bf16", verify: bool = True,
                  device: str = "cpu") -> MergeResult:
    """Load ``ref.base_model`` in ``dtype``, merge the adapter, save model + tokenizer to ``output_dir``.

    With ``verify``, the logits of base+adapter and of the merged model on one fixed probe batch
    are compared and the largest absolute difference is returned with the largest logit
    (fp32: ~1e-6 apart; bf16: the rounding of the merged weights, ~1% of the logit scale).
    """
    output_dir = Path(output_dir).expanduser()
    check_mergeable(ref, dtype, output_dir)
    model, tokenizer = load_with_adapter(ref, dtype, device)
    vocab = model.get_input_embeddings().weight.shape[0]
    before = _probe_logits(model, vocab, device) if verify else None
    merged = model.merge_and_unload()
    diff = float((_probe_logits(merged, vocab, device) - before).abs().max()) if verify else None
    scale = float(before.abs().max()) if verify else None

    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    if any((ref.path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(ref.path)  # the adapter's (it may add a chat template)
    tokenizer.save_pretrained(output_dir)
    record = {"base_model": ref.base_model, "adapter": str(ref.path), "store_name": ref.store_name, "dtype": dtype,
              "max_abs_logit_diff": diff, "max_abs_logit": scale, "merged_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (output_dir / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return MergeResult(output_dir=output_dir, base_model=ref.base_model, adapter_path=ref.path, dtype=dtype,
                       max_abs_logit_diff=diff, max_abs_logit=scale, files=tuple(sorted(p.name for p in output_dir.iterdir())))
