"""Exact parameter counts from a config, per group, for the supported architectures.

Counts follow the module definitions in transformers (``modeling_llama.py``, ``modeling_qwen2.py``,
``modeling_mixtral.py``, ``modeling_gemma2.py``, ``modeling_phi3.py``) and equal what
``sum(p.numel() for p in model.parameters())`` reports on the meta device (checked against
``tests/data/reference_model_configs.csv``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import PlannerError
from .spec import SUPPORTED_ARCHITECTURES, ModelSpec


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


def linear_shapes(spec: ModelSpec) -> tuple[tuple[str, int, int], ...]:
    """(module name, in_features, out_features) for the linears of one decoder layer.

    For MoE the expert linears appear once per expert under the same names, which is what
    PEFT's ``all-linear`` matches.
    """
    h, i = spec.hidden_size, spec.intermediate_size
    if spec.model_type == "phi3":
        attn = [("qkv_proj", h, spec.q_dim + 2 * spec.kv_dim), ("o_proj", spec.q_dim, h)]
        mlp = [("gate_up_proj", h, 2 * i), ("down_proj", i, h)]
    else:
        attn = [("q_proj", h, spec.q_dim), ("k_proj", h, spec.kv_dim), ("v_proj", h, spec.kv_dim),
                ("o_proj", spec.q_dim, h)]
        if spec.model_type == "mixtral":
            mlp = [("w1", h, i), ("w3", h, i), ("w2", i, h)] * spec.num_local_experts
        else:
            mlp = [("gate_proj", h, i), ("up_proj", h, i), ("down_proj", i, h)]
    return tuple(attn + mlp)


def count_params(spec: ModelSpec) -> ParamCounts:
    """Count parameters exactly from the config; raise PlannerError for unknown architectures."""
    if spec.model_type not in SUPPORTED_ARCHITECTURES:
        return _count_on_meta_device(spec)
    h, L = spec.hidden_size, spec.num_hidden_layers
    shapes = linear_shapes(spec)
    attn_names = {"q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj"}
    attn = sum(i * o for n, i, o in shapes if n in attn_names)
    if spec.attention_bias:
        # q, k and v carry biases in Qwen2 (o_proj does not); Llama's attention_bias adds o too.
        attn += spec.q_dim + 2 * spec.kv_dim + (h if spec.model_type == "llama" else 0)
    mlp_all = sum(i * o for n, i, o in shapes if n not in attn_names)
    if spec.mlp_bias:
        mlp_all += sum(o for n, i, o in shapes if n not in attn_names)
    router = h * spec.num_local_experts if spec.is_moe else 0
    norms_per_layer = 4 if spec.model_type == "gemma2" else 2
    embedding = spec.vocab_size * h
    lm_head = 0 if spec.tie_word_embeddings else spec.vocab_size * h
    norms = (norms_per_layer * L + 1) * h
    total = embedding + L * (attn + mlp_all + router) + norms + lm_head
    if spec.is_moe:
        mlp_active = mlp_all // spec.num_local_experts * spec.num_experts_per_tok
        active = total - L * (mlp_all - mlp_active)
    else:
        active = total
    return ParamCounts(embedding=embedding, attention=L * attn, mlp=L * mlp_all, router=L * router,
                       norms=norms, lm_head=lm_head, total=total, active=active, per_layer_linear=shapes)


def _count_on_meta_device(spec: ModelSpec) -> ParamCounts:
    """Fallback for other architectures: instantiate on the meta device (needs torch + transformers)."""
    try:
        import torch  # noqa: F401  (heavy: only on this fallback path)
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError:
        raise PlannerError(
            f"architecture '{spec.model_type}' is not modelled natively (supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}); install the train extra (torch + transformers) "
            "to count its parameters on the meta device") from None
    try:
        config = AutoConfig.for_model(**dict(spec.config))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as exc:
        raise PlannerError(f"transformers cannot build '{spec.name}' ({spec.model_type}): {exc}") from None
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    lm_head = 0 if head is None or head.weight is model.get_input_embeddings().weight else head.weight.numel()
    shapes = tuple(sorted({(n.split(".")[-1], m.in_features, m.out_features)
                           for n, m in model.named_modules()
                           if isinstance(m, torch.nn.Linear) and ".layers.0." in n}))
    return ParamCounts(embedding=emb, attention=0, mlp=0, router=0, norms=0, lm_head=lm_head,
                       total=total, active=total, per_layer_linear=shapes, counted_by="meta-device")
