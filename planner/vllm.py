"""The vLLM command that serves a base model with N LoRA adapters: the production twin of ``plan serve``.

Pure text from plain values, so ``plan MODEL --mode inference --adapters N`` can print it without
importing anything heavy. Flags as in vLLM's engine arguments
(https://docs.vllm.ai/en/latest/serving/engine_args.html, LoRA: https://docs.vllm.ai/en/latest/features/lora.html):
``--enable-lora --lora-modules NAME=PATH ... --max-loras K --max-lora-rank R``; a request picks
an adapter by its ``model`` field, exactly as with ``plan serve``.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Sequence

from .errors import PlannerError
from .job import Job

# vLLM accepts only these --max-lora-rank values (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "int4": "bfloat16", "int8": "bfloat16"}
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"


@dataclass(frozen=True)
class VllmCommand:
    """``argv`` of ``vllm serve``, the environment it wants, and notes on choices made."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """One shell line (pasteable)."""
        return " ".join([*self.env, shlex.join(self.argv)])

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.text, "argv": list(self.argv), "env": list(self.env), "notes": list(self.notes)}


def vllm_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that is >= ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise PlannerError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def vllm_serve_command(model: str, adapters: int | Sequence[tuple[str, str]], *, max_lora_rank: int,
                       max_loras: int | None = None, precision: str = "bf16", max_model_len: int | None = None,
                       tensor_parallel_size: int = 1, port: int = 8000) -> VllmCommand:
    """``vllm serve MODEL --enable-lora ...`` for ``adapters`` (a count, or (name, path) pairs).

    With a count the adapter paths are placeholders (``adapter1=/path/to/adapter1``) to replace.
    ``max_loras`` (adapters usable in one batch, each holding a GPU slot) defaults to all of them,
    which is what the memory estimate counts.
    """
    pairs = [(f"adapter{i}", f"/path/to/adapter{i}") for i in range(1, adapters + 1)] \
        if isinstance(adapters, int) else [(str(n), str(p)) for n, p in adapters]
    if not pairs:
        raise PlannerError("a multi-adapter endpoint needs at least one adapter (--adapters N with N >= 1)")
    if max_lora_rank <= 0:
        raise PlannerError(f"max LoRA rank must be positive, got {max_lora_rank}")
    if precision not in VLLM_DTYPE:
        raise PlannerError(f"unknown precision '{precision}'; choose one of {', '.join(VLLM_DTYPE)}")
    k = max_loras if max_loras is not None else len(pairs)
    if not 1 <= k <= len(pairs):
        raise PlannerError(f"max LoRAs per batch must be from 1 to the {len(pairs)} adapters, got {k}")
    rank = vllm_lora_rank(max_lora_rank)
    notes = []
    if rank != max_lora_rank:
        notes.append(f"--max-lora-rank {rank}: vLLM accepts only {', '.join(map(str, VLLM_LORA_RANKS))}; "
                     f"rank {max_lora_rank} rounds up")
    argv = ["vllm", "serve", model, "--dtype", VLLM_DTYPE[precision]]
    if precision == "int4":
        argv += ["--quantization", "bitsandbytes"]
        notes.append("int4: vLLM quantizes the weights to 4 bits with bitsandbytes while loading")
    elif precision == "int8":
        notes.append("int8: vLLM has no in-flight 8-bit bitsandbytes; serve an 8-bit (GPTQ/AWQ/fp8) checkpoint "
                     "or use bf16")
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(tensor_parallel_size)]
    argv += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in pairs),
             "--max-loras", str(k), "--max-lora-rank", str(rank), "--max-cpu-loras", str(len(pairs)),
             "--port", str(port)]
    if isinstance(adapters, int):
        notes.append("replace /path/to/adapterN with each adapter's directory (or a Hub id)")
    notes.append(f"{RUNTIME_LORA_ENV} lets clients load/unload adapters at run time "
                 "(POST /v1/load_lora_adapter, /v1/unload_lora_adapter), as with `plan serve`")
    return VllmCommand(argv=tuple(argv), env=(RUNTIME_LORA_ENV,), notes=tuple(notes))


def vllm_command_for(model: str, job: Job, tensor_parallel_size: int = 1) -> VllmCommand:
    """The command for an estimated ``--mode inference --adapters N`` job (model: its Hub id)."""
    if job.kind.trains or not job.adapters:
        raise PlannerError("a vLLM multi-adapter command needs --mode inference --adapters N")
    return vllm_serve_command(model, job.adapters, max_lora_rank=job.max_lora_rank or job.lora_r,
                              precision=job.precision or "bf16", max_model_len=job.seq_len,
                              tensor_parallel_size=tensor_parallel_size)


def vllm_serving_command(model: str, mem: Any, *, port: int = 8000, quantization_flag: str | None = None,
                         enforce_eager: bool = False) -> VllmCommand:
    """``vllm serve MODEL`` with the settings a serving plan chose (``mem``: a
    planner.serving.vllm_memory.EngineMemory). Every value is written out, defaults included, so the
    command reproduces the planned layout even where vLLM's defaults differ by GPU or release.
    ``--quantization`` is written only when the user asked for it: vLLM reads a checkpoint's own
    ``quantization_config``."""
    argv = ["vllm", "serve", model, "--dtype", VLLM_DTYPE[mem.dtype],
            "--tensor-parallel-size", str(mem.tensor_parallel_size)]
    if mem.pipeline_parallel_size > 1:
        argv += ["--pipeline-parallel-size", str(mem.pipeline_parallel_size)]
    argv += ["--gpu-memory-utilization", f"{mem.gpu_memory_utilization:g}", "--max-model-len", str(mem.max_model_len),
             "--max-num-seqs", str(mem.max_num_seqs), "--max-num-batched-tokens", str(mem.max_num_batched_tokens)]
    if mem.kv_cache_dtype != "auto":
        argv += ["--kv-cache-dtype", mem.kv_cache_dtype]
    if quantization_flag:
        argv += ["--quantization", quantization_flag]
    if enforce_eager:
        argv.append("--enforce-eager")
    argv += ["--port", str(port)]
    notes = [f"planned for vLLM {mem.engine_version}; 'GPU KV cache size' should read about "
             f"{mem.kv_cache_tokens:,} tokens at startup"]
    if quantization_flag in ("awq", "gptq", "mxfp4", "nvfp4"):
        notes.append(f"--quantization {quantization_flag} needs a checkpoint quantized in that format "
                     "(replace MODEL with its Hub id)")
    return VllmCommand(argv=tuple(argv), notes=tuple(notes))
