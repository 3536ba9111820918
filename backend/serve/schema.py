"""Response models: what the routes return, for the OpenAPI document (``GET /openapi.json``).

The small replies (models, load, unload) are validated against them; completion bodies are built
by responses.py and documented here without a second validation on every reply.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str
    parent: Optional[str]


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: Optional[dict[str, Any]]


class _Reply(BaseModel):
    id: str
    created: int
    model: str
    usage: Usage


class Completion(_Reply):
    """``stream: false``; with ``stream: true`` the reply is text/event-stream chunks of this shape."""

    object: Literal["text_completion"]
    choices: list[CompletionChoice]


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: Optional[dict[str, Any]]


class ChatCompletion(_Reply):
    """``stream: false``; with ``stream: true`` the reply is text/event-stream ``chat.completion.chunk``s."""

    object: Literal["chat.completion"]
    choices: list[ChatChoice]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str]
    code: Optional[str]


class ErrorBody(BaseModel):
    error: ErrorDetail


class Loaded(BaseModel):
    loaded: str


class Unloaded(BaseModel):
    unloaded: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in
    [(400, "invalid or unsupported parameter"), (401, "missing or wrong API key"),
     (404, "unknown model or route"), (413, "body over the limit")]}
