"""vLLM's GPU memory layout (V1 engine), version-keyed: what each rank holds and how many KV blocks it gets.

Read from vLLM's source (wheels of 0.10.0 and 0.19.0, unzipped and read, not copied):

- ``vllm/v1/worker/gpu_worker.py`` ``Worker.init_device`` / ``determine_available_memory``: the snapshot is
  taken after NCCL is up, ``requested_memory = ceil(total_memory x gpu_memory_utilization)``
  (``vllm/v1/worker/utils.py`` ``request_memory``) - a fraction of *total* memory, so the CUDA context
  and NCCL sit in the ``1 - utilization`` headroom; ``available = requested - (weights + torch peak
  increase + non-torch increase) [- CUDA-graph estimate]`` (``vllm/utils/mem_utils.py``
  ``memory_profiling``). The graph estimate is subtracted only where the release does it by default
  (``data/vllm.json`` rules; opt-in ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS`` @0.19.0). Before 0.9.2
  (read @0.8.5, @0.9.0) the budget was ``total x utilization`` less everything the device held outside
  torch, the CUDA context and NCCL included; the A100 exception of the batch defaults dates from 0.9.0.
- ``vllm/v1/worker/gpu_model_runner.py`` ``profile_run``: one dummy forward at
  ``max_num_batched_tokens`` and a dummy sampler run on ``min(max_num_seqs, max_num_batched_tokens)``
  rows of full-vocabulary logits.
- ``vllm/v1/kv_cache_interface.py``: page = coef x block x kv heads per rank x head size x dtype
  (coef 2 for K and V, 1 for MLA's latent of ``kv_lora_rank + qk_rope_head_dim``); sliding-window
  layers need ``cdiv(min(window - 1 + max_num_batched_tokens, max_model_len), block) + 1`` pages.
- ``vllm/v1/core/kv_cache_utils.py``: ``get_num_blocks = available // page // layers per group``;
  hybrid models group layers by spec (``_get_kv_cache_groups_uniform_page_size``), the logged
  "GPU KV cache size" is ``num_blocks // groups x block``, "Maximum concurrency" is
  ``num_blocks / cdiv(per-request bytes, page)`` and ``estimate_max_model_len`` binary-searches the
  longest ``max_model_len`` whose request fits when one does not.
- ``vllm/engine/arg_utils.py`` ``get_batch_defaults``: the server's ``max_num_batched_tokens`` /
  ``max_num_seqs`` by device memory, with the A100 exception (PR #17885).
- ``vllm/config/vllm.py`` ``_set_cudagraph_sizes``: capture sizes from ``max_num_seqs``.

Weights per tensor-parallel rank: column/row-parallel linears split by TP, KV projections keep
``max(1, kv_heads // tp)`` heads (replicated when fewer heads than ranks), vocab-parallel embeddings
pad the vocabulary to 64 and split it, MLA's down-projections, routers and norms are replicated.
"""
from __future__ import annotations

import json
import re
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import PlannerError
from ..params import Tensor, is_moe_layer, layer_tensors
from ..spec import ModelSpec
from .quant import QuantFormat

_DATA = Path(__file__).parent / "data" / "vllm.json"
GIB = 1024**3
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
KV_CACHE_DTYPES = ("auto", "fp8")
MLA_TYPES = ("deepseek_v2", "deepseek_v3")


@lru_cache(maxsize=1)
def vllm_data() -> dict[str, Any]:
    return json.loads(_DATA.read_text())


_RELEASE = re.compile(r"v?(\d{1,4})\.(\d{1,4})(?:\.(\d{1,4})(?:\.(\d{1,4}))?)?")  # 0.10.1.1: a post release


def _version_tuple(text: str) -> tuple[int, ...]:
    """``0.19.0`` / ``v0.19`` -> (0, 19, 0), ``0.10.1.1`` -> (0, 10, 1, 1); anything else (spaces, newlines,
    rc tags) is refused, so the release modelled is exactly the one written."""
    m = _RELEASE.fullmatch(str(text))
    if m is None:
        shown = str(text).encode("unicode_escape").decode("ascii")
        raise PlannerError(f"--engine-version '{shown}' is not a vLLM release number such as 0.19.0")
    major, minor, patch, post = m.groups()
    return (int(major), int(minor), int(patch or 0)) + ((int(post),) if post else ())


