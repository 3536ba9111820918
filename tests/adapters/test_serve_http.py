"""The HTTP stack: the openai client streaming token by token, the OpenAPI document, idle and slow
connections, a hypothesis fuzz of request bodies (no 5xx), and `--engine vllm`."""
from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.serve import AdapterHost, start_server
from tests.adapters.conftest import PROMPT
from tests.adapters.http_client import call, complete

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_base, two_adapters):
    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu")
    host.load_adapter("capitals", two_adapters["capitals"])
    running = start_server(host)
    yield running
    running.close()


def test_openai_client_streams_one_chunk_per_token(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    stream = client.completions.create(model="capitals", prompt=PROMPT, max_tokens=6, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].finish_reason is None]
    assert texts == ["paris", " ."]
    assert chunks[-1].usage.completion_tokens == len(texts) == 2 and chunks[-1].choices == []
    chat = client.chat.completions.create(model="capitals", messages=[{"role": "user", "content": PROMPT}],
                                          max_tokens=5, temperature=0, stream=True,
                                          stream_options={"include_usage": True})
    chunks = list(chat)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].finish_reason is None]
    assert deltas[0] == "" and chunks[0].choices[0].delta.role == "assistant"  # the role opens the stream
    assert len(deltas) - 1 == chunks[-1].usage.completion_tokens
    whole = client.chat.completions.create(model="capitals", messages=[{"role": "user", "content": PROMPT}],
                                           max_tokens=5, temperature=0)
    assert "".join(deltas) == whole.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.completions.create(model="capitals", prompt=PROMPT, logit_bias={"5": 10})
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt=PROMPT)


def test_openapi_document_describes_the_routes(server):
    status, doc = call(server.url, "GET", "/openapi.json")
    assert status == 200
    assert {"/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/load_lora_adapter"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"CompletionRequest", "ChatRequest", "Completion", "ChatCompletion", "ModelList", "ErrorBody"} <= set(schemas)
    completions = doc["paths"]["/v1/completions"]["post"]["responses"]
    assert completions["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Completion"}
    assert "400" in completions and "422" not in completions
    assert schemas["CompletionRequest"]["additionalProperties"] is False


def test_idle_and_slow_clients_cannot_exhaust_the_server(server):
    netloc = urllib.parse.urlsplit(server.url)
    threads_before = threading.active_count()
    idle = [socket.create_connection((netloc.hostname, netloc.port)) for _ in range(150)]
    slow = []
    for _ in range(50):  # headers begun, never finished
        s = socket.create_connection((netloc.hostname, netloc.port))
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        slow.append(s)
    try:
        start = time.monotonic()
        assert complete(server.url, "capitals", PROMPT) == "paris ."
        assert time.monotonic() - start < 5
        assert threading.active_count() - threads_before <= 2  # no thread per connection
    finally:
        for s in idle + slow:
            s.close()


def test_a_client_that_never_finishes_its_headers_is_cut_off(tiny_base):
    from backend.serve import ServerOptions

    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu")
    running = start_server(host, options=ServerOptions(header_timeout_s=0.5, timeout_keep_alive_s=30))
    try:
        netloc = urllib.parse.urlsplit(running.url)
        fresh = socket.create_connection((netloc.hostname, netloc.port), timeout=10)
        fresh.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        kept = socket.create_connection((netloc.hostname, netloc.port), timeout=10)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while b'{"status":"ok"}' not in reply:
            reply += kept.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /health HTTP/1.1\r\n")  # a second request, begun and left
        start = time.monotonic()
        assert fresh.recv(4096) == b"" and kept.recv(4096) == b""  # closed by the server
        assert time.monotonic() - start < 5
        fresh.close()
        kept.close()
    finally:
        running.close()


