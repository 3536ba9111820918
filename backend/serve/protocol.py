"""The OpenAI-compatible request and response shapes, as pure functions over plain JSON values.

Requests are checked here, before any model work, so a bad request costs nothing and gets a 4xx
with one clear message. Field names and defaults follow the OpenAI API reference
(https://platform.openai.com/docs/api-reference/completions and .../chat), which is also what
vLLM's server accepts; fields we do not support are refused, never silently ignored.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from planner.errors import PlannerError

MAX_TOKENS_LIMIT = 4096      # the most new tokens one request may ask for
DEFAULT_COMPLETION_TOKENS = 16   # OpenAI's default for /v1/completions
DEFAULT_CHAT_TOKENS = 256        # the OpenAI default is "up to the context"; we cap it
MAX_STOP_SEQUENCES = 4           # as in the OpenAI API


class ApiError(PlannerError):
    """A request the server refuses: HTTP status plus an OpenAI-style error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class SamplingParams:
    """How to generate: ``temperature == 0`` means greedy decoding (deterministic)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": list(self.stop), "seed": self.seed}


@dataclass(frozen=True)
class GenerationRequest:
    """One checked request: which model (base or adapter name), the prompts, the sampling."""

    kind: str                      # "completion" or "chat"
    model: str
    prompts: tuple[str, ...] = ()  # completion prompts (one choice each)
    messages: tuple[dict[str, str], ...] = ()  # chat messages, content flattened to text
    params: SamplingParams = SamplingParams(max_tokens=DEFAULT_COMPLETION_TOKENS)
    stream: bool = False


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ApiError(400, f"'{name}' must be a number from {low} to {high}, got {value!r}", param=name)
    return float(value)


def _sampling(body: dict[str, Any], default_tokens: int, token_fields: tuple[str, ...]) -> SamplingParams:
    max_tokens = default_tokens
    for name in token_fields:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT:
            raise ApiError(400, f"'{name}' must be an integer from 1 to {MAX_TOKENS_LIMIT}, got {value!r}",
                           param=name)
        max_tokens = value
    stop = body.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise ApiError(400, f"'stop' must be a string or a list of at most {MAX_STOP_SEQUENCES} strings",
                       param="stop")
    if any(s == "" for s in stops):
        raise ApiError(400, "'stop' sequences must not be empty", param="stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ApiError(400, f"'seed' must be a non-negative integer, got {seed!r}", param="seed")
    n = body.get("n", 1)
    if n not in (1, None):
        raise ApiError(400, "only n=1 is supported; send several requests instead", param="n")
    return SamplingParams(max_tokens=max_tokens, temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
                          top_p=_number(body, "top_p", 1.0, 0.0, 1.0) or 1.0, stop=stops, seed=seed)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "missing 'model': give an adapter name or the base model's name "
                            "(GET /v1/models lists them)", param="model")
    return model


def _stream(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    return stream


def parse_completion(body: Any) -> GenerationRequest:
    """``POST /v1/completions``: ``prompt`` is a string or a list of strings."""
    body = _object(body)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: tuple[str, ...] = (prompt,)
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = tuple(prompt)
    elif prompt is None:
        raise ApiError(400, "missing 'prompt': give a string or a list of strings", param="prompt")
    else:
        raise ApiError(400, "'prompt' must be a string or a non-empty list of strings "
                            "(token-id prompts are not supported)", param="prompt")
    return GenerationRequest(kind="completion", model=_model(body), prompts=prompts,
                             params=_sampling(body, DEFAULT_COMPLETION_TOKENS, ("max_tokens",)),
                             stream=_stream(body))


def _content_text(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ApiError(400, f"messages[{index}].content must be a string or a list of text parts",
                   param="messages")


def parse_chat(body: Any) -> GenerationRequest:
    """``POST /v1/chat/completions``: ``messages`` is a non-empty list of {role, content}."""
    body = _object(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "missing 'messages': give a non-empty list of {role, content} objects",
                       param="messages")
    checked = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a 'role' and a 'content'", param="messages")
        checked.append({"role": m["role"], "content": _content_text(m.get("content"), i)})
    return GenerationRequest(kind="chat", model=_model(body), messages=tuple(checked),
                             params=_sampling(body, DEFAULT_CHAT_TOKENS, ("max_tokens", "max_completion_tokens")),
                             stream=_stream(body))


def parse_load(body: Any) -> tuple[str, str]:
    """``POST /v1/adapters`` {"name", "path"}; vLLM's {"lora_name", "lora_path"} is accepted too."""
    body = _object(body)
    name = body.get("name", body.get("lora_name"))
    path = body.get("path", body.get("lora_path"))
    if not isinstance(name, str) or not name:
        raise ApiError(400, "missing 'name' of the adapter to load", param="name")
    if not isinstance(path, str) or not path:
        raise ApiError(400, "missing 'path': the adapter directory on the server's disk", param="path")
    return name, path


def parse_unload(body: Any) -> str:
    """vLLM's ``POST /v1/unload_lora_adapter`` {"lora_name"} (or {"name"})."""
    body = _object(body)
    name = body.get("lora_name", body.get("name"))
    if not isinstance(name, str) or not name:
        raise ApiError(400, "missing 'lora_name' of the adapter to unload", param="lora_name")
    return name


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


def _envelope(kind: str, model: str, choices: list[dict[str, Any]], usage: dict[str, int] | None) -> dict[str, Any]:
    prefix, obj = ("cmpl", "text_completion") if kind == "completion" else ("chatcmpl", "chat.completion")
    out: dict[str, Any] = {"id": f"{prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()),
                           "model": model, "choices": choices}
    if usage is not None:
        out["usage"] = usage
    return out


def completion_response(req: GenerationRequest, results: list[Any]) -> dict[str, Any]:
    """The JSON body for ``results`` (one ``Generation`` per prompt, or one for a chat)."""
    if req.kind == "completion":
        choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
                   for i, r in enumerate(results)]
    else:
        choices = [{"index": 0, "message": {"role": "assistant", "content": results[0].text},
                    "finish_reason": results[0].finish_reason}]
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(r.completion_tokens for r in results)
    return _envelope(req.kind, req.model, choices, {"prompt_tokens": prompt_tokens,
                                                    "completion_tokens": completion_tokens,
                                                    "total_tokens": prompt_tokens + completion_tokens})


def stream_events(req: GenerationRequest, results: list[Any]) -> list[dict[str, Any]]:
    """Server-sent events for ``stream: true``: the whole text in one chunk per choice, then the end.

    Generation is not incremental here (the model lock is held for the whole request anyway);
    this keeps streaming clients working.
    """
    full = completion_response(req, results)
    if req.kind == "completion":
        return [{**full, "choices": [c]} for c in full["choices"]]
    choice = full["choices"][0]
    chunk = {**full, "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]},
                          "finish_reason": choice["finish_reason"]}]}
    return [chunk]