def check_version(text: str | None) -> str:
    """The vLLM release to model: ``text`` if this planner knows its rules, else a one-line error."""
    d = vllm_data()
    if text is None:
        return d["default_version"]
    v = _version_tuple(text)
    lo, hi = _version_tuple(d["min_version"]), _version_tuple(d["max_version"])
    if not lo <= v <= hi:
        raise PlannerError(f"--engine-version {text}: this planner models vLLM's V1 engine from {d['min_version']} "
                           f"to {d['max_version'].replace('.99', '.x')}; choose a release in that range")
    return ".".join(map(str, v))


def version_rules(version: str) -> dict[str, Any]:
    """The rules in force at ``version`` (later rows override earlier ones)."""
    v = _version_tuple(version)
    out: dict[str, Any] = {}
    for row in vllm_data()["rules"]:
        if _version_tuple(row["since"]) <= v:
            out.update(row)
    return out


@dataclass(frozen=True)
class EngineSettings:
    """vLLM engine arguments that change the memory layout; None means "vLLM's default"."""

    version: str | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    kv_cache_dtype: str = "auto"
    dtype: str = "bf16"
    enforce_eager: bool = False
    cudagraph_estimate: bool | None = None   # VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS; None: the release's default


@dataclass(frozen=True)
class Device:
    """One GPU as vLLM sees it: ``total_bytes`` is cudaMemGetInfo's total (what the fraction applies to)."""

    name: str
    total_bytes: int
    generation: str = ""  # ampere | ada | hopper | blackwell: picks kernel backends (MXFP4 padding)


@dataclass(frozen=True)
class EngineMemory:
    """Per-GPU memory of one vLLM replica and the KV cache it yields (worst rank)."""

    engine_version: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    device: str
    total_bytes: int
    requested_bytes: int
    weights_bytes: int
    activation_peak_bytes: int
    non_torch_bytes: int
    cudagraph_bytes: int
    kv_cache_bytes: int
    page_size_bytes: int
    layers_per_group: int
    kv_groups: int
    num_blocks: int
    kv_cache_tokens: int
    kv_bytes_per_token: int          # per rank, every layer it holds (full-attention layers' growth per token)
    max_model_len: int
    max_concurrency: float
    blocks_per_request: int
    fits: bool
    estimated_max_model_len: int | None
    max_num_seqs: int
    max_num_batched_tokens: int
    cudagraph_capture_sizes: tuple[int, ...]
    gpu_memory_utilization: float
    kv_cache_dtype: str
    dtype: str
    quantization: QuantFormat | None
    routed_bytes: int                # of weights_bytes, routed experts (a decode step reads those its tokens pick)
    notes: tuple[str, ...] = field(default=(), compare=False)

    def log_lines(self) -> tuple[str, ...]:
        """The figures as vLLM's startup log prints them."""
        lines = [f"Model loading took {self.weights_bytes / GIB:.4f} GiB memory",
                 f"Available KV cache memory: {self.kv_cache_bytes / GIB:.2f} GiB"]
        if self.fits:
            lines += [f"GPU KV cache size: {self.kv_cache_tokens:,} tokens",
                      f"Maximum concurrency for {self.max_model_len:,} tokens per request: {self.max_concurrency:.2f}x"]
        elif self.kv_cache_bytes <= 0:
            lines.append("ValueError: No available memory for the cache blocks. Try increasing "
                         "`gpu_memory_utilization` when initializing the engine.")
        else:
            lines.append(f"ValueError: To serve at least one request with the model's max seq len "
                         f"({self.max_model_len}), ... Based on the available memory, the estimated maximum model "
                         f"length is {self.estimated_max_model_len}.")
        return tuple(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": "vllm", "engine_version": self.engine_version,
            "tensor_parallel_size": self.tensor_parallel_size, "pipeline_parallel_size": self.pipeline_parallel_size,
            "device": self.device, "total_bytes_per_gpu": self.total_bytes, "requested_bytes_per_gpu": self.requested_bytes,
            "per_gpu": {"weights_bytes": self.weights_bytes, "activation_peak_bytes": self.activation_peak_bytes,
                        "non_torch_bytes": self.non_torch_bytes, "cudagraph_bytes": self.cudagraph_bytes,
                        "kv_cache_bytes": self.kv_cache_bytes},
            "kv_cache_tokens": self.kv_cache_tokens, "num_gpu_blocks": self.num_blocks,
            "page_size_bytes": self.page_size_bytes, "kv_bytes_per_token": self.kv_bytes_per_token,
            "routed_expert_bytes": self.routed_bytes, "kv_groups": self.kv_groups,
            "layers_per_kv_group": self.layers_per_group, "blocks_per_request": self.blocks_per_request,
            "max_model_len": self.max_model_len, "max_concurrency": round(self.max_concurrency, 2),
            "fits": self.fits, "estimated_max_model_len": self.estimated_max_model_len,
            "max_num_seqs": self.max_num_seqs, "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization, "kv_cache_dtype": self.kv_cache_dtype,
            "dtype": self.dtype, "quantization": self.quantization.to_dict() if self.quantization else None,
            "cudagraph_capture_sizes": len(self.cudagraph_capture_sizes),
            "vllm_log": list(self.log_lines()), "notes": list(self.notes),
        }


