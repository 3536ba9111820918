"""The memory model's mechanisms, checked on real transformers + PEFT (+ bitsandbytes) training
steps on the CPU.

A small Llama-architecture model runs two real AdamW steps under a tracker of live tensor bytes
(tests/planner/livebytes.py). The planner's prediction for the same config, minus the CUDA-only
cuBLAS workspaces and bitsandbytes' CUDA dequantization buffer, must match within 3%.

Two CPU/CUDA differences are bridged so that the CPU saves what CUDA saves:
- dropout: CPU's ``F.dropout`` keeps an fp32 noise tensor, CUDA's fused kernel a 1-byte mask; the
  tests route dropout through ``torch.native_dropout`` (that same kernel, which also runs on the CPU);
- QLoRA attention: fp32 q/k/v with grouped-query attention fall back to SDPA's math kernel on CUDA;
  the tests select the math kernel (on the CPU, SDPA would pick its own flash kernel).
"""
import tempfile

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from planner import Job, estimate  # noqa: E402
from planner.spec import spec_from_config  # noqa: E402

from .livebytes import LiveBytes  # noqa: E402

SHAPES = {
    # 128k-vocab-like ratio: the logits dominate (peak in the loss backward)
    "big-vocab": dict(hidden_size=256, intermediate_size=896, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=2, head_dim=32, vocab_size=16000, tie_word_embeddings=False),
    # Mistral/Phi-3-like small vocabulary: the recomputed layer and the optimizer matter more
    "small-vocab": dict(hidden_size=512, intermediate_size=1792, num_hidden_layers=4, num_attention_heads=8,
                        num_key_value_heads=2, head_dim=64, vocab_size=4000, tie_word_embeddings=False),
    # other architectures: fused qkv/gate_up without GQA; eager attention with soft-capping; biases + tied head
    "phi3": dict(model_type="phi3", hidden_size=384, intermediate_size=1024, num_hidden_layers=4,
                 num_attention_heads=6, num_key_value_heads=6, vocab_size=4000, tie_word_embeddings=False,
                 max_position_embeddings=4096, sliding_window=2047, pad_token_id=0),
    "gemma2": dict(model_type="gemma2", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=16000,
                   tie_word_embeddings=True, sliding_window=128, query_pre_attn_scalar=64,
                   attn_logit_softcapping=50.0, final_logit_softcapping=30.0),
    "qwen2": dict(model_type="qwen2", hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=8000, tie_word_embeddings=True),
    # issue 14: q/k norms over head_dim (qwen3) and over the whole projections (olmo2, which has no input
    # norm); granite (llama-like, tied); gemma3's 5:1 sliding pattern with q/k norms; explicit head_dim
    # (Mistral Nemo-like, q_dim != hidden); Phi-4-like fused qkv with GQA
    "qwen3": dict(model_type="qwen3", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, head_dim=32, vocab_size=8000, tie_word_embeddings=False),
    "olmo2": dict(model_type="olmo2", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=8000, tie_word_embeddings=False,
                  pad_token_id=0, eos_token_id=1),
    "granite": dict(model_type="granite", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                    num_attention_heads=8, num_key_value_heads=2, vocab_size=8000, tie_word_embeddings=True,
                    pad_token_id=0),
    "gemma3": dict(model_type="gemma3_text", hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=16000,
                   sliding_window=128, pad_token_id=0),
    "mistral-head-dim": dict(model_type="mistral", hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                             num_attention_heads=8, num_key_value_heads=2, head_dim=48, vocab_size=8000,
                             sliding_window=None, tie_word_embeddings=False),
    # MoE under transformers 5's grouped_mm experts kernel; LoRA on the fused experts (PEFT ParamWrapper)
    "qwen3-moe": dict(model_type="qwen3_moe", hidden_size=256, intermediate_size=768, moe_intermediate_size=128,
                      num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_experts=8,
                      num_experts_per_tok=2, vocab_size=8000, tie_word_embeddings=False),
    "mixtral": dict(model_type="mixtral", hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=8, num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
                    vocab_size=8000, tie_word_embeddings=False, sliding_window=None),
    # gpt-oss: eager attention with sinks, alternating sliding layers, biased experts with a clamped SwiGLU
    "gpt-oss": dict(model_type="gpt_oss", hidden_size=256, intermediate_size=256, num_hidden_layers=4,
                    num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_local_experts=8,
                    num_experts_per_tok=2, vocab_size=8000, sliding_window=128, tie_word_embeddings=False),
    # DeepSeek-V3: MLA (compressed q and KV with their norms, latent KV cache), a dense first layer,
    # shared + routed experts, fp32 routing. qk_head_dim (nope + rope) equals v_head_dim here: with
    # unequal dims the CPU's SDPA falls back to its fp32 math kernel, CUDA's memory-efficient kernel
    # takes them (docs/accuracy.md).
    "deepseek-v3": dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                        num_hidden_layers=4, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                        n_shared_experts=1, kv_lora_rank=64, q_lora_rank=96, qk_nope_head_dim=16, qk_rope_head_dim=16,
                        v_head_dim=32, num_attention_heads=4, num_key_value_heads=4, n_group=1, topk_group=1,
                        vocab_size=8000, tie_word_embeddings=False),
    # DeepSeek-V2-Lite-like: no query compression (q_lora_rank None), greedy softmax routing, two shared experts
    "deepseek-v2": dict(model_type="deepseek_v2", hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                        num_hidden_layers=4, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
                        n_shared_experts=2, kv_lora_rank=64, q_lora_rank=None, qk_nope_head_dim=16,
                        qk_rope_head_dim=16, v_head_dim=32, num_attention_heads=4, num_key_value_heads=4, n_group=1,
                        topk_group=1, topk_method="greedy", vocab_size=8000, tie_word_embeddings=False),
    # Llama 4: every token through every expert (bmm), a shared expert, interleaved dense layers,
    # chunked attention and L2 q/k norms on the RoPE layers
    "llama4": dict(model_type="llama4_text", hidden_size=256, intermediate_size=256, intermediate_size_mlp=512,
                   num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=32, num_local_experts=4,
                   num_experts_per_tok=1, interleave_moe_layer_step=2, vocab_size=8000, tie_word_embeddings=False,
                   attention_chunk_size=128, pad_token_id=0),
    "phi3-gqa": dict(model_type="phi3", hidden_size=384, intermediate_size=1024, num_hidden_layers=4,
                     num_attention_heads=6, num_key_value_heads=2, vocab_size=4000, tie_word_embeddings=False,
                     pad_token_id=0, eos_token_id=1),
}
# (shape, mode, seq, batch, checkpointing, LoRA targets, LoRA dropout)
CASES = [
    ("big-vocab", "lora", 512, 4, True, "all-linear", 0.0),
    ("big-vocab", "lora", 128, 2, False, "all-linear", 0.0),
    ("big-vocab", "lora", 256, 2, False, "all-linear", 0.05),
    ("big-vocab", "full", 256, 2, True, "all-linear", 0.0),
    ("big-vocab", "full", 128, 1, False, "all-linear", 0.0),
    ("big-vocab", "full-bf16", 512, 4, False, "all-linear", 0.0),
    ("big-vocab", "qlora", 256, 2, False, "all-linear", 0.05),
    ("small-vocab", "lora", 512, 4, True, "all-linear", 0.0),
    ("small-vocab", "lora", 512, 4, True, "all-linear", 0.05),
    ("small-vocab", "lora", 512, 2, True, "q_proj,v_proj", 0.0),
    ("small-vocab", "lora", 128, 2, False, "all-linear", 0.0),
    ("small-vocab", "full", 256, 2, True, "all-linear", 0.0),
    ("small-vocab", "full-bf16", 512, 4, False, "all-linear", 0.0),
    ("small-vocab", "qlora", 512, 2, True, "all-linear", 0.0),
    ("small-vocab", "qlora", 512, 2, True, "all-linear", 0.05),
    ("small-vocab", "qlora", 256, 2, False, "all-linear", 0.05),
    ("small-vocab", "inference", 512, 2, False, "all-linear", 0.0),
    ("phi3", "inference", 512, 2, False, "all-linear", 0.0),
    ("phi3", "lora", 256, 2, False, "all-linear", 0.05),
    ("phi3", "qlora", 256, 2, False, "all-linear", 0.05),
    ("gemma2", "inference", 1024, 1, False, "all-linear", 0.0),
    ("gemma2", "lora", 256, 2, True, "all-linear", 0.05),
    ("gemma2", "qlora", 256, 2, False, "all-linear", 0.05),
    ("qwen2", "lora", 256, 2, False, "all-linear", 0.05),
    ("qwen2", "qlora", 256, 2, True, "all-linear", 0.05),
    ("qwen3", "lora", 256, 2, False, "all-linear", 0.05),
    ("qwen3", "qlora", 256, 2, False, "all-linear", 0.05),
    ("qwen3", "inference", 512, 2, False, "all-linear", 0.0),
    ("olmo2", "lora", 256, 2, False, "all-linear", 0.05),
    ("olmo2", "full", 128, 1, False, "all-linear", 0.0),
    ("granite", "lora", 256, 2, False, "all-linear", 0.05),
    ("gemma3", "lora", 256, 2, True, "all-linear", 0.05),
    ("mistral-head-dim", "lora", 256, 2, False, "all-linear", 0.05),
    ("phi3-gqa", "lora", 256, 2, False, "all-linear", 0.05),
    # the prompt outgrows Gemma 3's window: full-prompt KV views and the boolean sliding mask
    ("gemma3", "inference", 512, 1, False, "all-linear", 0.0),
    ("gemma3", "inference", 1024, 1, False, "all-linear", 0.0),
    # PEFT refuses LoRA dropout on fused experts (lora.ParamWrapper), so these run without it
    ("qwen3-moe", "inference", 512, 2, False, "all-linear", 0.0),
    ("qwen3-moe", "lora", 256, 2, False, "all-linear", 0.0),
    ("mixtral", "inference", 512, 2, False, "all-linear", 0.0),
    ("mixtral", "lora", 256, 2, False, "all-linear", 0.0),
    ("qwen3-moe", "qlora", 256, 2, False, "all-linear", 0.0),
    # FSDP-QLoRA's pure-bf16 recipe (what pricing figures for the fsdp-qlora strategy)
    ("small-vocab", "qlora-bf16", 512, 2, True, "all-linear", 0.0),
    ("small-vocab", "qlora-bf16", 256, 2, False, "all-linear", 0.0),
    ("big-vocab", "qlora-bf16", 256, 2, False, "all-linear", 0.05),
    ("qwen3", "qlora-bf16", 256, 2, False, "all-linear", 0.05),
    # gpt-oss: the MLP peak (held attention weights, masks, gathered biases), then the sink softmax's
    ("gpt-oss", "inference", 64, 16, False, "all-linear", 0.0),
    ("gpt-oss", "inference", 1024, 1, False, "all-linear", 0.0),
    ("gpt-oss", "lora", 256, 2, False, "all-linear", 0.0),
    ("deepseek-v3", "inference", 512, 2, False, "all-linear", 0.0),
    ("deepseek-v3", "lora", 256, 2, False, "all-linear", 0.0),
    ("deepseek-v2", "inference", 512, 2, False, "all-linear", 0.0),
    ("deepseek-v2", "lora", 256, 2, False, "all-linear", 0.0),
    ("llama4", "inference", 512, 2, False, "all-linear", 0.0),
    # PEFT's all-linear wraps Llama 4's router (an nn.Linear that returns a tuple) and the forward fails;
    # the names below are what a user passes instead (they also match shared_expert.*)
    ("llama4", "lora", 256, 2, False, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 0.0),
]


