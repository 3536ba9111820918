"""Finding and loading adapters: shared by merge, serve and eval.

An adapter is named either by its adapter-store name or by a directory; its base model comes
from the store record, else from ``base_model_name_or_path`` in adapter_config.json, unless the
caller names one. torch/transformers/peft are imported inside the functions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.safe_io import read_json_object

from .store import AdapterStore, check_adapter_dir

DTYPES = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class AdapterRef:
    """Where an adapter is, which base it belongs on, and its store name when it has one."""

    path: Path
    base_model: str
    store_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "base_model": self.base_model, "store_name": self.store_name}


def adapter_config(path: Path) -> dict[str, Any]:
    """The adapter's adapter_config.json as a dict (PlannerError when missing or malformed)."""
    p = check_adapter_dir(Path(path).expanduser()) / "adapter_config.json"
    return read_json_object(p, "adapter config")


def find_adapter(name_or_path: str, base_model: str | None = None,
                 store: AdapterStore | None = None) -> AdapterRef:
    """Resolve a store name or an adapter directory, and the base model it goes on."""
    p = Path(name_or_path).expanduser()
    store_name = None
    if p.is_dir():
        path, recorded = check_adapter_dir(p).resolve(), None
    else:
        record = (store or AdapterStore()).get(name_or_path)  # did-you-mean error when unknown
        path, recorded, store_name = Path(record.path), record.base_model, record.name
    base = base_model or recorded or adapter_config(path).get("base_model_name_or_path")
    if not base:
        raise PlannerError(f"cannot tell which base model {path} belongs on; pass --base MODEL")
    return AdapterRef(path=path, base_model=str(base), store_name=store_name)


def torch_dtype(name: str, device: str) -> Any:
    """'auto' is bf16 on a GPU and fp32 on the CPU (CPUs run bf16 matmuls slowly)."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if name not in table:
        raise PlannerError(f"unknown dtype '{name}'; choose {', '.join(DTYPES)}")
    return table[name]


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(model: str, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a base model directory or Hub id, unquantized, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    if str(model).startswith((".", "/", "~")) and not Path(model).expanduser().is_dir():
        raise PlannerError(f"no such model directory: {model} (give a folder with config.json, "
                           "tokenizer and weights, or a Hugging Face id)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        net = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(dtype, device))
    except OSError as exc:
        raise PlannerError(f"cannot load base model '{model}': {str(exc).splitlines()[0]}") from None
    return net.to(device).eval(), tokenizer


def load_with_adapter(ref: AdapterRef, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """(PeftModel of base + adapter, tokenizer); an adapter made for another base is a PlannerError."""
    from peft import PeftModel

    base, tokenizer = load_base(ref.base_model, dtype, device)
    try:
        return PeftModel.from_pretrained(base, str(ref.path)).eval(), tokenizer
    except Exception as exc:  # shape mismatch: trained on another base
        raise PlannerError(f"adapter {ref.path} does not fit base '{ref.base_model}': "
                           f"{str(exc).splitlines()[0][:300]}") from None