# ---------------------------------------------------------------- defaults


def batch_defaults(device: Device, version: str | None = None) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of ``vllm serve`` on this device (get_batch_defaults)."""
    d = vllm_data()["batch_defaults"]
    excluded = d["large_excluded_names"] if version_rules(check_version(version))["a100_exception"] else []
    large = device.total_bytes >= d["large_min_gib"] * GIB and not any(x in device.name.lower() for x in excluded)
    row = d["large" if large else "small"]
    return row["max_num_batched_tokens"], row["max_num_seqs"]


def cudagraph_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> tuple[int, ...]:
    """``_set_cudagraph_sizes`` @0.19.0: the batch sizes decode graphs are captured for."""
    cap = min(max_num_seqs * 2, vllm_data()["cudagraph_sizes"]["cap"], max_num_batched_tokens)
    sizes = [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, cap + 1, 16))
    return tuple(s for s in sizes if s <= cap)


# ---------------------------------------------------------------- weights per rank

_REPLICATED = ("q_a_proj", "kv_a_proj_with_mqa", "router", "router.bias")
_ROW_PARALLEL_BIAS = ("o_proj.bias", "down_proj.bias", "experts.down_proj_bias")


def _kv_heads_per_rank(spec: ModelSpec, tp: int) -> int:
    return max(1, spec.num_key_value_heads // tp)


def _tensor_numel_per_rank(spec: ModelSpec, name: str, numel: int, tp: int) -> tuple[int, bool]:
    """(elements this rank holds, sharded?) for one tensor of a decoder layer."""
    if name in _REPLICATED or name.endswith(_ROW_PARALLEL_BIAS):
        return numel, False
    if name in ("k_proj", "v_proj", "k_proj.bias", "v_proj.bias"):
        share = _kv_heads_per_rank(spec, tp) / spec.num_key_value_heads
        return math.ceil(numel * share), True
    if name == "qkv_proj":  # phi3: q part split, kv part keeps max(1, kv // tp) heads
        q, kv = spec.q_dim * spec.hidden_size, spec.kv_dim * spec.hidden_size
        return q // tp + math.ceil(2 * kv * _kv_heads_per_rank(spec, tp) / spec.num_key_value_heads), True
    return math.ceil(numel / tp), True


def _module_name(idx: int, t: Tensor) -> str:
    """The checkpoint's module name of a decoder tensor, as ignore lists spell it."""
    sub = "self_attn" if t.group == "attention" else t.group
    name = "experts" if t.kind == "experts" else t.name
    return f"model.layers.{idx}.{sub}.{name}"


def _layer_bytes(spec: ModelSpec, idx: int, tp: int, dtype_bytes: int, quant: QuantFormat | None,
                 generation: str = "") -> tuple[float, float]:
    """(bytes held per rank, of which routed experts) of decoder layer ``idx``."""
    held = routed = 0.0
    for t in layer_tensors(spec, idx):
        if t.kind == "norm":
            b = t.numel * dtype_bytes
        else:
            n, sharded = _tensor_numel_per_rank(spec, t.name, t.numel, tp)
            quantized = (quant is not None and t.kind in ("linear", "experts") and t.group != "router"
                         and (quant.quantizes == "linears" or t.kind == "experts")
                         and not (quant.skip and quant.skips(_module_name(idx, t))))
            if quantized and t.shape:
                n_in, n_out = t.shape
                per = n / (n_in * n_out * t.count)  # this rank's share
                b = quant.tensor_bytes(n_in, n_out, t.count) * per
                if t.kind == "experts":
                    b *= quant.expert_scale(generation, spec.hidden_size, spec.moe_intermediate_size)
            else:
                b = n * dtype_bytes
        held += b
        routed += b if t.routed else 0
    return held, routed


