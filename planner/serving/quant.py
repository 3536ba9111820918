"""Checkpoint formats as vLLM serves them: which format a checkpoint is, and what its weights cost.

vLLM reads ``quantization_config`` from config.json (``ModelConfig._verify_quantization`` in
``vllm/config/model.py`` @0.19.0) and refuses a ``--quantization`` that disagrees with it; an
unquantized checkpoint takes ``--quantization fp8`` (dynamic per-tensor fp8 at load) or
``bitsandbytes`` (in-flight 4-bit). The bytes per weight and scale layouts are data
(``data/quantization.json``), each row citing the quantization module it was read from.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from ..errors import PlannerError

_DATA = Path(__file__).parent / "data" / "quantization.json"
_PUBLISHED = Path(__file__).parent / "data" / "published_quantization.json"
# Formats vLLM can apply to an unquantized checkpoint while loading it.
IN_FLIGHT = ("fp8", "bitsandbytes")


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return json.loads(_DATA.read_text())


def format_names() -> tuple[str, ...]:
    return tuple(_data()["formats"])


@dataclass(frozen=True)
class QuantFormat:
    """Storage of quantized tensors: payload bytes per weight plus scales per group / output row."""

    name: str
    bytes_per_weight: float
    per_group_bytes: float
    group: int
    per_row_bytes: float
    quantizes: str          # "linears" (every decoder linear and expert) or "experts" (MoE experts only)
    weight_bits: int
    compute: str            # kernel path: fp8 | w4a16 | fp4 | int8
    source: str
    per_input_bytes: float = 0.0
    origin: str = "flag"    # "config.json" when read from quantization_config, "flag" for --quantization
    expert_padding: tuple[tuple[str, int, int], ...] = ()  # (generation, hidden multiple, intermediate multiple)
    skip: tuple[str, ...] = ()  # the checkpoint's ignore list: modules left in the model dtype

    def skips(self, module: str) -> bool:
        """Whether vLLM leaves ``module`` (``model.layers.3.self_attn.q_proj``) unquantized.

        ``is_layer_skipped`` (quantization/utils/quant_utils.py @0.19.0): an exact module name in the
        ignore list (fp8 ``ignored_layers``, fbgemm_fp8 / fp8 ``modules_to_not_convert``); fused
        qkv_proj / gate_up_proj are checked shard by shard, which the planner's unfused tensors already
        are; an expert module is skipped when an ignore entry containing "experts" contains its prefix.
        compressed-tensors ``ignore`` entries may be ``re:`` patterns (compressed_tensors/utils.py
        ``find_matched_target``: ``re.match``).
        """
        for entry in self.skip:
            if entry.startswith("re:"):
                if re.match(entry[3:], module):
                    return True
            elif entry == module or (module.endswith(".experts") and "experts" in entry and module in entry):
                return True
        return False

    def expert_scale(self, generation: str, hidden: int, intermediate: int) -> float:
        """How much larger padded expert weights are than (hidden x intermediate) on this GPU generation."""
        for gen, mh, mi in self.expert_padding:
            if gen == generation:
                def up(x: int, m: int) -> int:
                    return -(-x // m) * m
                return up(hidden, mh) * up(intermediate, mi) / (hidden * intermediate)
        return 1.0

    def tensor_bytes(self, n_in: int, n_out: int, count: int = 1) -> float:
        """Bytes of ``count`` quantized (n_in x n_out) weights with their scales."""
        n = n_in * n_out
        groups = n / self.group if self.group else 0
        return count * (n * self.bytes_per_weight + groups * self.per_group_bytes + n_out * self.per_row_bytes
                        + n_in * self.per_input_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight_bits": self.weight_bits, "group": self.group, "quantizes": self.quantizes,
                "compute": self.compute, "origin": self.origin, "source": self.source}


def quant_format(name: str, *, group: int | None = None, origin: str = "flag") -> QuantFormat:
    rows = _data()["formats"]
    if name not in rows:
        raise PlannerError(f"--quantization '{name}' is not one of {', '.join(rows)}")
    row = rows[name]
    fmt = QuantFormat(name=name, bytes_per_weight=row["bytes_per_weight"], per_group_bytes=row["per_group_bytes"],
                      group=row["group"], per_row_bytes=row["per_row_bytes"], quantizes=row["quantizes"],
                      weight_bits=row["weight_bits"], compute=row["compute"], source=row["source"],
                      per_input_bytes=row.get("per_input_bytes", 0.0), origin=origin,
                      expert_padding=tuple((g, *v) for g, v in row.get("expert_padding", {}).items() if g != "source"))
    if group is not None and group > 0:
        fmt = replace(fmt, group=group)
    elif group is not None:  # group_size -1: one scale set per output channel instead of per group
        fmt = replace(fmt, group=0, per_row_bytes=fmt.per_group_bytes, per_group_bytes=0)
    return fmt


def _ignore_list(qc: Mapping[str, Any]) -> tuple[str, ...]:
    """The modules a checkpoint leaves unquantized: fp8.py reads ``ignored_layers`` then
    ``modules_to_not_convert``, fbgemm_fp8.py ``modules_to_not_convert``, compressed_tensors.py ``ignore``."""
    for key in ("ignored_layers", "modules_to_not_convert", "ignore"):
        value = qc.get(key)
        if value:
            return tuple(str(v) for v in value)
    return ()


def _compressed_tensors(qc: Mapping[str, Any]) -> QuantFormat:
    """llm-compressor checkpoints (compressed_tensors.py): the first config group's weight scheme."""
    fmt_name = str(qc.get("format") or "")
    groups = qc.get("config_groups") or {}
    weights = next(iter(groups.values()), {}).get("weights", {}) if isinstance(groups, Mapping) else {}
    bits, kind = weights.get("num_bits"), weights.get("type")
    if "nvfp4" in fmt_name or (bits == 4 and kind == "float"):
        return quant_format("nvfp4", origin="config.json")
    if bits == 8 and kind == "float":
        return quant_format("fp8", origin="config.json")
    if bits == 8 and kind == "int":
        return replace(quant_format("fp8", origin="config.json"), name="int8", compute="int8",
                       source="compressed_tensors W8A8 int8: one int8 per weight + fp32 scale per output channel")
    if bits == 4 and kind == "int":
        group = weights.get("group_size")
        return replace(quant_format("gptq", group=group if isinstance(group, int) else 128, origin="config.json"),
                       name="w4a16", per_input_bytes=0.0,
                       source="compressed_tensors W4A16 (Marlin): 4-bit packed weights, fp16 scale per group")
    raise PlannerError(f"config.json quantization_config (compressed-tensors, {bits}-bit {kind}) is not a format "
                       f"this planner models; pass --quantization with one of {', '.join(format_names())}")


