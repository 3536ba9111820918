"""The serving flags of ``plan MODEL --mode inference --engine vllm`` (issue 21), with vLLM's own names.

Declared here and grafted onto ``plan``'s signature by ``with_serving_flags`` so that plan_cmd.py only
gains a decorator and one branch. Each flag is checked here in one line (ranges, choices, combinations);
the work is done by planner/cli/serving_request.py.
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, fields
from typing import Any, Optional

import typer

from ..errors import PlannerError

ENGINES = ("transformers", "vllm")
KV_DTYPES = ("auto", "fp8")


@dataclass(frozen=True)
class ServingFlags:
    engine: str = "transformers"
    engine_version: Optional[str] = None
    tensor_parallel_size: Optional[int] = None
    pipeline_parallel_size: Optional[int] = None
    gpu_memory_utilization: Optional[float] = None
    max_model_len: Optional[int] = None
    max_num_seqs: Optional[int] = None
    max_num_batched_tokens: Optional[int] = None
    kv_cache_dtype: Optional[str] = None
    quantization: Optional[str] = None
    enforce_eager: bool = False
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    concurrency: Optional[str] = None
    request_rate: Optional[float] = None
    ttft_ms: Optional[float] = None
    itl_ms: Optional[float] = None

    def given(self) -> list[str]:
        """The serving flags set to something other than their default, as --flag names."""
        out = []
        for f in fields(self):
            if f.name != "engine" and getattr(self, f.name) not in (None, False):
                out.append("--" + f.name.replace("_", "-"))
        return out


_HELP = {
    "engine": "Inference engine to plan for: transformers (one generate batch; default) | vllm (a served deployment).",
    "engine_version": "vLLM release whose memory rules apply (default 0.19.0).",
    "tensor_parallel_size": "vLLM --tensor-parallel-size (default: searched; with --gpu Nx: N).",
    "pipeline_parallel_size": "vLLM --pipeline-parallel-size (default 1).",
    "gpu_memory_utilization": "vLLM --gpu-memory-utilization, a fraction of total GPU memory (default 0.9).",
    "max_model_len": "vLLM --max-model-len (default: the model's max_position_embeddings).",
    "max_num_seqs": "vLLM --max-num-seqs (default: vLLM's per-GPU default).",
    "max_num_batched_tokens": "vLLM --max-num-batched-tokens (default: vLLM's per-GPU default).",
    "kv_cache_dtype": "vLLM --kv-cache-dtype: auto | fp8.",
    "quantization": "vLLM --quantization: fp8 | awq | gptq | bitsandbytes | mxfp4 | nvfp4 (default: config.json's).",
    "enforce_eager": "vLLM --enforce-eager (no CUDA graphs).",
    "input_tokens": "Prompt tokens per request (default 1024, vllm bench serve's random dataset).",
    "output_tokens": "Output tokens per request (default 128, vllm bench serve's random dataset).",
    "concurrency": "Concurrent users: N or max (default: max, unless --request-rate).",
    "request_rate": "Requests per second (Poisson arrivals) instead of --concurrency.",
    "ttft_ms": "SLO: median time to first token, ms.",
    "itl_ms": "SLO: median inter-token latency, ms.",
}
_TYPES = {"engine": str, "engine_version": Optional[str], "tensor_parallel_size": Optional[int],
          "pipeline_parallel_size": Optional[int], "gpu_memory_utilization": Optional[float],
          "max_model_len": Optional[int], "max_num_seqs": Optional[int], "max_num_batched_tokens": Optional[int],
          "kv_cache_dtype": Optional[str], "quantization": Optional[str], "enforce_eager": bool,
          "input_tokens": Optional[int], "output_tokens": Optional[int], "concurrency": Optional[str],
          "request_rate": Optional[float], "ttft_ms": Optional[float], "itl_ms": Optional[float]}


SERVING_FLAG_NAMES = tuple(f.name for f in fields(ServingFlags))


def _option(name: str) -> Any:
    flag = "--" + name.replace("_", "-")
    default = ServingFlags.__dataclass_fields__[name].default
    return typer.Option(default, flag, help=_HELP[name])


def with_serving_flags(func):
    """Add the serving flags to a typer command whose last parameter is ``serving: ServingFlags``."""
    sig = inspect.signature(func)
    names = [f.name for f in fields(ServingFlags)]
    params = [p for p in sig.parameters.values() if p.name != "serving"]
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_option(n), annotation=_TYPES[n])
             for n in names]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        flags = ServingFlags(**{n: kwargs.pop(n) for n in names if n in kwargs})
        return func(*args, serving=flags, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[*params, *extra])
    wrapper.__annotations__ = {**{k: v for k, v in func.__annotations__.items() if k != "serving"}, **_TYPES}
    return wrapper


# ---------------------------------------------------------------- checks (one line each)


def _need(flag: str, value: Any, ok: bool, what: str) -> None:
    if value is not None and not ok:
        raise PlannerError(f"{flag} must be {what}, got {value}")


# Tool sanity bounds (like planner/cli/validate.py's): stop typos, not real deployments.
MAX_TOKENS = 2**24
MAX_PARALLEL = 1024


def check_serving(f: ServingFlags, mode: str) -> None:
    """Refuse bad values and flags that do not apply, in one line."""
    if f.engine not in ENGINES:
        raise PlannerError(f"--engine must be one of {', '.join(ENGINES)}, got '{f.engine}'")
    if f.engine != "vllm":
        if f.given():
            raise PlannerError(f"{', '.join(f.given())}: a vLLM deployment flag; add --engine vllm (with --mode "
                               "inference)")
        return
    if mode != "inference":
        raise PlannerError(f"--engine vllm plans serving: use it with --mode inference, not --mode {mode}")
    for flag, v in (("--tensor-parallel-size", f.tensor_parallel_size),
                    ("--pipeline-parallel-size", f.pipeline_parallel_size)):
        _need(flag, v, v is None or 1 <= v <= MAX_PARALLEL, f"a positive integer up to {MAX_PARALLEL}")
    for flag, v in (("--max-model-len", f.max_model_len), ("--max-num-seqs", f.max_num_seqs),
                    ("--max-num-batched-tokens", f.max_num_batched_tokens), ("--input-tokens", f.input_tokens),
                    ("--output-tokens", f.output_tokens)):
        _need(flag, v, v is None or 1 <= v <= MAX_TOKENS, f"a positive integer up to {MAX_TOKENS:,}")
    u = f.gpu_memory_utilization
    _need("--gpu-memory-utilization", u, u is None or (math.isfinite(u) and 0 < u <= 1), "a fraction in (0, 1]")
    for flag, v in (("--request-rate", f.request_rate), ("--ttft-ms", f.ttft_ms), ("--itl-ms", f.itl_ms)):
        _need(flag, v, v is None or (math.isfinite(v) and v > 0), "a positive finite number")
    if f.kv_cache_dtype is not None and f.kv_cache_dtype not in KV_DTYPES:
        raise PlannerError(f"--kv-cache-dtype must be one of {', '.join(KV_DTYPES)}, got '{f.kv_cache_dtype}'")
    if f.quantization is not None:
        from ..serving.quant import format_names
        if f.quantization not in format_names():
            raise PlannerError(f"--quantization must be one of {', '.join(format_names())}, got '{f.quantization}'")
    if f.engine_version is not None:
        from ..serving.vllm_memory import check_version
        check_version(f.engine_version)
    if f.concurrency is not None and f.request_rate is not None:
        raise PlannerError("--concurrency and --request-rate are two ways to give the load: give one")
    parse_concurrency(f.concurrency)


def parse_concurrency(text: str | None) -> int | str | None:
    """``--concurrency N|max``."""
    if text is None:
        return None
    t = text.strip().lower()
    if t == "max":
        return "max"
    try:
        n = int(t)
    except ValueError:
        raise PlannerError(f"--concurrency must be a positive integer or 'max', got '{text}'") from None
    if not 1 <= n <= MAX_TOKENS:
        raise PlannerError(f"--concurrency must be a positive integer up to {MAX_TOKENS:,} or 'max', got {text}")
    return n
