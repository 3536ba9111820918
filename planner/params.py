"""Exact parameter counts from a config, per group, for the supported architectures.

Each layer is an inventory of the tensors transformers 5.24 creates for it (``modeling_llama.py``,
``modeling_qwen2.py``, ``modeling_mixtral.py``, ``modeling_gemma2.py``, ``modeling_phi3.py``,
``modeling_granite.py``, ``modeling_olmo2.py``, ``modeling_qwen3.py``, ``modeling_qwen3_moe.py``,
``modeling_gemma3.py``, ``modeling_gpt_oss.py``, ``modeling_deepseek_v2.py`` / ``_v3.py``,
``modeling_llama4.py``); fields absent from a config take the config class's defaults
(``planner/models/architectures/defaults.json``). The sums equal what
``sum(p.numel() for p in model.parameters())`` reports on the meta device
(tests/planner/test_params*.py check both the shipped models and generated configs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import PlannerError
from .spec import SUPPORTED_ARCHITECTURES, ModelSpec

GROUPS = ("embedding", "attention", "mlp", "router", "norms", "lm_head")


@dataclass(frozen=True)
class ParamCounts:
    """Parameters per group. ``total`` is what sits in memory; ``active`` is what one token uses."""

    embedding: int
    attention: int
    mlp: int
    router: int
    norms: int
    lm_head: int
    total: int
    active: int
    # Per-layer shapes the memory model needs (input -> output features of each linear).
    per_layer_linear: tuple[tuple[str, int, int], ...]
    counted_by: str = "formula"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_layer_linear"] = [list(x) for x in self.per_layer_linear]
        return d


@dataclass(frozen=True)
class Tensor:
    """One parameter tensor of a decoder layer.

    ``kind``: "linear" (an ``nn.Linear`` weight, ``shape`` = (in, out)), "experts" (a fused 3D
    expert parameter, ``shape`` = (in, out) of one expert, ``count`` experts; not an ``nn.Linear``),
    "bias", "norm" or "param" (router weights held as ``nn.Parameter``, attention sinks).
    ``routed``: only top-k of ``count`` experts see a token.
    """

    group: str
    name: str
    numel: int
    kind: str
    shape: tuple[int, int] | None = None
    count: int = 1
    routed: bool = False


def _attn_bias(spec: ModelSpec) -> tuple[str, ...]:
    """Which attention projections carry a bias (qwen2: q, k, v always; mistral, mixtral, phi3: none)."""
    if spec.model_type == "qwen2":
        return ("q_proj", "k_proj", "v_proj")
    if spec.model_type in ("mistral", "mixtral", "phi3") or not spec.attention_bias:
        return ()
    return ("q_proj", "k_proj", "v_proj", "o_proj")


def _linear(group: str, name: str, n_in: int, n_out: int, bias: bool = False) -> list[Tensor]:
    out = [Tensor(group, name, n_in * n_out, "linear", (n_in, n_out))]
    if bias:
        out.append(Tensor(group, name + ".bias", n_out, "bias"))
    return out


def _attention(spec: ModelSpec) -> list[Tensor]:
    h, q, kv, hd = spec.hidden_size, spec.q_dim, spec.kv_dim, spec.head_dim
    if spec.traits.mla:
        # Multi-head latent attention (DeepSeek-V2 paper, section 2.1; modeling_deepseek_v2.DeepseekV2Attention).
        nh, ab = spec.num_attention_heads, bool(spec.get("attention_bias"))
        qk = int(spec.get("qk_nope_head_dim")) + int(spec.get("qk_rope_head_dim"))
        rank, kv_rank = spec.get("q_lora_rank"), int(spec.get("kv_lora_rank"))
        if rank:
            t = (_linear("attention", "q_a_proj", h, rank, ab) + [Tensor("norms", "q_a_layernorm", rank, "norm")]
                 + _linear("attention", "q_b_proj", rank, nh * qk))
        else:
            t = _linear("attention", "q_proj", h, nh * qk)
        t += _linear("attention", "kv_a_proj_with_mqa", h, kv_rank + int(spec.get("qk_rope_head_dim")), ab)
        t += [Tensor("norms", "kv_a_layernorm", kv_rank, "norm")]
        t += _linear("attention", "kv_b_proj", kv_rank, nh * (int(spec.get("qk_nope_head_dim")) + int(spec.get("v_head_dim"))))
        t += _linear("attention", "o_proj", nh * int(spec.get("v_head_dim")), h, ab)
        return t
    biased = _attn_bias(spec)
    if spec.traits.fused_projections:
        t = _linear("attention", "qkv_proj", h, q + 2 * kv) + _linear("attention", "o_proj", q, h)
    else:
        t = []
        for name, n_in, n_out in (("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h)):
            t += _linear("attention", name, n_in, n_out, name in biased)
    if spec.traits.qk_norm == "head":
        # RMSNorm over head_dim on q and k (modeling_qwen3.Qwen3Attention.q_norm / k_norm).
        t += [Tensor("norms", "q_norm", hd, "norm"), Tensor("norms", "k_norm", hd, "norm")]
    elif spec.traits.qk_norm == "projection":
        # OLMo-2 normalises the whole q and k projections (modeling_olmo2.Olmo2Attention).
        t += [Tensor("norms", "q_norm", q, "norm"), Tensor("norms", "k_norm", kv, "norm")]
    elif spec.traits.attention_sinks:
        # one learned attention-sink logit per head (modeling_gpt_oss.GptOssAttention.sinks)
        t += [Tensor("attention", "sinks", spec.num_attention_heads, "param")]
    return t


def _gated_mlp(spec: ModelSpec, width: int, prefix: str = "", bias: bool = False) -> list[Tensor]:
    h = spec.hidden_size
    if spec.traits.fused_projections:
        return _linear("mlp", prefix + "gate_up_proj", h, 2 * width) + _linear("mlp", prefix + "down_proj", width, h)
    return (_linear("mlp", prefix + "gate_proj", h, width, bias) + _linear("mlp", prefix + "up_proj", h, width, bias)
            + _linear("mlp", prefix + "down_proj", width, h, bias))


def _experts(spec: ModelSpec, n: int, width: int, bias: bool = False) -> list[Tensor]:
    """Fused 3D expert parameters (transformers 5: ``experts.gate_up_proj`` / ``experts.down_proj``)."""
    h = spec.hidden_size
    t = [Tensor("mlp", "experts.gate_up_proj", n * h * 2 * width, "experts", (h, 2 * width), n, True),
         Tensor("mlp", "experts.down_proj", n * width * h, "experts", (width, h), n, True)]
    if bias:  # gpt-oss: per-expert biases
        t += [Tensor("mlp", "experts.gate_up_proj_bias", n * 2 * width, "bias", None, n, True),
              Tensor("mlp", "experts.down_proj_bias", n * h, "bias", None, n, True)]
    return t


def _router(spec: ModelSpec, n: int, bias: bool = False, linear: bool = False) -> list[Tensor]:
    t = [Tensor("router", "router", n * spec.hidden_size, "linear" if linear else "param",
                (spec.hidden_size, n) if linear else None)]
    if bias:
        t.append(Tensor("router", "router.bias", n, "bias"))
    return t


def is_moe_layer(spec: ModelSpec, idx: int) -> bool:
    """Whether decoder layer ``idx`` routes tokens to experts (the rule of each modeling file)."""
    mt = spec.model_type
    if not spec.is_moe:
        return False
    if mt == "qwen3_moe":
        return idx not in (spec.get("mlp_only_layers") or []) and (idx + 1) % int(spec.get("decoder_sparse_step") or 1) == 0
    if mt in ("deepseek_v2", "deepseek_v3"):
        return idx >= int(spec.get("first_k_dense_replace") or 0)
    if mt == "llama4_text":
        layers = spec.get("moe_layers")
        if layers is None:
            step = int(spec.get("interleave_moe_layer_step"))
            layers = range(step - 1, spec.num_hidden_layers, step)
        return idx in layers
    return True


def _mlp(spec: ModelSpec, idx: int) -> list[Tensor]:
    mt, i, E = spec.model_type, spec.intermediate_size, spec.num_local_experts
    if not is_moe_layer(spec, idx):
        width = int(spec.get("intermediate_size_mlp")) if mt == "llama4_text" and spec.is_moe else i
        return _gated_mlp(spec, width, bias=spec.mlp_bias and mt in ("llama", "granite", "deepseek_v2"))
    if mt == "mixtral":
        return _experts(spec, E, i) + _router(spec, E)
    if mt == "qwen3_moe":
        return _experts(spec, E, spec.moe_intermediate_size) + _router(spec, E)
    if mt == "gpt_oss":
        return _experts(spec, E, i, bias=True) + _router(spec, E, bias=True)
    if mt in ("deepseek_v2", "deepseek_v3"):
        shared = spec.moe_intermediate_size * int(spec.get("n_shared_experts"))
        return (_experts(spec, E, spec.moe_intermediate_size) + _router(spec, E)
                + _gated_mlp(spec, shared, "shared_experts.", bias=spec.mlp_bias and mt == "deepseek_v2"))
    if mt == "llama4_text":
        return _experts(spec, E, i) + _router(spec, E, linear=True) + _gated_mlp(spec, i, "shared_expert.")
    raise PlannerError(f"no MoE layout for '{mt}'")


def _layer_norms(spec: ModelSpec) -> list[Tensor]:
    h = spec.hidden_size
    if spec.traits.sandwich_norms:
        names = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")
    elif spec.model_type == "olmo2":  # OLMo-2 normalises sublayer outputs, no input norm
        names = ("post_attention_layernorm", "post_feedforward_layernorm")
    else:
        names = ("input_layernorm", "post_attention_layernorm")
    return [Tensor("norms", n, h, "norm") for n in names]


def layer_tensors(spec: ModelSpec, idx: int) -> tuple[Tensor, ...]:
    """Every parameter tensor of decoder layer ``idx``."""
    return tuple(_attention(spec) + _mlp(spec, idx) + _layer_norms(spec))


def all_layers(spec: ModelSpec) -> list[tuple[Tensor, ...]]:
    """Layers grouped by layout: equal layouts are computed once (61-layer DeepSeek has two)."""
    cache: dict[bool, tuple[Tensor, ...]] = {}
    return [cache.setdefault(is_moe_layer(spec, i), layer_tensors(spec, i)) for i in range(spec.num_hidden_layers)]


def _representative_layer(spec: ModelSpec) -> int:
    """A routed layer where there is one (the layer type most of the model has), else layer 0."""
    return next((i for i in range(spec.num_hidden_layers) if is_moe_layer(spec, i)), 0)


def linear_shapes(spec: ModelSpec, idx: int | None = None) -> tuple[tuple[str, int, int], ...]:
    """(module name, in_features, out_features) for the linears of decoder layer ``idx`` (default: a
    routed one, if any).

    Fused expert parameters appear once per expert under their ``experts.*`` names; they are not
    ``nn.Linear`` modules, so PEFT's ``all-linear`` skips them (weights.lora_targets).
    """
    out: list[tuple[str, int, int]] = []
    for t in layer_tensors(spec, _representative_layer(spec) if idx is None else idx):
        if t.kind in ("linear", "experts") and t.shape:
            out += [(t.name, *t.shape)] * t.count
    return tuple(out)


# Fused expert parameters that PEFT (0.21, with transformers 5.24) wraps in a LoRA ``ParamWrapper``
# when asked for ``all-linear``, per architecture; gpt-oss's experts (biased, [E, in, out] layout)
# and Llama 4's are left alone. Seen with real PEFT on tiny models (tests/planner/test_params_meta.py).
# Which architectures: the ``peft_wraps_experts`` trait (planner/models/architectures/traits.json).


def layer_layouts(spec: ModelSpec) -> list[tuple[int, int]]:
    """(a layer index, how many layers share its layout): dense and routed layers (DeepSeek's dense
    first layers, Llama 4's interleaved MoE layers, Qwen3-MoE's ``mlp_only_layers``)."""
    counts: dict[bool, list[int]] = {}
    for i in range(spec.num_hidden_layers):
        counts.setdefault(is_moe_layer(spec, i), []).append(i)
    return [(idxs[0], len(idxs)) for idxs in counts.values()]


def peft_all_linear(spec: ModelSpec, idx: int | None = None) -> tuple[tuple[str, int, int], ...]:
    """(name, in, out) per LoRA pair that ``target_modules="all-linear"`` creates in layer ``idx``
    (default: a routed one, if any).

    Every ``nn.Linear`` (Llama 4's router is one); for the architectures whose ``peft_wraps_experts`` trait is set
    also the router weight (r x (hidden + E)) and the fused experts (but not DeepSeek's shared experts): ``down_proj`` gets rank r per
    expert, ``gate_up_proj`` rank 2r per expert (PEFT's ParamWrapper: A is (E*r, in), B (out, E*r)),
    written here as E and 2E pairs so that r x (in + out) per pair adds up."""
    out: list[tuple[str, int, int]] = []
    wraps = spec.traits.peft_wraps_experts
    idx = _representative_layer(spec) if idx is None else idx
    dense = not is_moe_layer(spec, idx)
    for t in layer_tensors(spec, idx):
        if wraps and (t.name.startswith("shared_experts.") or dense and t.kind == "linear" and t.group == "mlp"):
            # DeepSeek's shared experts and the dense MLPs of DeepSeek's first layers / Qwen3-MoE's
            # mlp_only_layers get no LoRA under all-linear (seen with PEFT 0.21.2, test_params_meta.py)
            continue
        if t.kind == "linear" and t.shape:
            out.append((t.name, *t.shape))
        elif wraps and t.kind == "experts":
            out += [(t.name, *t.shape)] * (t.count * (2 if t.name.endswith("gate_up_proj") else 1))
        elif wraps and t.group == "router" and t.kind == "param":
            out.append(("gate", spec.hidden_size, spec.num_local_experts))
    return tuple(out)


def decoder_linears(spec: ModelSpec) -> tuple[int, int, int]:
    """(weights, tensors, output rows) of every ``nn.Linear`` in all decoder layers: what
    bitsandbytes quantizes (it replaces nn.Linear modules only)."""
    n = tensors = rows = 0
    for layer in all_layers(spec):
        for t in layer:
            if t.kind == "linear" and t.group != "router":
                n, tensors, rows = n + t.numel, tensors + 1, rows + t.shape[1]
    return n, tensors, rows


def count_params(spec: ModelSpec) -> ParamCounts:
    """Count parameters exactly from the config; unknown architectures go to the meta device."""
    if spec.model_type not in SUPPORTED_ARCHITECTURES:
        return _count_on_meta_device(spec)
    h = spec.hidden_size
    sums = dict.fromkeys(GROUPS, 0)
    inactive = 0
    k, E = spec.num_experts_per_tok, spec.num_local_experts
    for layer in all_layers(spec):
        for t in layer:
            sums[t.group] += t.numel
            if t.routed:
                inactive += t.numel - t.numel // E * k
    sums["embedding"] = spec.vocab_size * h
    sums["lm_head"] = 0 if spec.tie_word_embeddings else spec.vocab_size * h
    sums["norms"] += h  # final norm
    total = sum(sums.values())
    return ParamCounts(**sums, total=total, active=total - inactive, per_layer_linear=linear_shapes(spec))


def _count_on_meta_device(spec: ModelSpec) -> ParamCounts:
    """Fallback for other architectures: instantiate on the meta device (needs torch + transformers).

    Groups come from parameter names (the conventions every modeling file shares); what no rule
    names is counted under ``mlp`` so that the groups still add up to the total.
    """
    try:
        import torch  # noqa: F401  (heavy: only on this fallback path)
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise PlannerError(
            f"architecture '{spec.model_type}' is not modelled natively (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}); install the train extra (pip install '.[train]': "
            "torch + transformers) to count its parameters on the meta device") from None
    try:
        config = AutoConfig.for_model(**dict(spec.config))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:
        raise PlannerError(f"transformers cannot build '{spec.name}' ({spec.model_type}): {exc}") from None
    emb_w = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    sums = dict.fromkeys(GROUPS, 0)
    routed = 0
    for name, p in model.named_parameters():
        sums[meta_group(name, p is emb_w, head is not None and p is head.weight)] += p.numel()
        if ".experts." in name and "shared" not in name:
            routed += p.numel()
    total = sum(sums.values())
    k = spec.num_experts_per_tok
    active = total - (routed - routed // spec.num_local_experts * k) if spec.is_moe and k else total
    shapes = tuple(sorted({(n.split(".")[-1], m.in_features, m.out_features)
                           for n, m in model.named_modules()
                           if isinstance(m, torch.nn.Linear) and ".layers.0." in n}))
    return ParamCounts(**sums, total=total, active=active, per_layer_linear=shapes, counted_by="meta-device")


def meta_group(name: str, is_embedding: bool = False, is_head: bool = False) -> str:
    """The group of a named parameter, by transformers' naming conventions."""
    if is_embedding or "embed" in name or name.endswith(("wte.weight", "wpe.weight")):
        return "embedding"
    if is_head or name.startswith("lm_head"):
        return "lm_head"
    if "norm" in name or ".ln_" in name:
        return "norms"
    if "router." in name or ".gate.weight" in name:
        return "router"
    if "attn" in name or "attention" in name:
        return "attention"
    return "mlp"