def from_config(config: Mapping[str, Any]) -> QuantFormat | None:
    """The format a checkpoint declares in ``quantization_config`` (None when unquantized)."""
    qc = config.get("quantization_config")
    if not isinstance(qc, Mapping):
        return None
    method = str(qc.get("quant_method") or "").lower()
    mapped = _data()["config_methods"].get(method)
    if mapped is None:
        raise PlannerError(f"config.json quantization_config.quant_method '{method}' is not a format this planner "
                           f"models; pass --quantization with one of {', '.join(format_names())}")
    return replace(_declared(qc, mapped), skip=_ignore_list(qc))


def _declared(qc: Mapping[str, Any], mapped: str) -> QuantFormat:
    if mapped == "compressed-tensors":
        return _compressed_tensors(qc)
    if mapped == "modelopt":
        algo = str(qc.get("quant_algo") or qc.get("quantization", {}).get("quant_algo") or "").upper()
        return quant_format("nvfp4" if "FP4" in algo else "fp8", origin="config.json")
    if mapped == "bitsandbytes" and qc.get("load_in_8bit"):
        raise PlannerError("8-bit bitsandbytes checkpoints are not served by vLLM; use a 4-bit or fp8 checkpoint")
    group = qc.get("group_size", qc.get("q_group_size"))
    return quant_format(mapped, group=group if isinstance(group, int) and mapped in ("awq", "gptq") else None,
                        origin="config.json")


@lru_cache(maxsize=1)
def _published() -> dict[str, Any]:
    return json.loads(_PUBLISHED.read_text())["checkpoints"]


def with_published_quantization(config: Mapping[str, Any], hf_id: str | None) -> tuple[Mapping[str, Any], str | None]:
    """``config`` with the Hub checkpoint's ``quantization_config`` where the shipped copy lacks it, and the
    source it came from (None when nothing was added)."""
    row = _published().get(hf_id or "")
    if row is None or "quantization_config" in config:
        return config, None
    return {**config, "quantization_config": row["quantization_config"]}, row["source"]


def served_format(config: Mapping[str, Any], flag: str | None) -> QuantFormat | None:
    """What vLLM would serve: the checkpoint's own format, or ``--quantization``.

    A flag that contradicts the checkpoint is refused as vLLM refuses it; a 4-bit format named for an
    unquantized checkpoint stands for "a checkpoint of this model in that format" (AWQ, GPTQ, MXFP4
    and NVFP4 need pre-quantized weights).
    """
    declared = from_config(config)
    if flag is None:
        return declared
    wanted = quant_format(flag)
    if declared is not None and declared.name != flag and not (declared.name == "w4a16" and flag == "gptq"):
        raise PlannerError(f"--quantization {flag} does not match the checkpoint's quantization_config "
                           f"({declared.name}); vLLM refuses the mismatch: drop --quantization")
    return declared or wanted
