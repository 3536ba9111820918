"""Analytical counts against transformers' own classes on the meta device, on generated configs.

For every architecture, hypothesis draws small shapes (GQA ratios, explicit head_dim, biases, tied
heads, MoE layouts: dense first layers, sparse steps, interleaving, shared experts, MLA with and
without query compression); the model is built with ``AutoModelForCausalLM.from_config`` on the
meta device and every group must equal the analytical one (the meta side groups parameters by
name, as the meta-device fallback does).
"""
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.params import GROUPS, _count_on_meta_device, count_params, meta_group
from planner.spec import spec_from_config


@st.composite
def base(draw, *, head_dim=True):
    kv = draw(st.sampled_from([1, 2, 4]))
    heads = kv * draw(st.sampled_from([1, 2, 3]))
    hd = draw(st.sampled_from([8, 16]))
    cfg = dict(num_attention_heads=heads, num_key_value_heads=kv, num_hidden_layers=draw(st.integers(1, 5)),
               hidden_size=heads * draw(st.sampled_from([4, 8, 12])), intermediate_size=draw(st.sampled_from([24, 40])),
               vocab_size=draw(st.integers(50, 300)), tie_word_embeddings=draw(st.booleans()), pad_token_id=0)
    if head_dim:
        cfg["head_dim"] = hd
    else:
        cfg["hidden_size"] = heads * hd
    return cfg


def moe(draw, cfg, experts_key="num_local_experts"):
    e = draw(st.integers(2, 6))
    cfg[experts_key] = e
    cfg["num_experts_per_tok"] = draw(st.integers(1, e))
    return cfg


@st.composite
def configs(draw, model_type):
    c = draw(base(head_dim=model_type not in ("phi3", "qwen2", "olmo2", "granite")))
    mt = model_type
    if mt in ("llama", "granite"):
        c.update(attention_bias=draw(st.booleans()), mlp_bias=draw(st.booleans()))
    elif mt in ("qwen3", "olmo2", "gemma2", "gemma3_text"):
        c["attention_bias"] = draw(st.booleans())
    elif mt == "mistral":
        c["sliding_window"] = draw(st.sampled_from([None, 64]))
    elif mt == "mixtral":
        moe(draw, c)
    elif mt == "qwen3_moe":
        moe(draw, c, "num_experts")
        c.update(moe_intermediate_size=draw(st.sampled_from([8, 12])), decoder_sparse_step=draw(st.integers(1, 2)),
                 mlp_only_layers=draw(st.sampled_from([[], [0]])))
    elif mt == "gpt_oss":
        moe(draw, c)
        c.update(attention_bias=draw(st.booleans()), layer_types=None)
    elif mt in ("deepseek_v2", "deepseek_v3"):
        moe(draw, c, "n_routed_experts")
        c.update(moe_intermediate_size=draw(st.sampled_from([8, 12])), n_shared_experts=draw(st.integers(1, 2)),
                 first_k_dense_replace=draw(st.integers(0, 2)), q_lora_rank=draw(st.sampled_from([None, 12])),
                 kv_lora_rank=draw(st.sampled_from([8, 16])), qk_nope_head_dim=8, qk_rope_head_dim=4,
                 v_head_dim=draw(st.sampled_from([8, 12])), attention_bias=draw(st.booleans()))
        c.pop("head_dim", None)
        c["num_key_value_heads"] = c["num_attention_heads"]
        if mt == "deepseek_v2":
            c["mlp_bias"] = draw(st.booleans())
        else:
            c.update(n_group=1, topk_group=1)
    elif mt == "llama4_text":
        moe(draw, c)
        c.update(intermediate_size_mlp=draw(st.sampled_from([24, 56])),
                 interleave_moe_layer_step=draw(st.integers(1, 2)), attention_chunk_size=None)
    return c


ARCHS = ["llama", "mistral", "qwen2", "mixtral", "gemma2", "phi3", "granite", "olmo2", "qwen3", "qwen3_moe",
         "gemma3_text", "gpt_oss", "deepseek_v2", "deepseek_v3", "llama4_text"]


