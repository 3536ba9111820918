"""Issue 19 over real HTTP: no client input is a 500, no request holds more rows than a batch, and a
non-streamed request whose client goes away stops generating (a real socket that disconnects)."""
from __future__ import annotations

import json
import socket
import time

import pytest

from backend.serve import AdapterHost, ServeSettings, start_server
from backend.serve.http import ServerOptions
from tests.adapters.http_client import call

pytestmark = pytest.mark.slow
BATCH = 8


@pytest.fixture(scope="module")
def long_base(tmp_path_factory):
    """The tiny model with a long context, so a request can ask for thousands of tokens."""
    from tests.tiny import make_tiny_model

    base = make_tiny_model(tmp_path_factory.mktemp("long") / "tiny")
    cfg = json.loads((base / "config.json").read_text())
    cfg["max_position_embeddings"] = 8192
    (base / "config.json").write_text(json.dumps(cfg))
    return base


@pytest.fixture(scope="module")
def served(long_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    host = AdapterHost(str(long_base), base_name="tiny", dtype="fp32", device="cpu", adapter_roots=(root,))
    lines: list[str] = []
    running = start_server(host, settings=ServeSettings(allow_runtime_adapters=True), log=lines.append,
                           options=ServerOptions(max_batch_size=BATCH))
    yield running, host, lines
    running.close()


def _raw(url: str, path: str, raw: bytes) -> tuple[int, dict]:
    return call(url, "POST", path, raw=raw)


@pytest.mark.parametrize("path,raw,param", [
    ("/v1/completions", b'{"model":"tiny","prompt":"a\\ud800b","max_tokens":2}', "prompt"),
    ("/v1/completions", b'{"model":"tiny","prompt":"a\\ud800b","max_tokens":2,"stream":true}', "prompt"),
    ("/v1/completions", b'{"model":"tiny","prompt":["ok","\\udc00"],"max_tokens":2}', "prompt"),
    ("/v1/completions", b'{"model":"tiny","prompt":"a","stop":"\\ud800"}', "stop"),
    ("/v1/completions", b'{"model":"tiny","prompt":"a","user":"\\ud800"}', "user"),
    ("/v1/chat/completions", b'{"model":"tiny","messages":[{"role":"user","content":"\\udfff"}]}', "messages"),
    ("/v1/chat/completions", b'{"model":"tiny","stream":true,"messages":[{"role":"user",'
                             b'"content":[{"type":"text","text":"\\ud83d"}]}]}', "messages"),
    ("/v1/load_lora_adapter", b'{"lora_name":"x","lora_path":"a\\u0000b"}', "lora_path"),
    ("/v1/load_lora_adapter", json.dumps({"lora_name": "x", "lora_path": "a" * 5000}).encode(), "lora_path"),
    ("/v1/load_lora_adapter", json.dumps({"lora_name": "x" * 5000, "lora_path": "a"}).encode(), "lora_name"),
    ("/v1/unload_lora_adapter", b'{"lora_name":"x\\u0000"}', "lora_name"),
    ("/v1/completions", b'{"model":"tiny","prompt":"a","max_tokens":' + b"9" * 5000 + b"}", None),
    ("/v1/completions", b'{"model":"tiny","prompt":"a","seed":' + b"9" * 400 + b"}", "seed"),
])
def test_hostile_values_are_400_never_500(served, path, raw, param):
    running, _, _ = served
    status, body = _raw(running.url, path, raw)
    assert status == 400, body
    assert body["error"]["param"] == param
    assert "function-after" not in body["error"]["message"]


@pytest.mark.parametrize("lora_path,status", [("a" * 300, 403), ("~nosuchuser-zz/a", 403), ("a/" * 400, 400)])
def test_paths_the_os_refuses_are_answered_not_crashed(served, lora_path, status):
    """A name past NAME_MAX and an unknown ~user are the confinement's 403; a deep path inside the
    root is simply not an adapter folder."""
    running, _, _ = served
    got, body = call(running.url, "POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": lora_path})
    assert got == status and body["error"]["param"] == "lora_path", body


@pytest.mark.parametrize("prompts,n", [(["a"] * 5000, 16), (["a"] * (BATCH + 1), 1), (["a"] * 2, 5), ("a", 9)])
def test_prompts_times_n_is_bounded_by_the_batch(served, prompts, n):
    running, _, _ = served
    status, body = call(running.url, "POST", "/v1/completions", {"model": "tiny", "prompt": prompts, "n": n})
    rows = (1 if isinstance(prompts, str) else len(prompts)) * n
    assert status == 400 and body["error"]["code"] == "too_many_sequences"
    assert f"asks for {rows} sequences" in body["error"]["message"] and f"at most {BATCH}" in body["error"]["message"]


def test_a_full_batch_is_still_served(served):
    running, _, _ = served
    status, body = call(running.url, "POST", "/v1/completions",
                        {"model": "tiny", "prompt": ["a", "b"], "n": BATCH // 2, "max_tokens": 2})
    assert status == 200 and len(body["choices"]) == BATCH


def test_a_client_that_disconnects_cancels_its_rows(served):
    """A real client sends a non-streamed request for 4 x 8,000 tokens and closes its socket: the
    server logs 499, the rows stop (the decode count stops growing far short of the request) and
    the model is free again for the next client."""
    running, host, lines = served
    decoded = [0]
    original = host.decode

    def counting(ids):  # instrumentation on the real host: one call per generated token per row
        decoded[0] += 1
        return original(ids)

    host.decode = counting
    try:
        body = json.dumps({"model": "tiny", "prompt": "a", "n": 4, "max_tokens": 8000, "temperature": 0}).encode()
        h, p = running.server.server_address
        with socket.create_connection((h, p)) as sock:
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            deadline = time.monotonic() + 20
            while decoded[0] < 8 and time.monotonic() < deadline:  # generation has started
                time.sleep(0.01)
        deadline = time.monotonic() + 20
        while not any(line.endswith("POST /v1/completions 499") for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(line.endswith("POST /v1/completions 499") for line in lines), lines[-3:]
        assert host.lock.acquire(timeout=10), "the cancelled batch still holds the model"
        host.lock.release()
        stopped_at = decoded[0]
        time.sleep(0.3)
        assert decoded[0] == stopped_at < 4 * 8000
    finally:
        host.decode = original
    status, out = call(running.url, "POST", "/v1/completions", {"model": "tiny", "prompt": "a", "max_tokens": 2})
    assert status == 200 and out["choices"][0]["finish_reason"] in ("length", "stop")


def test_a_template_that_refuses_the_messages_is_a_400(served):
    """Chat templates raise on messages they do not accept (Llama 2's "roles must alternate"): the
    client sent them, so it is a 400 naming the template's reason, not a 500."""
    running, host, _ = served
    before = getattr(host.tokenizer, "chat_template", None)
    host.tokenizer.chat_template = ("{% if messages[0]['role'] == 'assistant' %}{{ raise_exception("
                                    "'Conversation roles must alternate user/assistant') }}{% endif %}x")
    try:
        status, body = call(running.url, "POST", "/v1/chat/completions",
                            {"model": "tiny", "messages": [{"role": "assistant", "content": "hi"}]})
    finally:
        host.tokenizer.chat_template = before
    assert status == 400 and "roles must alternate" in body["error"]["message"], body
