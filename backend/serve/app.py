"""The FastAPI app: OpenAI-compatible routes over an ``AdapterHost`` and its ``BatchScheduler``.

Request bodies are the pydantic models of protocol.py (also the OpenAPI document at
``/openapi.json``). Every error is an OpenAI-style JSON body: validation errors are 400 (as
OpenAI and vLLM answer, not FastAPI's 422), unknown routes 404, wrong methods 405, bodies over
the limit 413, a missing or wrong API key 401; a 500 only for a bug. Generation never blocks the
event loop: sequences go to the scheduler thread, events come back through an asyncio queue, so
idle or slow connections cost no thread.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batching import BatchScheduler, Failure, Finish, Sequence, Token
from .host import AdapterHost
from .protocol import (ApiError, ChatRequest, CompletionRequest, LoadLoraRequest, UnloadLoraRequest,
                       sampling_params, validation_error)
from .responses import Choice, ChunkMaker, completion_body
from .schema import ERRORS, ChatCompletion, Completion, Loaded, ModelList, Unloaded

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 20
HEALTH = "/health"


@dataclass(frozen=True)
class ServeSettings:
    """What the operator chose: the API key (None: open), runtime loading, and the body limit."""

    api_key: str | None = None
    allow_runtime_adapters: bool = False
    max_body_bytes: int = MAX_BODY_BYTES


def _error(err: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


class Guard:
    """ASGI middleware: the Bearer-key check on every route but the health check, the body limit
    (a declared Content-Length over it is refused before reading; a chunked body is counted), and
    one log line per request. FastAPI's own ``max_body_size`` answers in plain text, hence this."""

    def __init__(self, app: Any, api_key: str | None, max_body: int, log_line: Callable[[str], None] | None) -> None:
        self.app, self.key, self.max_body, self.log_line = app, api_key, max_body, log_line

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [0]

        async def send_logged(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.key is not None and scope["path"] != HEALTH:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.key.encode()):
                resp = _error(ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                       code="invalid_api_key", kind="authentication_error"),
                              {"WWW-Authenticate": "Bearer"})
                await resp(scope, receive, send_logged)
                self._log(scope, status[0])
                return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_body:
            await _error(_too_large(self.max_body))(scope, receive, send_logged)
            self._log(scope, status[0])
            return
        seen = [0]

        async def counted() -> dict[str, Any]:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.max_body:
                raise StarletteHTTPException(413)
            return message

        try:
            await self.app(scope, counted, send_logged)
        finally:
            self._log(scope, status[0])

    def _log(self, scope: dict[str, Any], status: int) -> None:
        if self.log_line is not None:
            client = scope.get("client") or ("-", 0)
            self.log_line(f"{client[0]} {scope['method']} {scope['path']} {status}")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"the request body is over {limit} bytes", code="request_too_large")


