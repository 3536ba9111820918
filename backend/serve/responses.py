"""OpenAI response bodies and stream chunks, built from the scheduler's events (pure functions).

Shapes follow the OpenAI API reference (completion, chat.completion, chat.completion.chunk, and
the two ``logprobs`` formats: the legacy one of /v1/completions, the ``content`` list of chat).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .batching import Finish, Token


@dataclass
class Choice:
    """Everything one choice produced, gathered from its events."""

    index: int
    tokens: list[Token] = field(default_factory=list)
    finish: Finish | None = None

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens) + (self.finish.text if self.finish else "")


def new_id(kind: str) -> str:
    return f"{'cmpl' if kind == 'completion' else 'chatcmpl'}-{uuid.uuid4().hex}"


def usage(choices: list[Choice], prompt_tokens_per_prompt: list[int]) -> dict[str, int]:
    prompt = sum(prompt_tokens_per_prompt)
    completion = sum(c.finish.completion_tokens for c in choices if c.finish)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_logprobs(tokens: list[Token], offset: int = 0) -> dict[str, Any]:
    """The legacy /v1/completions format: parallel lists, top alternatives as {token: logprob}."""
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t.text)
    return {"tokens": [t.token for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{a.token: a.logprob for a in t.top} for t in tokens], "text_offset": offsets}


def _entry(token: str, logprob: float | None) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def chat_logprobs(tokens: list[Token]) -> dict[str, Any]:
    return {"content": [{**_entry(t.token, t.logprob), "top_logprobs": [_entry(a.token, a.logprob) for a in t.top]}
                        for t in tokens]}


def completion_body(kind: str, model: str, choices: list[Choice], prompt_tokens: list[int],
                    logprobs: bool) -> dict[str, Any]:
    """The whole (non-streamed) response."""
    out = []
    for c in choices:
        reason = c.finish.reason if c.finish else "length"
        if kind == "completion":
            out.append({"index": c.index, "text": c.text, "finish_reason": reason,
                        "logprobs": completion_logprobs(c.tokens) if logprobs else None})
        else:
            out.append({"index": c.index, "message": {"role": "assistant", "content": c.text},
                        "finish_reason": reason, "logprobs": chat_logprobs(c.tokens) if logprobs else None})
    return {"id": new_id(kind), "object": "text_completion" if kind == "completion" else "chat.completion",
            "created": int(time.time()), "model": model, "choices": out, "usage": usage(choices, prompt_tokens)}


@dataclass
class ChunkMaker:
    """Stream chunks of one response: all share its id, created time and model."""

    kind: str
    model: str
    logprobs: bool
    include_usage: bool
    id: str = ""
    created: int = 0

    def __post_init__(self) -> None:
        self.id, self.created = new_id(self.kind), int(time.time())

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion" if self.kind == "completion" else "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": choices}
        if self.include_usage:
            body["usage"] = None
        return body

    def role(self, index: int) -> dict[str, Any]:
        """Chat streams open each choice with the assistant role."""
        return self._chunk([{"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                             "finish_reason": None}])

    def token(self, t: Token, offset: int) -> dict[str, Any]:
        if self.kind == "completion":
            lp = completion_logprobs([t], offset) if self.logprobs else None
            return self._chunk([{"index": t.index, "text": t.text, "logprobs": lp, "finish_reason": None}])
        lp = chat_logprobs([t]) if self.logprobs else None
        return self._chunk([{"index": t.index, "delta": {"content": t.text}, "logprobs": lp, "finish_reason": None}])

    def finish(self, f: Finish) -> dict[str, Any]:
        if self.kind == "completion":
            return self._chunk([{"index": f.index, "text": f.text, "logprobs": None, "finish_reason": f.reason}])
        delta = {"content": f.text} if f.text else {}
        return self._chunk([{"index": f.index, "delta": delta, "logprobs": None, "finish_reason": f.reason}])

    def usage(self, choices: list[Choice], prompt_tokens: list[int]) -> dict[str, Any]:
        return {**self._chunk([]), "usage": usage(choices, prompt_tokens)}
