"""The multi-adapter server over real HTTP on 127.0.0.1 (ephemeral port), with the tiny model.

Reference outputs come from plain transformers/PEFT models loaded separately from the same
files, so the server is checked against the libraries, not against itself.
"""
from __future__ import annotations

import json
import threading

import pytest

from backend.serve import AdapterHost, ServeSettings, start_server
from tests.adapters.conftest import PROMPT
from tests.adapters.http_client import call, complete

pytestmark = pytest.mark.slow

PROMPTS = [PROMPT, "what is the capital of italy ?", "what color is the sky ?"]


def _reference(base_dir, adapter_dir=None, prompts=PROMPTS, max_tokens=6) -> dict[str, str]:
    """Greedy completions from a fresh model (base alone, or base + one adapter)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir).eval()
    out = {}
    for p in prompts:
        ids = tok(p, return_tensors="pt")
        gen = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        new = gen[0, ids["input_ids"].shape[1]:].tolist()
        if tok.eos_token_id in new:
            new = new[: new.index(tok.eos_token_id)]
        out[p] = tok.decode(new, skip_special_tokens=True)
    return out


@pytest.fixture(scope="module")
def references(tiny_base, two_adapters):
    refs = {"tiny": _reference(tiny_base)}
    for name, path in two_adapters.items():
        refs[name] = _reference(tiny_base, path)
    return refs


@pytest.fixture(scope="module")
def server(tiny_base, two_adapters):
    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu")
    for name, path in two_adapters.items():
        host.load_adapter(name, path)
    running = start_server(host, "127.0.0.1", 0)
    yield running
    running.close()


def test_models_lists_base_and_adapters(server, two_adapters):
    status, body = call(server.url, "GET", "/v1/models")
    assert status == 200 and body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["tiny", "capitals", "swapped"]
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["capitals"]["parent"] == "tiny" and by_id["tiny"]["parent"] is None
    # responses name adapters, never directories
    assert all(m["root"] == m["id"] for m in body["data"]) and str(two_adapters["swapped"]) not in str(body)


def test_each_model_name_gives_its_own_completion(server, references):
    assert references["capitals"][PROMPT] == "paris ."   # the adapters learned their data ...
    assert references["swapped"][PROMPT] == "tokyo !"
    assert references["tiny"][PROMPT] not in ("paris .", "tokyo !")  # ... and the base did not
    for model in ("capitals", "swapped", "tiny"):
        for prompt in PROMPTS:
            assert complete(server.url, model, prompt) == references[model][prompt], (model, prompt)


def test_switching_back_and_forth_is_consistent(server, references):
    order = ["capitals", "tiny", "swapped", "capitals", "capitals", "swapped", "tiny", "swapped", "capitals"]
    assert [complete(server.url, m, PROMPT) for m in order] == [references[m][PROMPT] for m in order]


def test_concurrent_requests_never_see_another_adapter(server, references):
    jobs = [(m, p) for m in ("capitals", "swapped", "tiny") for p in PROMPTS] * 3  # 27 requests
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def worker(k: int) -> None:
        try:
            start.wait()
            for i in range(k, len(jobs), 9):
                results[i] = complete(server.url, *jobs[i])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert [results[i] for i in range(len(jobs))] == [references[m][p] for m, p in jobs]


def test_completion_response_shape_and_usage(server):
    status, body = call(server.url, "POST", "/v1/completions",
                        {"model": "capitals", "prompt": [PROMPT, "what color is the sky ?"], "max_tokens": 5,
                         "temperature": 0})
    assert status == 200
    assert body["object"] == "text_completion" and body["model"] == "capitals"
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["choices"][0] == {"index": 0, "text": "paris .", "finish_reason": "stop", "logprobs": None}
    # 7 + 6 prompt tokens (word-level); "paris ." is 2 tokens, and EOS is not counted
    assert body["usage"]["prompt_tokens"] == 13
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_stop_and_length_finish_reasons(server):
    _, body = call(server.url, "POST", "/v1/completions",
                   {"model": "capitals", "prompt": PROMPT, "max_tokens": 6, "temperature": 0, "stop": ["."]})
    assert body["choices"][0]["text"] == "paris " and body["choices"][0]["finish_reason"] == "stop"
    _, body = call(server.url, "POST", "/v1/completions",
                   {"model": "tiny", "prompt": PROMPT, "max_tokens": 3, "temperature": 0})
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 3


def test_seeded_sampling_is_repeatable(server):
    req = {"model": "tiny", "prompt": PROMPT, "max_tokens": 8, "temperature": 1.0, "seed": 7}
    texts = {call(server.url, "POST", "/v1/completions", req)[1]["choices"][0]["text"] for _ in range(3)}
    assert len(texts) == 1


def test_chat_completion_uses_the_chat_template(server, tiny_base, two_adapters):
    messages = [{"role": "user", "content": PROMPT}]
    status, body = call(server.url, "POST", "/v1/chat/completions",
                        {"model": "swapped", "messages": messages, "max_tokens": 4, "temperature": 0})
    assert status == 200 and body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["index"] == 0
    from transformers import AutoTokenizer
    prompt = AutoTokenizer.from_pretrained(tiny_base).apply_chat_template(messages, add_generation_prompt=True,
                                                                          tokenize=False)
    assert prompt.startswith("<s><|user|> ")
    # the template already holds BOS; the server must not add another one
    assert body["usage"]["prompt_tokens"] == len(AutoTokenizer.from_pretrained(tiny_base)(prompt)["input_ids"])


def test_streaming_sends_one_chunk_per_token_then_done(server):
    status, text = call(server.url, "POST", "/v1/completions",
                        {"model": "capitals", "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "stream": True})
    assert status == 200
    events = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e)["choices"][0] for e in events[:-1]]
    # "paris" and " ." as they are generated, then the end (EOS) with its finish reason
    assert [(c["text"], c["finish_reason"]) for c in chunks] == [("paris", None), (" .", None), ("", "stop")]


@pytest.mark.parametrize("method,path,body,raw,status,param", [
    ("POST", "/v1/completions", {"model": "nope", "prompt": "hi"}, None, 404, "model"),
    ("POST", "/v1/completions", None, b"{not json", 400, None),
    ("POST", "/v1/completions", ["a", "list"], None, 400, None),
    ("POST", "/v1/completions", {"model": "tiny"}, None, 400, "prompt"),
    ("POST", "/v1/completions", {"prompt": "hi"}, None, 400, "model"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": [1, 2]}, None, 400, "prompt"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 0}, None, 400, "max_tokens"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": "hot"}, None, 400, "temperature"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "n": 17}, None, 400, "n"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": float("inf")}, None, 400, "temperature"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "top_p": 0}, None, 400, "top_p"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "seed": 2 ** 70}, None, 400, "seed"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 400}, None, 400, "max_tokens"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "echo": True}, None, 400, "echo"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "logit_bias": {"5": 1}}, None, 400, "logit_bias"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "logprobs": 6}, None, 400, "logprobs"),
    ("POST", "/v1/completions", {"model": "tiny", "prompt": "hi", "stream_options": {"include_usage": True}},
     None, 400, None),
    ("POST", "/v1/completions", None, b"[" * 100000, 400, None),
    ("PUT", "/v1/completions", {}, None, 405, None),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                      "tools": []}, None, 400, "tools"),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                      "response_format": {"type": "json_object"}}, None, 400, "response_format"),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x"}],
                                      "top_logprobs": 2}, None, 400, None),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": []}, None, 400, "messages"),
    ("POST", "/v1/chat/completions", {"model": "tiny", "messages": [{"content": "x"}]}, None, 400, "messages"),
    ("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "x"}, None, 404, None),  # off by default
    ("POST", "/v1/unload_lora_adapter", {"lora_name": "capitals"}, None, 404, None),
    ("GET", "/v2/whatever", None, None, 404, None),
])
def test_bad_requests_get_a_json_4xx_and_the_server_lives_on(server, method, path, body, raw, status, param):
    got, payload = call(server.url, method, path, body, raw=raw)
    assert got == status, payload
    assert set(payload["error"]) == {"message", "type", "param", "code"} and payload["error"]["message"]
    assert payload["error"]["param"] == param
    assert call(server.url, "GET", "/health") == (200, {"status": "ok"})


def test_a_body_over_the_limit_is_413_before_it_is_read(server):
    import http.client
    import urllib.parse

    netloc = urllib.parse.urlsplit(server.url).netloc
    conn = http.client.HTTPConnection(netloc, timeout=30)
    conn.putrequest("POST", "/v1/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    conn.send(b"{" + b" " * 1000)
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()


def _runtime_server(tiny_base, roots):
    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu", adapter_roots=roots)
    return start_server(host, "127.0.0.1", 0, settings=ServeSettings(allow_runtime_adapters=True))


def test_load_and_unload_at_run_time(tiny_base, two_adapters, references):
    root = two_adapters["capitals"].parent
    running = _runtime_server(tiny_base, (root,))
    try:
        url = running.url
        assert complete(url, "tiny", PROMPT) == references["tiny"][PROMPT]
        assert call(url, "POST", "/v1/completions", {"model": "capitals", "prompt": PROMPT})[0] == 404

        status, body = call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "capitals", "lora_path": "capitals"})
        assert (status, body) == (200, {"loaded": "capitals"})
        assert complete(url, "capitals", PROMPT) == "paris ."
        status, _ = call(url, "POST", "/v1/load_lora_adapter",
                         {"lora_name": "swapped", "lora_path": str(two_adapters["swapped"])})  # absolute, inside
        assert status == 200
        assert complete(url, "swapped", PROMPT) == "tokyo !"
        status, body = call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "swapped", "lora_path": "capitals"})
        assert status == 409 and body["error"]["code"] == "adapter_exists"

        assert call(url, "POST", "/v1/unload_lora_adapter", {"lora_name": "capitals"}) == (200, {"unloaded": "capitals"})
        assert call(url, "POST", "/v1/completions", {"model": "capitals", "prompt": PROMPT})[0] == 404
        assert complete(url, "swapped", PROMPT) == "tokyo !"
        assert call(url, "POST", "/v1/unload_lora_adapter", {"lora_name": "swapped"})[0] == 200
        assert call(url, "POST", "/v1/unload_lora_adapter", {"lora_name": "swapped"})[0] == 404
        assert [m["id"] for m in call(url, "GET", "/v1/models")[1]["data"]] == ["tiny"]
        # with every adapter gone the base is exactly the base again, and can take adapters anew
        for p in PROMPTS:
            assert complete(url, "tiny", p) == references["tiny"][p]
        assert call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "again", "lora_path": "swapped"})[0] == 200
        assert complete(url, "again", PROMPT) == "tokyo !"
    finally:
        running.close()


def test_an_adapter_for_another_base_is_refused_and_the_server_stays_whole(tiny_base, two_adapters, tmp_path):
    from tests.adapters.conftest import train_lora
    from tests.tiny import make_tiny_model

    other = make_tiny_model(tmp_path / "wide", hidden=48, heads=4, kv_heads=2)
    train_lora(other, tmp_path / "roots" / "foreign", ["the sky is blue ."], steps=2)
    running = _runtime_server(tiny_base, (tmp_path / "roots", two_adapters["capitals"].parent))
    try:
        url = running.url
        before = complete(url, "tiny", PROMPT)
        status, body = call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "foreign", "lora_path": "foreign"})
        assert status == 400 and "cannot load adapter 'foreign'" in body["error"]["message"]
        assert str(tmp_path) not in body["error"]["message"]  # no absolute path in the reply
        assert complete(url, "tiny", PROMPT) == before
        assert call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "capitals", "lora_path": "capitals"})[0] == 200
        status, body = call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "foreign", "lora_path": "foreign"})
        assert status == 400
        assert complete(url, "capitals", PROMPT) == "paris ."
        assert [m["id"] for m in call(url, "GET", "/v1/models")[1]["data"]] == ["tiny", "capitals"]
    finally:
        running.close()
