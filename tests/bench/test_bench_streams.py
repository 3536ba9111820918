"""Stream shapes `plan serve` never sends, from a scripted server on 127.0.0.1 (real HTTP, real aiohttp).

A stand-in, and the only one in these tests: vLLM cannot run on this CPU machine, so this server
replays the shapes of vLLM's /v1/completions stream (vllm/entrypoints/openai/completion/serving.py,
0.19.0: finish_reason on the last token's chunk, a final usage chunk with no choices), SSE comments,
error events in the stream, vLLM's older error body, a stream without usage, and slow tokens.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.bench import BenchSettings, run_bench
from planner.errors import PlannerError

TOKEN_DELAY_S = {"slow": 0.05}
SEEN: dict[str, int] = {}
LOCK = threading.Lock()


class Scripted(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._json(200, {"object": "list", "data": [{"id": "vllm-like"}, {"id": "other"}]})

    def do_POST(self):
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):  # the client cancelled (a cut level, a timeout)
            pass

    def _post(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model, n = req["model"], req["max_tokens"]
        if model == "old-error":
            return self._json(400, {"object": "error", "message": "bad thing", "code": 400})
        if model == "needs-key" and self.headers.get("Authorization") != "Bearer k3y":
            return self._json(401, {"error": {"message": "missing or wrong API key", "type": "authentication_error"}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def send(body):
            self.wfile.write(b"data: " + (body if isinstance(body, bytes) else json.dumps(body).encode()) + b"\n\n")
            self.wfile.flush()

        self.wfile.write(b": ping\n\n")
        if model == "slow-later":  # the two probes and the full-size check are fast; the level's requests slow
            with LOCK:
                SEEN[model] = SEEN.get(model, 0) + 1
                delay = 0.05 if SEEN[model] > 3 else 0
        else:
            delay = TOKEN_DELAY_S.get(model, 0)
        for i in range(n):
            time.sleep(delay)
            send({"choices": [{"index": 0, "text": f" w{i}", "finish_reason": "length" if i == n - 1 else None}],
                  "usage": None})
            if model == "error-mid":
                send({"error": {"message": "engine died", "type": "server_error"}})
                return
            if model == "old-error-mid":
                send({"object": "error", "message": "engine died too", "code": 500})
                return
        if model != "no-usage":
            send({"choices": [], "usage": {"prompt_tokens": len(req["prompt"].split()) + 1, "completion_tokens": n,
                                           "total_tokens": 0}})
        send(b"[DONE]")


@pytest.fixture(scope="module")
def url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _settings(url, **kw):
    return BenchSettings(**{"base_url": url, "concurrencies": (2,), "input_tokens": 20, "output_tokens": 5,
                            "num_prompts": 4, **kw})


def test_a_vllm_shaped_stream(url):
    result = run_bench(_settings(url))
    assert result.model == "vllm-like" and result.words_per_prompt == 19  # a BOS on top of one token per word
    (lv,) = result.levels
    assert (lv.requests_ok, lv.requests_failed, lv.input_tokens_mean, lv.output_tokens_total) == (4, 0, 20, 20)
    for r in lv.records:  # the last token's chunk carries finish_reason and is still a token
        assert r.token_chunks == r.output_tokens == 5 and len(r.itl_s) == 4


@pytest.mark.parametrize("model,message", [
    ("no-usage", "the stream carried no usage (stream_options.include_usage)"),
    ("error-mid", "engine died"),
    ("old-error-mid", "engine died too"),
    ("old-error", "HTTP 400: bad thing"),
])
def test_a_broken_endpoint_stops_at_the_probe(url, model, message):
    with pytest.raises(PlannerError) as err:
        run_bench(_settings(url, model=model))
    assert str(err.value) == f"the first request to {url}/v1 failed: {message}"


def test_a_level_is_cut_at_max_seconds_and_slow_requests_time_out(url):
    # 50 tokens at 50 ms each take 2.5 s: at --max-seconds 0.5 both requests in flight are cut
    result = run_bench(_settings(url, model="slow", output_tokens=50, num_prompts=100, max_seconds=0.5))
    (lv,) = result.levels
    assert (lv.requests_ok, lv.requests_failed, lv.requests_cancelled, lv.requests_sent) == (0, 0, 2, 2)
    assert lv.ttft_ms is None and lv.output_tokens_per_second == 0 and lv.duration_s >= 0.5
    result = run_bench(_settings(url, model="slow-later", output_tokens=50, num_prompts=2, request_timeout_s=0.5))
    (lv,) = result.levels
    assert (lv.requests_ok, lv.requests_failed, lv.requests_cancelled) == (0, 2, 0)
    assert lv.errors == ("timed out (--request-timeout)",)
    # the full-size request before the levels takes 2.5 s too: at --request-timeout 0.5 the run stops there
    with pytest.raises(PlannerError) as err:
        run_bench(_settings(url, model="slow", output_tokens=50, num_prompts=2, request_timeout_s=0.5))
    assert str(err.value) == f"a request of 20 input and 50 output tokens to {url}/v1 failed: timed out (--request-timeout)"


def test_the_api_key_goes_as_a_bearer_header(url):
    assert run_bench(_settings(url, model="needs-key", api_key="k3y")).levels[0].requests_ok == 4
    with pytest.raises(PlannerError, match="failed: HTTP 401: missing or wrong API key$"):
        run_bench(_settings(url, model="needs-key"))