def _install_errors(app: FastAPI, max_body: int) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(validation_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return _error(_too_large(max_body))
        messages = {404: f"no route {request.method} {request.url.path}",
                    405: f"{request.method} is not allowed on {request.url.path}"}
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = messages.get(exc.status_code, str(exc.detail))
        return _error(ApiError(exc.status_code, message, code=code), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return _error(ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error"))


class _Run:
    """One request's sequences in the scheduler, with the asyncio queue their events arrive on."""

    def __init__(self, scheduler: BatchScheduler, model: str, prompts: list[list[int]], params: list[Any],
                 n: int) -> None:
        loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()

        def sink(event: Any) -> None:
            loop.call_soon_threadsafe(self.queue.put_nowait, event)

        self.seqs = []
        for p, (ids, sp) in enumerate(zip(prompts, params)):
            for j in range(n):
                seeded = sp if sp.seed is None or j == 0 else replace(sp, seed=(sp.seed + j) % 2 ** 64)
                self.seqs.append(Sequence(index=p * n + j, model=model, prompt_ids=ids, params=seeded, sink=sink))
        self.choices = [Choice(i) for i in range(len(self.seqs))]
        self.open = len(self.seqs)
        scheduler.submit(self.seqs)

    async def events(self) -> AsyncIterator[Token | Finish]:
        try:
            while self.open:
                event = await self.queue.get()
                if isinstance(event, Failure):
                    raise event.error
                if isinstance(event, Token):
                    self.choices[event.index].tokens.append(event)
                else:
                    self.choices[event.index].finish = event
                    self.open -= 1
                yield event
        finally:
            self.cancel()

    def cancel(self) -> None:
        for s in self.seqs:
            s.cancelled.set()


def create_app(host: AdapterHost, scheduler: BatchScheduler, settings: ServeSettings = ServeSettings(),
               log_line: Callable[[str], None] | None = None) -> FastAPI:
    """The app for ``host``; ``log_line`` (if given) gets one line per request."""
    app = FastAPI(title="plan serve", version="2", summary="OpenAI-compatible multi-adapter server",
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    _install_errors(app, settings.max_body_bytes)
    app.add_middleware(Guard, api_key=settings.api_key, max_body=settings.max_body_bytes, log_line=log_line)

    @app.get(HEALTH)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": mid, "object": "model", "created": 0, "owned_by": "plan-serve", "root": mid, "parent": parent}
            for mid, parent in host.model_ids()]}

    async def generate(kind: str, req: CompletionRequest | ChatRequest, request: Request) -> Any:
        host.row_name(req.model)  # an unknown model is a 404 before any work
        rows = (1 if isinstance(req, ChatRequest) or isinstance(req.prompt, str) else len(req.prompt)) * (req.n or 1)
        if rows > scheduler.max_batch_size:  # one request must not hold the model for everyone else
            raise ApiError(400, f"this request asks for {rows} sequences (prompts x n); this server generates at "
                                f"most {scheduler.max_batch_size} per request (--max-batch-size): split it",
                           param="prompt" if isinstance(req, CompletionRequest) and req.n in (None, 1) else "n",
                           code="too_many_sequences")
        if isinstance(req, ChatRequest):
            prompts = [host.chat_prompt_ids([{"role": m.role, "content": m.text()} for m in req.messages])]
            logprobs = bool(req.logprobs)
        else:
            texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
            prompts = [host.prompt_ids(t) for t in texts]
            logprobs = req.logprobs is not None
        params = [sampling_params(req, len(ids), host.context) for ids in prompts]
        run = _Run(scheduler, req.model, prompts, params, req.n or 1)
        prompt_tokens = [len(ids) for ids in prompts]
        if not req.stream:
            if not await _collect_unless_gone(run, request):
                return Response(status_code=499)  # nobody reads it: the rows were cancelled
            return completion_body(kind, req.model, run.choices, prompt_tokens, logprobs)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_stream(run, ChunkMaker(kind, req.model, logprobs, include_usage), prompt_tokens),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/completions", response_model=None, responses={200: {"model": Completion}, **ERRORS})
    async def completions(req: CompletionRequest, request: Request) -> Any:
        return await generate("completion", req, request)

    @app.post("/v1/chat/completions", response_model=None, responses={200: {"model": ChatCompletion}, **ERRORS})
    async def chat_completions(req: ChatRequest, request: Request) -> Any:
        return await generate("chat", req, request)

    def runtime_loading() -> None:
        if not settings.allow_runtime_adapters:
            raise ApiError(404, "runtime adapter loading is off; start the server with --allow-runtime-adapters "
                                "and --adapter-root DIR", code="not_found")

    @app.post("/v1/load_lora_adapter", response_model=Loaded, responses=ERRORS)
    def load_lora_adapter(req: LoadLoraRequest) -> dict[str, str]:
        runtime_loading()
        host.load_adapter(req.lora_name, req.lora_path, confined=True)
        return {"loaded": req.lora_name}

    @app.post("/v1/unload_lora_adapter", response_model=Unloaded, responses=ERRORS)
    def unload_lora_adapter(req: UnloadLoraRequest) -> dict[str, str]:
        runtime_loading()
        host.unload_adapter(req.lora_name)
        return {"unloaded": req.lora_name}

    generated = app.openapi

    def openapi() -> dict[str, Any]:  # validation errors are 400 here (ERRORS), not FastAPI's 422
        doc = generated()
        for route in doc.get("paths", {}).values():
            for operation in route.values():
                operation.get("responses", {}).pop("422", None)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _collect_unless_gone(run: _Run, request: Request) -> bool:
    """Wait for every event of ``run``; False (its rows cancelled) if the client disconnects first.

    The body is read by now, so the next ASGI ``receive()`` returns only when the client goes away
    (``http.disconnect``); a streamed reply learns the same from its failed writes.
    """
    async def drain() -> None:
        async for _ in run.events():
            pass

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work, watch = asyncio.ensure_future(drain()), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        if work.done():
            work.result()  # a Failure's ApiError goes to its handler
            return True
        return False
    finally:
        for task in (work, watch):
            task.cancel()
        run.cancel()


async def _stream(run: _Run, chunks: ChunkMaker, prompt_tokens: list[int]) -> AsyncIterator[str]:
    """Server-sent events: one chunk per token as it is generated, a finish chunk per choice, usage, [DONE]."""
    def event(body: dict[str, Any]) -> str:
        return f"data: {json.dumps(body)}\n\n"

    offsets = [0] * len(run.choices)
    try:
        if chunks.kind == "chat":
            for c in run.choices:
                yield event(chunks.role(c.index))
        async for ev in run.events():
            if isinstance(ev, Token):
                yield event(chunks.token(ev, offsets[ev.index]))
                offsets[ev.index] += len(ev.text)
            else:
                yield event(chunks.finish(ev))
        if chunks.include_usage:
            yield event(chunks.usage(run.choices, prompt_tokens))
    except ApiError as err:  # the headers are sent: report in the stream, as OpenAI does
        yield event(err.body())
    finally:
        run.cancel()
    yield "data: [DONE]\n\n"