@pytest.fixture
def cuda_like_dropout(monkeypatch):
    import torch.nn.functional as F
    original = F.dropout

    def dropout(input, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1:
            return torch.native_dropout(input, p, True)[0]
        return original(input, p, training, inplace)

    monkeypatch.setattr(F, "dropout", dropout)


def config(shape):
    shape = dict(shape)
    cfg = transformers.AutoConfig.for_model(shape.pop("model_type", "llama"), **shape)
    # as transformers does: Gemma 2 prefers eager; gpt-oss's attention sinks have no SDPA path
    cfg._attn_implementation = "eager" if cfg.model_type in ("gemma2", "gpt_oss") else "sdpa"
    return cfg


def build(shape, mode, ckpt, targets, dropout):
    cfg = config(shape)
    if mode in ("qlora", "qlora-bf16"):
        path = tempfile.mkdtemp()
        transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16).save_pretrained(path)
        # qlora-bf16: FSDP-QLoRA's pure-bf16 recipe (backend/recipes/fsdp_qlora.py): bf16 quant storage,
        # no prepare_model_for_kbit_training, the adapters cast to bf16 below
        storage = {"bnb_4bit_quant_storage": torch.bfloat16} if mode == "qlora-bf16" else {}
        quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16,
                                                **storage)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.bfloat16,
                                                                  device_map={"": "cpu"},
                                                                  attn_implementation=cfg._attn_implementation)
        if mode == "qlora":
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=ckpt,
                                                         gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            for p in model.parameters():
                p.requires_grad_(False)
            model.enable_input_require_grads()
            if ckpt:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
                model.config.use_cache = False
    else:
        pure = mode in ("lora", "full-bf16", "inference")
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if pure else torch.float32)
        if ckpt and mode != "inference":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
            if mode == "lora":
                model.enable_input_require_grads()
    if mode in ("lora", "qlora", "qlora-bf16"):
        model = peft.get_peft_model(model, peft.LoraConfig(
            r=16, lora_alpha=32, lora_dropout=dropout, task_type="CAUSAL_LM",
            target_modules=targets if targets == "all-linear" else targets.split(",")))
    if mode == "qlora-bf16":
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(torch.bfloat16)
    return model