def _stage_layers(spec: ModelSpec, pp: int) -> list[range]:
    """Layers of each pipeline stage (vllm/distributed/utils.py get_pp_indices: even split, the
    remainder on the last stages)."""
    L = spec.num_hidden_layers
    sizes = [L // pp] * pp
    for i in range(L % pp):
        sizes[pp - 1 - i] += 1
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


def weights_per_rank(spec: ModelSpec, settings: EngineSettings, quant: QuantFormat | None,
                     stage: int = 0, generation: str = "") -> tuple[int, int]:
    """(bytes held, of which routed experts) on one rank of pipeline stage ``stage``."""
    tp, pp = settings.tensor_parallel_size, settings.pipeline_parallel_size
    d = vllm_data()
    db = DTYPE_BYTES[settings.dtype]
    layers = _stage_layers(spec, pp)[stage]
    held = read = 0.0
    cache: dict[bool, tuple[float, float]] = {}
    for i in layers:
        kind = is_moe_layer(spec, i)
        if quant is not None and quant.skip:  # an ignore list can name single layers: no sharing
            h, r = _layer_bytes(spec, i, tp, db, quant, generation)
        else:
            if kind not in cache:
                cache[kind] = _layer_bytes(spec, i, tp, db, quant, generation)
            h, r = cache[kind]
        held, read = held + h, read + r
    pad = d["vocab_padding"]["value"]
    vocab_rank = math.ceil(math.ceil(spec.vocab_size / pad) * pad / tp)
    table = vocab_rank * spec.hidden_size * db
    if stage == 0:
        held += table
    if stage == pp - 1:
        head = table if (not spec.tie_word_embeddings or pp > 1) else 0
        held += head + spec.hidden_size * db
    rotary = int(spec.get("qk_rope_head_dim") or spec.head_dim) if spec.model_type in MLA_TYPES else spec.head_dim
    held += int(spec.max_position_embeddings or spec.get("max_position_embeddings") or 0) * rotary * d["rope_cache_dtype_bytes"]["value"]
    return int(held), int(read)


# ---------------------------------------------------------------- profile-run peak


def activation_peak(spec: ModelSpec, settings: EngineSettings, mnbt: int, max_num_seqs: int,
                    last_stage: bool = True) -> int:
    """torch peak increase of ``profile_run``: max(one layer's live tensors at ``mnbt`` tokens,
    the dummy sampler's ``min(max_num_seqs, mnbt) x vocab`` logits)."""
    d = vllm_data()
    tp, db, h = settings.tensor_parallel_size, DTYPE_BYTES[settings.dtype], spec.hidden_size
    live_hidden = d["forward_live_hidden"]["value"] * h
    attn = (spec.num_attention_heads // tp + 2 * _kv_heads_per_rank(spec, tp)) * spec.head_dim
    mlp = 0
    for i in {next((j for j in range(spec.num_hidden_layers) if is_moe_layer(spec, j) == m), None)
              for m in (True, False)} - {None}:
        if is_moe_layer(spec, i):
            width = math.ceil(spec.moe_intermediate_size / tp)
            mlp = max(mlp, spec.num_experts_per_tok * (3 * width + h))  # fused_moe intermediate caches 1-3
        else:
            width = int(spec.get("intermediate_size_mlp")) if spec.model_type == "llama4_text" and spec.is_moe \
                else spec.intermediate_size
            mlp = max(mlp, 3 * math.ceil(width / tp))  # gate_up output (2I) + activation output (I)
    forward = mnbt * (live_hidden + max(attn, mlp)) * db
    if not last_stage:
        return int(forward)
    pad = d["vocab_padding"]["value"]
    vocab = math.ceil(spec.vocab_size / pad) * pad
    rows = min(max_num_seqs, mnbt)
    per_logit = version_rules(check_version(settings.version)).get("sampler_bytes_per_logit",
                                                                    d["sampler_bytes_per_logit"]["value"])
    sampler = rows * vocab * per_logit + mnbt * h * db
    return int(max(forward, sampler))


# ---------------------------------------------------------------- KV cache


def _kv_layout(spec: ModelSpec, tp: int, kv_bytes: int, block: int) -> tuple[int, list[bool]]:
    """(page size in bytes per layer, sliding flag per layer)."""
    if spec.model_type in MLA_TYPES:
        latent = int(spec.get("kv_lora_rank")) + int(spec.get("qk_rope_head_dim"))
        page = block * latent * kv_bytes  # coef 1, one latent "head", replicated on every TP rank
    else:
        page = 2 * block * _kv_heads_per_rank(spec, tp) * spec.head_dim * kv_bytes
    if spec.sliding_window:
        from ..activations import sliding_layer_flags  # the layer layout rule lives there; only windowed models
        sliding = sliding_layer_flags(spec)
    else:
        sliding = [False] * spec.num_hidden_layers
    return page, list(sliding)


def _per_layer_need(sliding: bool, page: int, block: int, window: int | None, mml: int, mnbt: int) -> int:
    """``max_memory_usage_bytes`` of one layer's spec (kv_cache_interface.py @0.19.0)."""
    if sliding and window:
        return (math.ceil(min(window - 1 + mnbt, mml) / block) + 1) * page
    return math.ceil(mml / block) * page


def _groups(flags: list[bool]) -> tuple[int, int]:
    """(layers per group, number of groups): ``_get_kv_cache_groups_uniform_page_size``."""
    counts = [c for c in (flags.count(False), flags.count(True)) if c]
    if len(counts) == 1:
        return counts[0], 1
    size = min(counts)
    if max(counts) < min(counts) * 1.5:
        size = max(counts)
    return size, sum(math.ceil(c / size) for c in counts)


def _estimate_max_model_len(need, available: int, hi: int) -> int:
    """Binary search of ``estimate_max_model_len`` (kv_cache_utils.py @0.19.0)."""
    lo, best = 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if need(mid) <= available:
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def engine_memory(spec: ModelSpec, device: Device, settings: EngineSettings,
                  quant: QuantFormat | None = None) -> EngineMemory:
    """vLLM's memory layout for ``spec`` on TP x PP GPUs like ``device`` (the worst rank decides)."""
    d = vllm_data()
    version = check_version(settings.version)
    rules = version_rules(version)
    tp, pp = settings.tensor_parallel_size, settings.pipeline_parallel_size
    if tp < 1 or pp < 1:
        raise PlannerError("--tensor-parallel-size and --pipeline-parallel-size must be positive integers")
    if spec.num_attention_heads % tp:
        raise PlannerError(f"--tensor-parallel-size {tp}: vLLM needs the {spec.num_attention_heads} attention heads "
                           f"of {spec.name} to divide evenly across ranks; choose a divisor of "
                           f"{spec.num_attention_heads}")
    if pp > spec.num_hidden_layers:
        raise PlannerError(f"--pipeline-parallel-size {pp} is more than the {spec.num_hidden_layers} layers")
    if settings.dtype not in DTYPE_BYTES:
        raise PlannerError(f"--precision {settings.dtype}: vLLM serves bf16, fp16 or fp32 (quantized checkpoints "
                           "via --quantization)")
    if settings.kv_cache_dtype not in KV_CACHE_DTYPES:
        raise PlannerError(f"--kv-cache-dtype must be one of {', '.join(KV_CACHE_DTYPES)}, got "
                           f"'{settings.kv_cache_dtype}'")
    notes: list[str] = []
    derived_len = spec.max_position_embeddings or spec.get("max_position_embeddings")
    mml = settings.max_model_len or derived_len
    if mml is None:
        raise PlannerError(f"{spec.name} has no max_position_embeddings in its config: give --max-model-len")
    if derived_len and settings.max_model_len and settings.max_model_len > derived_len:
        raise PlannerError(f"--max-model-len {settings.max_model_len} is above {spec.name}'s max_position_embeddings "
                           f"({derived_len}); vLLM refuses it (unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1)")
    util = settings.gpu_memory_utilization if settings.gpu_memory_utilization is not None \
        else d["gpu_memory_utilization"]["value"]
    d_mnbt, d_seqs = batch_defaults(device, version)
    mnbt = settings.max_num_batched_tokens or d_mnbt
    seqs = settings.max_num_seqs or d_seqs
    if mnbt < seqs and settings.max_num_batched_tokens:
        raise PlannerError(f"--max-num-batched-tokens ({mnbt}) must be at least --max-num-seqs ({seqs}), as vLLM "
                           "requires")
    mnbt = max(mnbt, seqs) if not settings.max_num_batched_tokens else mnbt
    block = d["block_size"]["value"]
    requested = math.ceil(device.total_bytes * util)
    graphs = () if settings.enforce_eager else cudagraph_capture_sizes(seqs, mnbt)
    estimate_on = rules["cudagraph_estimate_default"] if settings.cudagraph_estimate is None \
        else settings.cudagraph_estimate
    cg = len(graphs) * d["cudagraph_bytes_per_graph"]["value"] if estimate_on else 0
    if graphs and not estimate_on:
        notes.append(f"vLLM {version} captures {len(graphs)} CUDA-graph sizes after sizing the KV cache (not "
                     "subtracted: they use the 1 - gpu_memory_utilization headroom)")
    non_torch = d["non_torch_bytes"][rules["accounting"]]["tp1" if tp * pp == 1 else "tp_many"]
    kv_bytes = 1 if settings.kv_cache_dtype == "fp8" else DTYPE_BYTES[settings.dtype]

    worst: tuple | None = None
    for stage, layers in enumerate(_stage_layers(spec, pp)):
        held, read = weights_per_rank(spec, settings, quant, stage, device.generation)
        peak = activation_peak(spec, settings, mnbt, seqs, last_stage=stage == pp - 1)
        available = requested - held - peak - non_torch - cg
        page, flags_all = _kv_layout(spec, tp, kv_bytes, block)
        flags = [flags_all[i] for i in layers]
        size, n_groups = _groups(flags)
        blocks = max(0, available // page // size) if available > 0 else 0
        row = (blocks, stage, held, read, peak, available, page, flags, size, n_groups)
        if worst is None or blocks < worst[0]:
            worst = row
    assert worst is not None
    blocks, stage, held, read, peak, available, page, flags, size, n_groups = worst
    window = spec.sliding_window

    def need(length: int) -> int:  # bytes one request of ``length`` tokens needs across this rank's layers
        return sum(_per_layer_need(f, page, block, window, length, mnbt) for f in flags)

    tokens = blocks // n_groups * block
    # get_max_concurrency_for_kv_cache_config: one layer's need per KV-cache group, summed over the groups
    groups_of = {f: math.ceil(flags.count(f) / size) for f in set(flags)}
    per_request_blocks = math.ceil(sum(n * _per_layer_need(f, page, block, window, mml, mnbt)
                                       for f, n in groups_of.items()) / page)
    concurrency = blocks / per_request_blocks if per_request_blocks else 0.0
    fits = available > 0 and need(mml) <= available
    est_len = None
    if not fits:
        est_len = _estimate_max_model_len(need, max(available, 0), mml) if available > 0 else 0
    kv_per_token = page // block * flags.count(False) + (page // block * flags.count(True) if not window else 0)
    return EngineMemory(
        engine_version=version, tensor_parallel_size=tp, pipeline_parallel_size=pp, device=device.name,
        total_bytes=device.total_bytes, requested_bytes=requested, weights_bytes=held, activation_peak_bytes=peak,
        non_torch_bytes=non_torch, cudagraph_bytes=cg, kv_cache_bytes=int(available), page_size_bytes=page,
        layers_per_group=size, kv_groups=n_groups, num_blocks=int(blocks), kv_cache_tokens=int(tokens),
        kv_bytes_per_token=int(kv_per_token), max_model_len=int(mml), max_concurrency=concurrency,
        blocks_per_request=per_request_blocks, fits=fits, estimated_max_model_len=est_len, max_num_seqs=seqs,
        max_num_batched_tokens=mnbt, cudagraph_capture_sizes=graphs, gpu_memory_utilization=util,
        kv_cache_dtype=settings.kv_cache_dtype, dtype=settings.dtype, quantization=quant, routed_bytes=read,
        notes=tuple(notes))
