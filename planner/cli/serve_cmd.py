"""``plan serve MODEL --adapter NAME=PATH ...``: the local OpenAI-compatible multi-adapter server."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import app
from .output import info, warn
from ..errors import PlannerError


def parse_adapter_spec(spec: str) -> tuple[str, str | None]:
    """'name=path' -> (name, path); 'name' alone -> (name, None): look it up in the adapter store."""
    name, sep, path = spec.partition("=")
    name, path = name.strip(), path.strip()
    if not name or (sep and not path):
        raise PlannerError(f"bad --adapter '{spec}': use NAME=PATH, or NAME of a stored adapter")
    return name, (path or None)


@app.command("serve")
def serve(
    model: str = typer.Argument(..., help="Base model: a local directory or a Hugging Face id."),
    adapter: List[str] = typer.Option([], "--adapter", "-a", help="NAME=PATH, or NAME from the adapter store (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", help="TCP port (0 picks a free one)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="Name of the base in requests (default MODEL)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 on a GPU, fp32 on the CPU) | bf16 | fp16 | fp32"),
    quiet: bool = typer.Option(False, "--quiet", help="Do not log each request."),
) -> None:
    """Serve MODEL and its adapters over an OpenAI-compatible API; `model` in a request picks the adapter."""
    specs = [parse_adapter_spec(s) for s in adapter]
    if not 0 <= port <= 65535:
        raise PlannerError(f"--port must be from 0 to 65535, got {port}")
    from backend.serve import AdapterHost, make_server

    pairs: list[tuple[str, Path]] = []
    for name, path in specs:
        if path is None:
            from backend.store import AdapterStore
            record = AdapterStore().get(name)
            pairs.append((name, Path(record.path)))
        else:
            pairs.append((name, Path(path)))
    engine = AdapterHost(model, base_name=served_model_name, dtype=dtype)
    for name, path in pairs:
        engine.load_adapter(name, path)
    server = make_server(engine, host, port, log=None if quiet else info)
    bound_host, bound_port = server.server_address[:2]
    if host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"listening on {host}: there is no authentication; anyone who can reach this port can use "
             "the model and load adapters from this machine's disk")
    names = ", ".join(n for n, _ in pairs) or "none"
    info(f"serving {engine.base_name} (adapters: {names}) on http://{bound_host}:{bound_port}/v1 ; Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        info("stopping")
    finally:
        server.server_close()