def existing_tensors(model):
    """Parameters, buffers and bitsandbytes quantization constants allocated before tracking."""
    found = [*model.parameters(), *model.buffers()]
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        if state is not None:
            found += [state.absmax, state.code]
            if getattr(state, "state2", None) is not None:
                found += [state.state2.absmax, state.state2.code]
    return [t for t in found if isinstance(t, torch.Tensor)]


def measure(shape, mode, seq, batch, ckpt, targets, dropout):
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel
    torch.manual_seed(0)
    model = build(shape, mode, ckpt, targets, dropout)
    ids = torch.randint(0, shape["vocab_size"], (batch, seq))
    tracker = LiveBytes(existing=existing_tensors(model))
    if mode == "inference":
        model.eval()
        with torch.no_grad(), tracker:
            model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return tracker.peak
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    model.train()
    # CUDA's fallback for fp32 q/k/v: the math kernel with GQA; without GQA the memory-efficient
    # kernel, whose saved tensors the CPU's flash kernel matches.
    gqa = shape["num_key_value_heads"] < shape["num_attention_heads"]
    kernel = (sdpa_kernel([SDPBackend.MATH if gqa else SDPBackend.FLASH_ATTENTION]) if mode == "qlora"
              else contextlib.nullcontext())
    with kernel, tracker:
        for _ in range(2):  # the second step has the optimizer states: steady state
            tracker.reset_peak()
            if mode == "full":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids).loss
            else:
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    return tracker.peak


