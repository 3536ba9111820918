"""The HTTP layer: stdlib ``ThreadingHTTPServer`` routing OpenAI-style JSON to an ``AdapterHost``.

Why the standard library and not FastAPI: five routes of JSON need no framework, it adds no
dependency to install, and it is easy to start on an ephemeral port in a test thread. Each
connection gets a thread; the host's lock serializes model work (see host.py).

Routes (docs/adapters.md has the reference):
  GET    /health, /v1/models
  POST   /v1/completions, /v1/chat/completions
  POST   /v1/adapters {"name", "path"}          load an adapter at run time
  DELETE /v1/adapters/NAME                       unload it
  POST   /v1/load_lora_adapter, /v1/unload_lora_adapter   the same, with vLLM's field names
"""
from __future__ import annotations

import json
import sys
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from planner.errors import PlannerError

from . import protocol
from .host import AdapterHost

MAX_BODY_BYTES = 1 << 20


def _handle_generation(host: AdapterHost, req: protocol.GenerationRequest) -> list[Any]:
    if req.kind == "chat":
        prompt = host.chat_prompt(req.messages)
        # the chat template already holds any BOS token it wants
        return [host.generate(req.model, prompt, req.params, add_special_tokens=False)]
    return [host.generate(req.model, p, req.params) for p in req.prompts]


def _models(host: AdapterHost) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": mid, "object": "model", "created": 0, "owned_by": "plan-serve", "parent": parent, "root": root}
        for mid, parent, root in host.model_ids()]}


class Handler(BaseHTTPRequestHandler):
    """Routes one request; every failure becomes a JSON error with a 4xx or 5xx status."""

    server: "AdapterServer"
    server_version = "plan-serve/1"

    # ---- plumbing ---------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} {format % args}")

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, events: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def _body(self) -> Any:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise protocol.ApiError(411, "send a Content-Length header with the JSON body")
        if int(length) > MAX_BODY_BYTES:
            raise protocol.ApiError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise protocol.ApiError(400, f"the request body is not valid JSON ({exc})") from None

    def _dispatch(self, route: Callable[[], None]) -> None:
        try:
            route()
        except protocol.ApiError as exc:
            self._send(exc.status, exc.body())
        except PlannerError as exc:  # bad adapter directory, incompatible adapter, ...
            self._send(400, protocol.ApiError(400, str(exc)).body())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
        except Exception as exc:  # a bug: say so, keep serving
            traceback.print_exc(file=sys.stderr)
            self._send(500, protocol.ApiError(500, f"internal error: {type(exc).__name__}: {exc}",
                                              kind="server_error").body())

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    # ---- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch(self._delete)

    def _get(self) -> None:
        path, host = self._path(), self.server.host
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/v1/models":
            self._send(200, _models(host))
        elif path == "/v1/adapters":
            self._send(200, {"adapters": [{"name": n, "path": p} for n, p in host.adapters().items()]})
        else:
            raise protocol.ApiError(404, f"no route GET {path}", code="not_found")

    def _post(self) -> None:
        path, host = self._path(), self.server.host
        parsers = {"/v1/completions": protocol.parse_completion, "/v1/chat/completions": protocol.parse_chat}
        if path in parsers:
            req = parsers[path](self._body())
            results = _handle_generation(host, req)
            if req.stream:
                self._send_events(protocol.stream_events(req, results))
            else:
                self._send(200, protocol.completion_response(req, results))
        elif path in ("/v1/adapters", "/v1/load_lora_adapter"):
            name, adapter_path = protocol.parse_load(self._body())
            host.load_adapter(name, adapter_path)
            self._send(201, {"loaded": name, "path": host.adapters()[name]})
        elif path == "/v1/unload_lora_adapter":
            name = protocol.parse_unload(self._body())
            host.unload_adapter(name)
            self._send(200, {"unloaded": name})
        else:
            raise protocol.ApiError(404, f"no route POST {path}", code="not_found")

    def _delete(self) -> None:
        path, host = self._path(), self.server.host
        prefix = "/v1/adapters/"
        if not path.startswith(prefix) or len(path) == len(prefix):
            raise protocol.ApiError(404, f"no route DELETE {path}; use DELETE /v1/adapters/NAME", code="not_found")
        name = unquote(path[len(prefix):])
        host.unload_adapter(name)
        self._send(200, {"unloaded": name})


class AdapterServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its host; request threads do not block shutdown."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], host: AdapterHost, log: Callable[[str], None] | None) -> None:
        self.host, self.log = host, log
        super().__init__(address, Handler)


@dataclass
class RunningServer:
    """A server answering in a background thread; ``close()`` stops it and frees the port."""

    server: AdapterServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def make_server(host: AdapterHost, address: str = "127.0.0.1", port: int = 8000,
                log: Callable[[str], None] | None = None) -> AdapterServer:
    """Bind (port 0 picks a free one); call ``serve_forever()`` on the result to answer requests."""
    try:
        return AdapterServer((address, port), host, log)
    except OSError as exc:
        raise PlannerError(f"cannot listen on {address}:{port}: {exc.strerror}; "
                           f"pick another --port (0 picks a free one)") from None


def start_server(host: AdapterHost, address: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] | None = None) -> RunningServer:
    """Serve in a daemon thread (tests, notebooks)."""
    server = make_server(host, address, port, log)
    thread = threading.Thread(target=server.serve_forever, name="plan-serve", daemon=True)
    thread.start()
    return RunningServer(server, thread)
