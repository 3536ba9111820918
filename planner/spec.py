"""What the planner needs to know about a model: the published config.json values, typed."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .config_checks import check_fields, check_invariants
from .errors import PlannerError

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "mixtral", "gemma2", "phi3", "granite", "olmo2", "qwen3",
                           "qwen3_moe", "gemma3_text", "gpt_oss", "deepseek_v2", "deepseek_v3", "llama4_text")
# Multimodal wrappers whose language model sits under text_config with this model_type.
_TEXT_PART = {"gemma3": "gemma3_text", "llama4": "llama4_text"}
_DEFAULTS = Path(__file__).parent / "models" / "architectures" / "defaults.json"
_TRAITS = Path(__file__).parent / "models" / "architectures" / "traits.json"


@lru_cache(maxsize=1)
def architecture_defaults() -> dict[str, dict[str, Any]]:
    """transformers' config-class defaults for the fields the counts read (data file, with its source)."""
    return json.loads(_DEFAULTS.read_text())["defaults"]


@dataclass(frozen=True)
class ArchTraits:
    """What an architecture does differently from Llama, as the term model asks it (data file
    models/architectures/traits.json, each trait with its basis; all false for Llama-like models).
    The memory model reads these, never ``model_type``: a new family is a row there."""

    eager_attention: bool = False
    sandwich_norms: bool = False
    qk_norm: str | None = None            # "head" | "projection" | "l2_rope"
    mla: bool = False
    fp32_router: bool = False
    shared_experts: str | None = None     # "n_shared" | "one"
    all_experts: bool = False
    holds_attention_output: bool = False
    chunked_attention: bool = False
    attention_sinks: bool = False
    softcap: bool = False
    fused_projections: bool = False
    clamped_swiglu: bool = False
    sliding_layout: str | None = None     # "alternate" | "every_nth"
    full_and_sliding_masks: bool = False
    peft_wraps_experts: bool = False


@lru_cache(maxsize=None)
def arch_traits(model_type: str) -> ArchTraits:
    rows = json.loads(_TRAITS.read_text())["traits"]
    return ArchTraits(**rows.get(model_type, {}))


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer described by its config.json fields.

    ``config`` keeps every field as published so nothing the user gave is lost; the typed
    attributes are the ones the parameter and memory models read.
    """

    name: str
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int | None = None
    num_local_experts: int = 0
    num_experts_per_tok: int = 0
    sliding_window: int | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    hf_id: str | None = None
    source: str | None = None
    aliases: tuple[str, ...] = ()
    # How far the shipped config.json values can be trusted ("exact copy", "second-hand", "partial ...")
    # and what is known about them; None/() for configs the user gave.
    confidence: str | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        """A config.json field, or transformers' default for this architecture when it is absent."""
        if key in self.config:
            return self.config[key]
        return architecture_defaults().get(self.model_type, {}).get(key, default)

    @property
    def moe_intermediate_size(self) -> int:
        """Width of one routed expert (Qwen3-MoE, DeepSeek: moe_intermediate_size; others: intermediate_size)."""
        return int(self.get("moe_intermediate_size") or self.intermediate_size)

    @property
    def traits(self) -> ArchTraits:
        return arch_traits(self.model_type)

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 0

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "hf_id": self.hf_id,
            "model_type": self.model_type,
            "source": self.source,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "num_local_experts": self.num_local_experts,
            "num_experts_per_tok": self.num_experts_per_tok,
            "sliding_window": self.sliding_window,
            "confidence": self.confidence,
            "notes": list(self.notes),
        }


_REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def spec_from_config(config: Mapping[str, Any], *, name: str, hf_id: str | None = None,
                     source: str | None = None, aliases: tuple[str, ...] = (), confidence: str | None = None,
                     notes: tuple[str, ...] = ()) -> ModelSpec:
    """Build a ModelSpec from config.json values, with the defaults transformers applies.

    Raises PlannerError naming the missing or malformed field.
    """
    if not isinstance(config, Mapping):
        raise PlannerError(f"config for '{name}' is not a JSON object")
    cfg = dict(config)
    # Multimodal wrappers keep the language model under text_config.
    if "text_config" in cfg and "hidden_size" not in cfg and isinstance(cfg["text_config"], Mapping):
        outer = cfg.get("model_type")
        inner = cfg["text_config"].get("model_type") or _TEXT_PART.get(outer, outer)
        cfg = {**cfg["text_config"], "model_type": inner,
               **({"quantization_config": cfg["quantization_config"]} if "quantization_config" in cfg else {})}
    defaults = architecture_defaults().get(str(cfg.get("model_type")), {})
    for key in _REQUIRED:  # Gemma 3's multimodal configs omit vocab_size in text_config
        if key not in cfg and key in defaults:
            cfg[key] = defaults[key]
    cfg_or_default = {**defaults, **cfg}
    check_fields(cfg, name)
    missing = [k for k in _REQUIRED if k not in cfg]
    if missing and cfg.get("model_type") not in SUPPORTED_ARCHITECTURES:
        cfg = _normalise_with_transformers(cfg, name) or cfg
        missing = [k for k in _REQUIRED if k not in cfg]
    if missing:
        raise PlannerError(f"config for '{name}' lacks {', '.join(missing)}; is it a decoder-only LLM config.json?")

    def as_int(key: str, default: Any = None) -> int | None:
        value = cfg.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
            raise PlannerError(f"config for '{name}': {key} must be a non-negative integer, got {value!r}")
        return int(value)

    hidden = as_int("hidden_size")
    heads = as_int("num_attention_heads")
    if not hidden or not heads or not as_int("num_hidden_layers") or not as_int("vocab_size"):
        raise PlannerError(f"config for '{name}': hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive")
    model_type = str(cfg.get("model_type") or "unknown")
    if model_type in ("deepseek_v2", "deepseek_v3"):
        # MLA: transformers sets head_dim = qk_rope_head_dim; the KV cache holds the latent instead.
        head_dim = int(cfg_or_default["qk_rope_head_dim"])
    else:
        head_dim = as_int("head_dim") or int(defaults.get("head_dim") or hidden // heads)
    n_experts = (as_int("num_local_experts", 0) or as_int("num_experts", 0) or as_int("n_routed_experts", 0)
                 or int(defaults.get("num_local_experts") or defaults.get("num_experts")
                        or defaults.get("n_routed_experts") or 0))
    top_k = as_int("num_experts_per_tok") or as_int("experts_per_token") or defaults.get("num_experts_per_tok") or 0
    use_sliding = cfg_or_default.get("use_sliding_window", True) is not False
    sliding = as_int("sliding_window", defaults.get("sliding_window")) if use_sliding else None
    intermediate = as_int("intermediate_size")
    if intermediate is None and model_type not in SUPPORTED_ARCHITECTURES:
        intermediate = as_int("n_inner") or 4 * hidden
    if intermediate is None:
        raise PlannerError(f"config for '{name}' lacks intermediate_size")
    kv_heads = as_int("num_key_value_heads") or heads
    check_invariants(name=name, hidden=hidden, heads=heads, kv_heads=kv_heads, layers=as_int("num_hidden_layers"),
                     intermediate=intermediate, head_dim=head_dim,
                     explicit_head_dim=bool(cfg_or_default.get("head_dim")) or model_type in ("deepseek_v2", "deepseek_v3"),
                     experts=n_experts, top_k=int(top_k) if n_experts else 0, layer_types=cfg.get("layer_types"))
    return ModelSpec(
        name=name,
        model_type=model_type,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=as_int("num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=as_int("vocab_size"),
        tie_word_embeddings=bool(cfg_or_default.get("tie_word_embeddings", model_type == "gemma")),
        max_position_embeddings=as_int("max_position_embeddings"),
        num_local_experts=n_experts,
        num_experts_per_tok=int(top_k) if n_experts else 0,
        sliding_window=sliding,
        attention_bias=bool(cfg_or_default.get("attention_bias", model_type == "qwen2")),
        mlp_bias=bool(cfg_or_default.get("mlp_bias", False)),
        hf_id=hf_id,
        source=source,
        aliases=aliases,
        confidence=confidence,
        notes=tuple(notes),
        config=cfg,
    )


def _normalise_with_transformers(cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Other architectures name fields differently (gpt2: n_embd, n_layer); transformers'
    attribute_map knows the standard names. Only used off the normal path."""
    try:
        from transformers import AutoConfig
    except ImportError:
        return None
    try:
        conf = AutoConfig.for_model(**cfg)
    except Exception:  # unknown model_type or inconsistent fields: report the missing keys instead
        return None
    out = dict(cfg)
    for key in (*_REQUIRED, "intermediate_size", "num_key_value_heads", "head_dim", "tie_word_embeddings",
                "max_position_embeddings"):
        value = getattr(conf, key, None)
        if value is not None and key not in out:
            out[key] = value
    return out
