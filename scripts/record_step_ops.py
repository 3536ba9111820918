#!/usr/bin/env python3
"""Record the order and lifetime of every tensor allocation of one run, per recipe, on a tiny
Llama on the CPU, and write them as size-symbolic templates to planner/data/step_ops.json.

The planner replays these templates, scaled to the real model's dimensions, through its model
of the CUDA caching allocator (planner/allocator.py). Recording at tiny dimensions keeps every
real op of transformers/PEFT/torch.autograd: the casts, RMSNorm's fp32 copies, the rotary
temporaries, LoRA's dropout and fp32 paths, the log_softmax backward, checkpoint recomputation.

Each tensor size is written as ``coef x unit x tokens`` with unit one of h, i, kv, q, V (the
model's hidden, intermediate, key/value, query and vocabulary widths) or a (heads x seq, for
the attention probabilities of the math kernel); sizes that are not per-token (parameter
gradients, optimizer states) are skipped: the planner allocates them from the parameter shapes.
Dimensions are chosen so every coef x unit is distinct.

Differences from a GPU run, kept on purpose: the CPU SDPA kernel stands in for flash/math (it
saves the same output and log-sum-exp); qlora is recorded through bitsandbytes' CPU
backend, exactly as the calibration procedure loads it; only its dequantized weights, which are
not per-token, are added by the planner.

Usage: python scripts/record_step_ops.py [--check]
"""
from __future__ import annotations

import json
import sys
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "planner" / "data" / "step_ops.json"
H, I, V, HEADS, KV_HEADS, HEAD_DIM, T, L = 96, 352, 1000, 6, 2, 20, 37, 3
UNITS = {"h": H, "i": I, "kv": KV_HEADS * HEAD_DIM, "q": HEADS * HEAD_DIM, "V": V, "a": HEADS * T}
RECIPES = {
    "inference": {"mode": "inference"},
    "lora-ckpt": {"mode": "lora", "ckpt": True},
    "lora": {"mode": "lora", "ckpt": False},
    "qlora-ckpt": {"mode": "qlora", "ckpt": True},
    "qlora": {"mode": "qlora", "ckpt": False},
    "full-ckpt": {"mode": "full", "ckpt": True},
    "full": {"mode": "full", "ckpt": False},
}


def _unit(nbytes: int):
    if nbytes % T:
        return None
    per = nbytes // T
    for name, dim in UNITS.items():
        for coef in (1, 2, 4, 8):
            if per == coef * dim:
                return [coef, name]
    return None


def record(mode: str, ckpt: bool = False) -> dict:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=H, intermediate_size=I, num_hidden_layers=L, num_attention_heads=HEADS,
                      num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, vocab_size=V, tie_word_embeddings=True)
    dtype = torch.float32 if mode == "full" else torch.bfloat16
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    if mode == "qlora":  # the calibration procedure: save, reload in 4 bits, prepare_model_for_kbit_training
        import tempfile

        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            model = AutoModelForCausalLM.from_pretrained(
                tmp, dtype=torch.bfloat16, device_map="cpu",
                quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                       bnb_4bit_use_double_quant=True,
                                                       bnb_4bit_compute_dtype=torch.bfloat16))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=ckpt)
    if mode in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model
        if ckpt and mode == "lora":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
            model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    elif mode == "full" and ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False

    events: list = []
    live: dict[int, int] = {}
    ids = {"n": 0}

    class Rec(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    s = t.untyped_storage()
                    key = s.data_ptr()
                    if key and key not in live and s.nbytes() and not t._is_view():
                        u = _unit(s.nbytes())
                        ids["n"] += 1
                        live[key] = ids["n"]
                        if u:
                            events.append(["+", ids["n"], *u])
                        weakref.finalize(s, lambda k=key: events.append(["-", live.pop(k)]))
            return out

    layers = model.get_decoder().layers if hasattr(model, "get_decoder") else model.base_model.model.model.layers
    seen = set()

    def mark_fwd(idx):
        def pre(_m, _a):
            events.append(["F", idx])

        def post(_m, _a, out):
            events.append(["f", idx])
            o = out[0] if isinstance(out, tuple) else out
            if idx not in seen and o.requires_grad:
                seen.add(idx)
                o.register_hook(lambda g: events.append(["B", idx]))
        return pre, post

    for idx, layer in enumerate(layers):
        pre, post = mark_fwd(idx)
        layer.register_forward_pre_hook(pre)
        layer.register_forward_hook(post)
    ids_in = torch.randint(0, V, (1, T))
    from contextlib import nullcontext

    from torch.nn.attention import SDPBackend, sdpa_kernel
    # On CUDA, fp32 q/k/v with grouped kv heads leave SDPA only its math kernel (activations.recipe)
    kernel = sdpa_kernel([SDPBackend.MATH]) if mode == "qlora" else nullcontext()
    with Rec(), kernel:
        if mode == "inference":
            model.eval()
            with torch.no_grad():
                model(input_ids=ids_in, use_cache=True, logits_to_keep=1)
            events.append(["E"])
        else:
            model.train()
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "full" else torch.autocast("cpu", enabled=False)
            with ctx:
                loss = model(input_ids=ids_in, labels=ids_in).loss
            events.append(["L"])
            loss.backward()
            del loss
            events.append(["E"])
    return {"events": events}


def render() -> str:
    data = {"source": "scripts/record_step_ops.py (tiny Llama on CPU; torch + transformers + peft as installed)",
            "dims": {"tokens": T, "layers": L, **UNITS}, "recipes": {}}
    for name, kw in RECIPES.items():
        data["recipes"][name] = record(**kw)
    return json.dumps(data, separators=(",", ":")) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.exists() else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
