"""Refuse a config.json that no model could have, before anything is estimated (issue 13, item 2).

A hostile or mistyped config (``NaN``, ``1e400``, binary bytes, 10,000-deep nesting, KV heads that
do not divide the heads, 1e12 layers) must end in one line naming the field, never a traceback
or a 1e42-byte estimate. The bounds are data (``models/architectures/limits.json``, with their
basis); the invariants are the ones transformers' attention and MoE modules rely on.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from .errors import PlannerError

_LIMITS = Path(__file__).parent / "models" / "architectures" / "limits.json"
_BOOLEAN_FIELDS = ("tie_word_embeddings", "attention_bias", "mlp_bias", "use_sliding_window")
_LAYER_LISTS = ("mlp_only_layers", "moe_layers")
# Counts that transformers cannot build a model with when 0 (a 0 is not "use the default": issue 19)
_NONZERO_COUNTS = ("num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok",
                   "experts_per_token", "num_key_value_heads", "head_dim")
# Attention layer types the memory model knows (planner/activations.py sliding_layer_flags):
# chunked attention (Llama 4) is counted as full attention, an over- not an under-estimate.
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


@lru_cache(maxsize=1)
def _limits() -> dict[str, Any]:
    return json.loads(_LIMITS.read_text())


def _reject_constant(token: str) -> Any:
    raise PlannerError(f"{token} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise PlannerError(f"{text} does not fit a finite number")
    return value


def _depth(doc: Any) -> int:
    """Nesting depth, walked without recursion so that the walk itself cannot overflow."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_config_json(raw: bytes, where: str) -> Any:
    """config.json bytes -> the JSON document, or one PlannerError line saying what is wrong with it."""
    limits = _limits()["json"]
    if len(raw) > limits["max_bytes"]:
        raise PlannerError(f"{where} is {len(raw):,} bytes; a config.json is a few kB (limit {limits['max_bytes']:,})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlannerError(f"{where} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                           "is it a config.json?") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except PlannerError as exc:
        raise PlannerError(f"{where}: {exc}; config.json values must be finite numbers") from None
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise PlannerError(f"{where} nests deeper than {limits['max_depth']} levels; is it a config.json?") from None
    except ValueError as exc:  # an integer literal past Python's digit limit
        raise PlannerError(f"{where} holds a number too large to read ({str(exc).splitlines()[0]})") from None
    if _depth(doc) > limits["max_depth"]:
        raise PlannerError(f"{where} nests deeper than {limits['max_depth']} levels; is it a config.json?")
    return doc


def _shown(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else f"{text[:12]}... ({len(text)} characters)"


def check_fields(cfg: Mapping[str, Any], name: str) -> None:
    """Every size field present is a non-negative integer within its bound; flags are booleans."""
    for key, bound in _limits()["max"].items():
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, float) and (not math.isfinite(value) or int(value) != value)) or value < 0:
            raise PlannerError(f"config for '{name}': {key} must be a non-negative integer, got {_shown(value)}")
        if value > bound:  # compared as ints: a 400-digit integer does not fit a float
            raise PlannerError(f"config for '{name}': {key} = {_shown(value)} is past any real model "
                               f"(limit {bound:,}); check the config.json")
    for key in _NONZERO_COUNTS:
        if cfg.get(key) == 0:
            raise PlannerError(f"config for '{name}': {key} is 0; no model can be built with it (leave the field "
                               "out for the architecture's default, or give the real count)")
    for key in _BOOLEAN_FIELDS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise PlannerError(f"config for '{name}': {key} must be true or false, got {cfg[key]!r}")
    for key in _LAYER_LISTS:
        value = cfg.get(key)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value)):
            raise PlannerError(f"config for '{name}': {key} must be a list of layer indices, got {value!r}")


def check_invariants(*, name: str, hidden: int, heads: int, kv_heads: int, layers: int, intermediate: int,
                     head_dim: int, explicit_head_dim: bool, experts: int, top_k: int,
                     layer_types: Any = None) -> None:
    """The shapes transformers' modules need: grouped-query heads, per-head width, top-k of E experts."""
    prefix = f"config for '{name}':"
    if heads > hidden:
        raise PlannerError(f"{prefix} num_attention_heads ({heads}) exceeds hidden_size ({hidden})")
    if kv_heads > heads or heads % kv_heads:
        raise PlannerError(f"{prefix} num_key_value_heads ({kv_heads}) must divide num_attention_heads ({heads})")
    if not explicit_head_dim and hidden % heads:
        raise PlannerError(f"{prefix} hidden_size ({hidden}) is not divisible by num_attention_heads ({heads}) "
                           "and there is no head_dim")
    if head_dim <= 0:
        raise PlannerError(f"{prefix} head_dim must be positive, got {head_dim}")
    if intermediate <= 0:
        raise PlannerError(f"{prefix} intermediate_size must be positive, got {intermediate}")
    if experts and top_k > experts:
        raise PlannerError(f"{prefix} num_experts_per_tok ({top_k}) exceeds the number of experts ({experts})")
    if layer_types is not None and (not isinstance(layer_types, list) or len(layer_types) != layers
                                    or not all(isinstance(t, str) for t in layer_types)):
        raise PlannerError(f"{prefix} layer_types must list one attention type per layer ({layers})")
    unknown = sorted({t for t in layer_types or () if t not in LAYER_TYPES})
    if unknown:
        raise PlannerError(f"{prefix} layer_types holds {', '.join(repr(t[:40]) for t in unknown[:3])}; this planner "
                           f"models {', '.join(LAYER_TYPES)} layers")


def quantized_checkpoint_note(cfg: Mapping[str, Any]) -> str | None:
    """A note when config.json says the checkpoint is already quantized (GPTQ, AWQ, bitsandbytes...).

    The estimate sizes weights by --mode/--precision, not by the checkpoint's own format; modelling
    pre-quantized serving is another issue's work, so until then the user is told, never left to guess.
    """
    qc = cfg.get("quantization_config")
    if not isinstance(qc, Mapping) or not qc:
        return None
    method = str(qc.get("quant_method") or ("bitsandbytes" if "load_in_4bit" in qc or "load_in_8bit" in qc
                                             else "unknown"))[:40]
    bits = qc.get("bits") or (4 if qc.get("load_in_4bit") else 8 if qc.get("load_in_8bit") else None)
    shown = f"{method}{f', {bits}-bit' if isinstance(bits, int) and not isinstance(bits, bool) else ''}"
    return (f"config.json holds a quantization_config ({shown}): this checkpoint is already quantized, but the "
            "estimate sizes its weights by --mode/--precision as if unquantized (pre-quantized checkpoints are "
            "not modelled yet); for QLoRA-style 4-bit training pass the unquantized model with --mode qlora")