def test_many_clients_at_once_are_all_answered(server):
    """64 simultaneous connections (the stdlib server's listen backlog of 5 reset some at 32)."""
    results, gate = [], threading.Barrier(64)

    def one() -> None:
        gate.wait()
        results.append(complete(server.url, "capitals", PROMPT, max_tokens=3))

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == ["paris ."] * 64


# ---- fuzz: no request body makes a 5xx ---------------------------------------------------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 80), 2 ** 80), st.text(max_size=8),
                    st.floats(allow_nan=True, allow_infinity=True))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=8)
_fields = {
    "model": st.one_of(st.sampled_from(["tiny", "capitals", "nope", ""]), _json),
    "prompt": st.one_of(st.sampled_from([PROMPT, "", "zzz unknown words", [PROMPT, "hi"]]), _json),
    "messages": st.one_of(st.just([{"role": "user", "content": PROMPT}]),
                          st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "tool", "x"]),
                                                          "content": _json}), max_size=2), _json),
    "max_tokens": st.one_of(st.integers(-2, 3), st.just(10 ** 6), _json),
    "temperature": st.one_of(st.sampled_from([0, 1e-300, 0.7, 2.0, 2.5, -1]), _json),
    "top_p": st.one_of(st.sampled_from([0, 1e-9, 0.5, 1, 1.5]), _json),
    "seed": st.one_of(st.sampled_from([0, -1, 2 ** 63, 2 ** 64, 2 ** 70]), _json),
    "n": st.one_of(st.integers(-1, 3), _json),
    "stop": st.one_of(st.sampled_from(["", ".", [".", "!"], ["a"] * 5]), _json),
    "stream": st.one_of(st.booleans(), _json),
    "logprobs": st.one_of(st.integers(-1, 6), st.booleans(), _json),
    "top_logprobs": st.one_of(st.integers(-1, 21), _json),
    "presence_penalty": st.one_of(st.floats(-3, 3), _json),
    "stream_options": st.one_of(st.just({"include_usage": True}), _json),
    "tools": _json,
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/completions", "/v1/chat/completions", "/v1/load_lora_adapter"]),
       body=st.one_of(st.fixed_dictionaries({}, optional=_fields), _json))
def test_fuzzed_bodies_never_get_a_5xx(server, path, body):
    if isinstance(body, dict) and isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 3:
        body["max_tokens"] = 3  # keep valid requests short; the range check has its own cases
    raw = json.dumps(body, allow_nan=True).encode()  # NaN and Infinity too, as some clients send them
    status, payload = call(server.url, "POST", path, raw=raw)
    assert status < 500, (body, payload)
    if status >= 400:
        assert payload["error"]["message"]


def test_vllm_engine_without_vllm_is_one_line(tiny_base, two_adapters, capsys, monkeypatch):
    import shutil

    from planner.cli import main

    if shutil.which("vllm"):
        pytest.skip("vLLM is installed here")
    assert main(["serve", str(tiny_base), "--engine", "vllm", "--adapter", f"caps={two_adapters['capitals']}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install vllm" in err[0]


def test_vllm_command_serves_the_same_adapters(two_adapters):
    from backend.serve.vllm_exec import vllm_command

    cmd = vllm_command("org/base", list(two_adapters.items()), host="0.0.0.0", port=9000, served_model_name="base",
                       max_loras=4)
    argv = list(cmd.argv)
    assert argv[:3] == ["vllm", "serve", "org/base"]
    assert argv[argv.index("--lora-modules") + 1: argv.index("--max-loras")] == \
        [f"{n}={p}" for n, p in two_adapters.items()]
    assert argv[argv.index("--max-loras") + 1] == "2"       # clipped to the adapters given
    assert argv[argv.index("--max-lora-rank") + 1] == "8"   # read from adapter_config.json (r=8)
    assert argv[-4:] == ["--host", "0.0.0.0", "--served-model-name", "base"]
    assert cmd.env == ()  # runtime loading stays off unless asked for
    assert "VLLM_API_KEY" not in cmd.text  # the key travels in the environment, not argv
