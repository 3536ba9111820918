"""``plan serve --engine vllm``: the same adapters served by vLLM's OpenAI server, for production.

The argv comes from ``planner.vllm.vllm_serve_command`` (the command ``plan MODEL --mode inference
--adapters N`` prints), with the adapters' real names and paths, plus the listen address and the
served name. The API key goes to vLLM through its ``VLLM_API_KEY`` environment variable, not
argv (argv is visible to every user in ``ps``). Runtime adapter loading is enabled only when asked.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Sequence

from planner.errors import PlannerError
from planner.safe_io import read_json_object
from planner.vllm import RUNTIME_LORA_ENV, VllmCommand, vllm_serve_command


MAX_RANK = 1 << 16  # past any LoRA rank in use; bounds what int() and vLLM's --max-lora-rank get


def adapter_rank(directory: Path) -> int:
    """The largest LoRA rank in an adapter's ``adapter_config.json`` (``r`` and any ``rank_pattern``)."""
    config = read_json_object(Path(directory) / "adapter_config.json", "adapter config")
    pattern = config.get("rank_pattern") or {}
    ranks = [config.get("r") or 0, *(pattern.values() if isinstance(pattern, dict) else [None])]
    if not all(isinstance(r, int) and not isinstance(r, bool) and 0 <= r <= MAX_RANK for r in ranks):
        raise PlannerError(f"{directory}/adapter_config.json: 'r' and 'rank_pattern' must be ranks from 0 to "
                           f"{MAX_RANK}, got {str(ranks)[:80]}")
    return max(ranks)


def vllm_command(model: str, adapters: Sequence[tuple[str, Path]], *, host: str, port: int,
                 served_model_name: str | None = None, dtype: str = "auto", max_loras: int | None = None,
                 max_lora_rank: int | None = None, allow_runtime_adapters: bool = False) -> VllmCommand:
    """The ``vllm serve`` command for ``adapters`` (name, directory) on ``model``."""
    if not adapters:
        raise PlannerError("--engine vllm serves LoRA adapters: give at least one --adapter")
    rank = max_lora_rank or max(adapter_rank(p) for _, p in adapters)
    precision = {"auto": "bf16"}.get(dtype, dtype)
    base = vllm_serve_command(model, [(n, str(p)) for n, p in adapters], max_lora_rank=rank,
                              max_loras=min(max_loras, len(adapters)) if max_loras else None,
                              precision=precision, port=port)
    argv = [*base.argv, "--host", host]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    env = (RUNTIME_LORA_ENV,) if allow_runtime_adapters else ()
    return VllmCommand(argv=tuple(argv), env=env, notes=base.notes)


def check_vllm_runnable() -> str:
    """The ``vllm`` executable's path, or a one-line error when vLLM or a CUDA GPU is missing."""
    exe = shutil.which("vllm")
    if exe is None:
        raise PlannerError("--engine vllm needs vLLM: `pip install vllm` on a machine with an NVIDIA GPU "
                           "(or serve with the default --engine local)")
    import torch

    if not torch.cuda.is_available():
        raise PlannerError("--engine vllm needs a CUDA GPU and none is visible; use --engine local on this machine")
    return exe


def exec_vllm(cmd: VllmCommand, api_key: str | None) -> None:
    """Replace this process with vLLM (it then owns the port, signals and logs)."""
    exe = check_vllm_runnable()
    env = dict(os.environ)
    for item in cmd.env:
        key, _, value = item.partition("=")
        env[key] = value
    if api_key:
        env["VLLM_API_KEY"] = api_key
    os.execvpe(exe, list(cmd.argv), env)