def meta_groups(model_type, cfg):
    conf = transformers.AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(conf)
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    sums = dict.fromkeys(GROUPS, 0)
    for name, p in model.named_parameters():
        sums[meta_group(name, p is emb, head is not None and p is head.weight)] += p.numel()
    return sums


@pytest.mark.parametrize("model_type", ARCHS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_counts_equal_meta_device(model_type, data):
    cfg = data.draw(configs(model_type))
    want = meta_groups(model_type, cfg)
    counts = count_params(spec_from_config({"model_type": model_type, **cfg}, name="generated"))
    got = {g: getattr(counts, g) for g in GROUPS}
    assert got == want
    assert counts.total == sum(want.values())
    assert counts.active <= counts.total


def test_meta_fallback_groups_add_up():
    """An architecture without a formula: the meta-device fallback names its groups too."""
    spec = spec_from_config({"model_type": "starcoder2", "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                             "vocab_size": 100}, name="tiny-starcoder2")
    c = _count_on_meta_device(spec)
    assert c.counted_by == "meta-device"
    assert min(c.attention, c.mlp, c.norms, c.embedding) > 0
    assert sum(getattr(c, g) for g in GROUPS) == c.total


def test_meta_fallback_agrees_with_formula_on_moe():
    """The fallback's groups and active count equal the formula's where both exist."""
    cfg = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
           "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
           "vocab_size": 100, "num_experts": 4, "num_experts_per_tok": 2}
    spec = spec_from_config(cfg, name="tiny-moe")
    a, b = count_params(spec), _count_on_meta_device(spec)
    assert {g: getattr(a, g) for g in GROUPS} == {g: getattr(b, g) for g in GROUPS}
    assert a.active == b.active < a.total


@pytest.mark.parametrize("model_type, extra", [
    ("qwen3_moe", {"num_experts": 3, "num_experts_per_tok": 1, "moe_intermediate_size": 20}),
    ("mixtral", {"num_local_experts": 3, "num_experts_per_tok": 2}),
    ("gpt_oss", {"num_local_experts": 3, "num_experts_per_tok": 2}),
    ("deepseek_v3", {"n_routed_experts": 3, "num_experts_per_tok": 2, "moe_intermediate_size": 20, "n_group": 1,
                     "topk_group": 1, "first_k_dense_replace": 0, "q_lora_rank": 12, "kv_lora_rank": 16,
                     "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "num_key_value_heads": 4}),
    ("llama4_text", {"num_local_experts": 3, "num_experts_per_tok": 1, "intermediate_size_mlp": 56,
                     "attention_chunk_size": None}),
    ("qwen3", {}),
    # dense and routed layers side by side: the count sums each layout, not one layer x L
    ("deepseek_v3", {"n_routed_experts": 3, "num_experts_per_tok": 2, "moe_intermediate_size": 20, "n_group": 1,
                     "topk_group": 1, "first_k_dense_replace": 1, "q_lora_rank": 12, "kv_lora_rank": 16,
                     "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "num_key_value_heads": 4,
                     "num_hidden_layers": 3}),
    ("llama4_text", {"num_local_experts": 3, "num_experts_per_tok": 1, "intermediate_size_mlp": 56,
                     "attention_chunk_size": None, "interleave_moe_layer_step": 2, "num_hidden_layers": 4}),
    ("qwen3_moe", {"num_experts": 3, "num_experts_per_tok": 1, "moe_intermediate_size": 20, "mlp_only_layers": [0],
                   "num_hidden_layers": 3}),
])
def test_all_linear_trainable_params_equal_real_peft(model_type, extra):
    """What PEFT's all-linear really wraps, fused 3D experts included, on a real tiny model."""
    peft = pytest.importorskip("peft")
    from planner import Job
    from planner.weights import trainable_params
    cfg = {"hidden_size": 48, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 100, "pad_token_id": 0, **extra}
    if model_type == "deepseek_v3":
        cfg.pop("head_dim")
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(model_type, **cfg))
    model = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    spec = spec_from_config({"model_type": model_type, **cfg}, name="tiny")
    assert trainable_params(spec, count_params(spec), Job(mode="lora", lora_r=2, seq_len=8)) == real
