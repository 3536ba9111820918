"""A few lines of urllib: the tests talk to the server over real HTTP, as any client would."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(base_url: str, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    """(status, parsed JSON body, or the text for event streams) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base_url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text, ctype = resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        status, text, ctype = err.code, err.read().decode(), err.headers.get("Content-Type", "")
    return status, (json.loads(text) if ctype.startswith("application/json") else text)


def complete(base_url: str, model: str, prompt: str, max_tokens: int = 6) -> str:
    """Greedy completion text; fails loudly on any non-200."""
    status, body = call(base_url, "POST", "/v1/completions",
                        {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
    assert status == 200, body
    return body["choices"][0]["text"]
