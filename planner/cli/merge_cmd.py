"""``plan adapters merge NAME``: fold an adapter into its base and save a plain Hugging Face model.

Registered on adapters_cmd's ``adapters`` group; planner/cli/__init__.py imports both.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .adapters_cmd import adapters_app, store
from .output import console, info


@adapters_app.command("merge")
def merge(
    name: str = typer.Argument(..., help="Adapter: a name from `plan adapters list`, or an adapter directory."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to save the merged model (default ./NAME-merged)."),
    base: Optional[str] = typer.Option(None, "--base", help="Unquantized base weights (default: the adapter's recorded base)."),
    dtype: str = typer.Option("bf16", "--dtype", help="bf16 | fp32: precision of the base loaded for the merge."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Compare logits before and after merging."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Merge an adapter into an unquantized copy of its base (never a 4-bit one) and save it."""
    from .validate import require_extra
    require_extra("plan adapters merge", "train", "torch", "transformers", "peft")
    from backend.adapter_io import find_adapter
    from backend.merge import check_mergeable, merge_adapter

    ref = find_adapter(name, base_model=base, store=store())
    out = output or Path(f"{Path(name).name}-merged")
    check_mergeable(ref, dtype, out)  # refuse before saying anything
    info(f"merging {ref.path} into {ref.base_model} ({dtype}) ...")
    result = merge_adapter(ref, out, dtype=dtype, verify=verify)
    if ref.store_name:
        store().update_metadata(ref.store_name, merged={"path": str(result.output_dir.resolve()), "dtype": dtype,
                                                        "max_abs_logit_diff": result.max_abs_logit_diff})
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    c = console()
    c.print(f"merged model saved to {result.output_dir}")
    if result.max_abs_logit_diff is not None:
        c.print(f"check: max |logit difference| {result.max_abs_logit_diff:.3g} "
                f"(largest |logit| {result.max_abs_logit:.3g}) between base+adapter and the merged model")
    c.print(f"load it with AutoModelForCausalLM.from_pretrained('{result.output_dir}'), or serve it: "
            f"vllm serve {result.output_dir}")