def job_for(mode, seq, batch, ckpt, dropout, targets):
    """The planner's Job for a case: full-bf16 is pure bf16 full training, qlora-bf16 the FSDP-QLoRA recipe."""
    base = {"full-bf16": "full", "qlora-bf16": "qlora"}.get(mode, mode)
    return Job(mode=base, precision="bf16" if mode == "full-bf16" else None, kbit_prep=mode != "qlora-bf16",
               seq_len=seq, batch_size=batch, gradient_checkpointing=ckpt, lora_dropout=dropout, lora_targets=targets)


@pytest.mark.slow
@pytest.mark.parametrize("name, mode, seq, batch, ckpt, targets, dropout", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_prediction_matches_live_bytes_on_cpu(cuda_like_dropout, name, mode, seq, batch, ckpt, targets, dropout):
    measured = measure(SHAPES[name], mode, seq, batch, ckpt, targets, dropout)
    spec = spec_from_config({"model_type": "llama", **SHAPES[name]}, name=name)
    job = job_for(mode, seq, batch, ckpt, dropout, targets)
    est = estimate(spec, job)
    cuda_only = sum(est.breakdown.get(k, 0) for k in ("cuBLAS workspaces", "cuBLAS workspace", "dequantization buffer"))
    assert est.peak_allocated_bytes - cuda_only == pytest.approx(measured, rel=0.03), est.phase


def test_the_documented_rows_marked_in_suite_are_the_suite_cases():
    """docs/accuracy.md renders tests/data/cpu_mechanism_checks.csv; a row it marks "in suite" must be
    a case above with the same config, so the table cannot claim a check that does not run."""
    import csv
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "data" / "cpu_mechanism_checks.csv"
    cases = {(n, m, s, b, int(c), t, d) for n, m, s, b, c, t, d in CASES}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["in_suite"] != "yes":
                continue
            key = (r["shape"], r["mode"], int(r["seq"]), int(r["batch"]), int(r["grad_ckpt"]), r["lora_targets"],
                   float(r["lora_dropout"]))
            assert key in cases, key
            assert json.loads(r["config_json"]) == SHAPES[r["shape"]], r["shape"]
