"""``plan serve MODEL --adapter NAME=PATH ...``: the OpenAI-compatible multi-adapter server (or vLLM's)."""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .output import info, warn
from ..errors import PlannerError

API_KEY_ENV = "PLAN_SERVE_API_KEY"
LOOPBACK_NAMES = ("localhost",)


def parse_adapter_spec(spec: str) -> tuple[str, str | None]:
    """'name=path' -> (name, path); 'name' alone -> (name, None): look it up in the adapter store."""
    name, sep, path = spec.partition("=")
    name, path = name.strip(), path.strip()
    if not name or (sep and not path):
        raise PlannerError(f"bad --adapter '{spec}': use NAME=PATH, or NAME of a stored adapter")
    return name, (path or None)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _resolve(specs: list[tuple[str, str | None]]) -> list[tuple[str, Path]]:
    pairs: list[tuple[str, Path]] = []
    for name, path in specs:
        if path is None:
            from backend.store import AdapterStore
            pairs.append((name, Path(AdapterStore().get(name).path)))
        else:
            pairs.append((name, Path(path)))
    return pairs


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Base model: a local directory or a Hugging Face id."),
    adapter: List[str] = typer.Option([], "--adapter", "-a", help="NAME=PATH, or NAME from the adapter store (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Name of the base in requests (default: the model folder's name, or the Hub id)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on a GPU, fp32 on the CPU) | bf16 | fp16 | fp32"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar=API_KEY_ENV, show_envvar=True, help="Require 'Authorization: Bearer KEY' on every route but /health."),
    allow_runtime_adapters: bool = typer.Option(False, "--allow-runtime-adapters", help="Enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter (paths confined to --adapter-root)."),
    adapter_root: List[Path] = typer.Option([], "--adapter-root", help="Folder runtime loads may read adapters from (repeatable; needed with --allow-runtime-adapters)."),
    max_loras: Optional[int] = typer.Option(None, "--max-loras", help="Most adapters held at once (default: no cap)."),
    max_batch_size: int = typer.Option(32, "--max-batch-size", help="Most sequences generated together in one batch."),
    batch_window_ms: float = typer.Option(2.0, "--batch-window-ms", help="How long the first request of a batch waits for others to join."),
    timeout_keep_alive: int = typer.Option(5, "--timeout-keep-alive", help="Seconds an idle keep-alive connection stays open."),
    engine: str = typer.Option("local", "--engine", help="local (transformers + PEFT, this process) | vllm (exec vLLM's OpenAI server; needs vLLM and a GPU)."),
    max_lora_rank: Optional[int] = typer.Option(None, "--max-lora-rank", help="vLLM only: the largest adapter rank (default: read from the adapters)."),
    quiet: bool = typer.Option(False, "--quiet", help="Do not log each request."),
) -> None:
    """Serve MODEL and its adapters over an OpenAI-compatible API; `model` in a request picks the adapter."""
    from .validate import check_flags, check_serve_values, given, require_extra
    check_flags(ctx)
    if engine == "local":
        require_extra("plan serve", "serve", "fastapi", "uvicorn", "pydantic", "torch", "transformers", "peft")
    specs = [parse_adapter_spec(s) for s in adapter]
    if not 0 <= port <= 65535:
        raise PlannerError(f"--port must be from 0 to 65535, got {port}")
    if engine not in ("local", "vllm"):
        raise PlannerError(f"--engine must be local or vllm, got '{engine}'")
    if allow_runtime_adapters and not adapter_root:
        raise PlannerError("--allow-runtime-adapters needs at least one --adapter-root DIR to confine loads to")
    if adapter_root and not allow_runtime_adapters:  # issue 19: no flag silently ignored
        raise PlannerError("--adapter-root does nothing here: it confines runtime loads, which need "
                           "--allow-runtime-adapters")
    check_serve_values(model, host, served_model_name, api_key, adapter_root)  # issue 19, probe round 2
    if max_loras is not None and (max_loras < 1 or len(specs) > max_loras):
        raise PlannerError(f"--max-loras must be at least 1 and at least the {len(specs)} adapters given, got {max_loras}")
    local_only = [n for n in ("max_batch_size", "batch_window_ms", "timeout_keep_alive", "quiet") if given(ctx, n)]
    if engine == "vllm" and local_only:  # issue 19: vLLM batches, keeps connections and logs on its own
        raise PlannerError(f"--{local_only[0].replace('_', '-')} does nothing here: it sets the local engine's "
                           "server; vLLM has its own (pass vLLM's flags to vLLM)")
    if max_lora_rank is not None and engine != "vllm":
        raise PlannerError("--max-lora-rank is for --engine vllm (the local engine reads each adapter's rank)")
    if max_batch_size < 1 or batch_window_ms < 0 or timeout_keep_alive < 1:
        raise PlannerError("--max-batch-size and --timeout-keep-alive must be at least 1, --batch-window-ms at least 0")
    if not is_loopback(host) and not api_key:
        warn(f"listening on {host} WITHOUT an API key: anyone who can reach this port can use the model"
             f"{' and load adapters from the --adapter-root folders' if allow_runtime_adapters else ''}; "
             f"set --api-key or {API_KEY_ENV}")
    pairs = _resolve(specs)
    if engine == "vllm":
        from backend.serve.vllm_exec import check_vllm_runnable, exec_vllm, vllm_command

        cmd = vllm_command(model, pairs, host=host, port=port, served_model_name=served_model_name, dtype=dtype,
                           max_loras=max_loras, max_lora_rank=max_lora_rank,
                           allow_runtime_adapters=allow_runtime_adapters)
        check_vllm_runnable()
        info(f"exec: {cmd.text}")
        exec_vllm(cmd, api_key)
        return
    from backend.serve import AdapterHost, ServerOptions, ServeSettings, make_server

    engine_host = AdapterHost(model, base_name=served_model_name, dtype=dtype, adapter_roots=tuple(adapter_root),
                              max_loras=max_loras)
    for name, path in pairs:
        engine_host.load_adapter(name, path)
    settings = ServeSettings(api_key=api_key, allow_runtime_adapters=allow_runtime_adapters)
    options = ServerOptions(timeout_keep_alive_s=timeout_keep_alive, max_batch_size=max_batch_size,
                            batch_window_s=batch_window_ms / 1000)
    server = make_server(engine_host, host, port, log=None if quiet else info, settings=settings, options=options)
    bound_host, bound_port = server.server_address
    names = ", ".join(n for n, _ in pairs) or "none"
    info(f"serving {engine_host.base_name} (adapters: {names}) on http://{bound_host}:{bound_port}/v1 ; "
         f"{'API key required' if api_key else 'no API key'}; Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        info("stopping")
    finally:
        server.server_close()
