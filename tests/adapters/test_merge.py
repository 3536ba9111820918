"""Merging: the merged model, reloaded from disk as a plain transformers model, gives the same
logits as base + adapter through PEFT; the refusals come before any heavy work."""
from __future__ import annotations

import json

import pytest

from backend.adapter_io import AdapterRef, find_adapter
from backend.merge import merge_adapter
from planner.errors import PlannerError

pytestmark = pytest.mark.slow


def _logits(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def test_merged_model_matches_base_plus_adapter(tiny_base, two_adapters, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref = find_adapter(str(two_adapters["capitals"]), base_model=str(tiny_base))
    result = merge_adapter(ref, tmp_path / "merged", dtype="fp32")
    assert result.max_abs_logit_diff is not None and result.max_abs_logit_diff < 1e-4
    assert {"config.json", "model.safetensors", "tokenizer.json", "plan_merge.json"} <= set(result.files)
    assert not (tmp_path / "merged" / "adapter_config.json").exists()

    tok = AutoTokenizer.from_pretrained(tiny_base)
    ids = torch.tensor([tok("what is the capital of france ? paris . the sky is blue")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    expected = _logits(PeftModel.from_pretrained(base, two_adapters["capitals"]).eval(), ids)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    got = _logits(merged, ids)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), float((got - expected).abs().max())
    # the adapter matters: the merged model is not the base
    assert float((got - _logits(AutoModelForCausalLM.from_pretrained(tiny_base).eval(), ids)).abs().max()) > 0.5
    record = json.loads((tmp_path / "merged" / "plan_merge.json").read_text())
    assert record["dtype"] == "fp32" and record["base_model"] == str(tiny_base)


def test_bf16_merge_is_close_and_saved_in_bf16(tiny_base, two_adapters, tmp_path):
    ref = AdapterRef(path=two_adapters["swapped"], base_model=str(tiny_base))
    result = merge_adapter(ref, tmp_path / "m16", dtype="bf16")
    # bf16 keeps 8 significant bits: the merged weights round, the logits move by ~1% of their scale
    assert 0 < result.max_abs_logit_diff < 0.03 * result.max_abs_logit
    assert json.loads((tmp_path / "m16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_refusals(tiny_base, two_adapters, tmp_path):
    ref = AdapterRef(path=two_adapters["capitals"], base_model=str(tiny_base))
    with pytest.raises(PlannerError, match="bf16 or fp32"):
        merge_adapter(ref, tmp_path / "x", dtype="int4")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(PlannerError, match=r"already holds files \(keep.txt\); nothing there is replaced"):
        merge_adapter(ref, tmp_path / "full")
    # a base saved with a quantization config (as a 4-bit checkpoint would be) is refused
    import shutil
    quant = tmp_path / "quant-base"
    shutil.copytree(tiny_base, quant)
    cfg = json.loads((quant / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (quant / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlannerError, match="bitsandbytes-quantized.*unquantized"):
        merge_adapter(AdapterRef(path=ref.path, base_model=str(quant)), tmp_path / "y")
    # prompt tuning has nothing to merge
    pt = tmp_path / "pt"
    shutil.copytree(ref.path, pt)
    cfg = json.loads((pt / "adapter_config.json").read_text())
    cfg["peft_type"] = "PROMPT_TUNING"
    (pt / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlannerError, match="PROMPT_TUNING adapter has no weights to merge"):
        merge_adapter(AdapterRef(path=pt, base_model=str(tiny_base)), tmp_path / "z")
    assert not any((tmp_path / n).exists() for n in ("x", "y", "z"))


def test_find_adapter_by_store_name_and_by_path(tiny_base, two_adapters, tmp_path):
    from backend.store import AdapterStore

    store = AdapterStore(tmp_path / "store")
    store.register("caps", two_adapters["capitals"], base_model=str(tiny_base))
    ref = find_adapter("caps", store=store)
    assert ref.store_name == "caps" and ref.base_model == str(tiny_base)
    assert (ref.path / "adapter_config.json").is_file()
    by_path = find_adapter(str(two_adapters["capitals"]))  # base from adapter_config.json
    assert by_path.store_name is None and by_path.base_model == str(tiny_base)
    with pytest.raises(PlannerError, match="did you mean 'caps'"):
        find_adapter("cap", store=store)
