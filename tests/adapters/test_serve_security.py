"""Safe by default, over real HTTP: the API key, runtime loading confined to the adapter roots,
errors that do not say whether an outside path exists, no absolute paths in replies, --max-loras."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from backend.serve import AdapterHost, ServeSettings, start_server
from tests.adapters.conftest import PROMPT
from tests.adapters.http_client import call

pytestmark = pytest.mark.slow
KEY = "sk-test-123"


def _call(url: str, method: str, path: str, body=None, key: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    req = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def roots(tmp_path_factory, two_adapters):
    """root/ holds a copy of 'capitals' and a symlink to the outside 'swapped'; outside/ is a sibling."""
    import shutil

    top = tmp_path_factory.mktemp("roots")
    (top / "root").mkdir()
    shutil.copytree(two_adapters["capitals"], top / "root" / "caps")
    os.symlink(two_adapters["swapped"], top / "root" / "link-out")
    return top


@pytest.fixture(scope="module")
def guarded(tiny_base, roots):
    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu",
                       adapter_roots=(roots / "root",), max_loras=1)
    running = start_server(host, settings=ServeSettings(api_key=KEY, allow_runtime_adapters=True))
    yield running
    running.close()


def test_every_route_but_health_needs_the_key(guarded):
    url = guarded.url
    assert call(url, "GET", "/health") == (200, {"status": "ok"})
    for method, path, body in [("GET", "/v1/models", None), ("GET", "/openapi.json", None),
                               ("POST", "/v1/completions", {"model": "tiny", "prompt": PROMPT}),
                               ("POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "caps"}),
                               ("GET", "/no/such/route", None)]:
        for key in (None, "wrong"):
            status, payload = _call(url, method, path, body, key)
            assert status == 401 and payload["error"]["code"] == "invalid_api_key", (method, path, key)
    assert _call(url, "GET", "/v1/models", key=KEY)[0] == 200
    status, body = _call(url, "POST", "/v1/completions", {"model": "tiny", "prompt": PROMPT, "max_tokens": 2}, KEY)
    assert status == 200 and body["usage"]["completion_tokens"] <= 2


def test_runtime_loads_stay_inside_the_roots_and_say_nothing_of_outside_paths(guarded, roots, two_adapters):
    url = guarded.url
    outside_existing = str(two_adapters["swapped"])
    outside_missing = str(roots / "outside" / "nothing-here")
    refusals = [_call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": p}, KEY)
                for p in (outside_existing, outside_missing, "../outside", "caps/../../root/../..", "link-out",
                          "/etc", "~")]
    assert {status for status, _ in refusals} == {403}
    assert len({json.dumps(body) for _, body in refusals}) == 1  # the same words whether it exists or not
    assert outside_existing not in json.dumps(refusals)
    # inside: a missing folder may be named, relative to the root only
    status, body = _call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "nope"}, KEY)
    assert status == 400 and "'nope'" in body["error"]["message"] and str(roots) not in body["error"]["message"]
    # inside and valid: loads, and is listed by name only
    assert _call(url, "POST", "/v1/load_lora_adapter", {"lora_name": "caps", "lora_path": "caps"}, KEY) == \
        (200, {"loaded": "caps"})
    status, models = _call(url, "GET", "/v1/models", key=KEY)
    assert [m["id"] for m in models["data"]] == ["tiny", "caps"] and str(roots) not in json.dumps(models)
    status, body = _call(url, "POST", "/v1/completions",
                         {"model": "caps", "prompt": PROMPT, "max_tokens": 4, "temperature": 0}, KEY)
    assert body["choices"][0]["text"] == "paris ."
    # --max-loras 1: a second adapter is refused until the first is unloaded
    status, body = _call(url, "POST", "/v1/load_lora_adapter",
                         {"lora_name": "caps2", "lora_path": str(roots / "root" / "caps")}, KEY)
    assert status == 409 and body["error"]["code"] == "too_many_adapters"
    assert _call(url, "POST", "/v1/unload_lora_adapter", {"lora_name": "caps"}, KEY)[0] == 200
    assert _call(url, "POST", "/v1/load_lora_adapter",
                 {"lora_name": "caps2", "lora_path": str(roots / "root" / "caps")}, KEY)[0] == 200


def test_cli_refusals_are_one_line(tiny_base, capsys):
    from planner.cli import main

    for argv, words in [(["serve", str(tiny_base), "--allow-runtime-adapters"], "--adapter-root"),
                        (["serve", str(tiny_base), "--engine", "tgi"], "--engine must be"),
                        (["serve", str(tiny_base), "--max-loras", "0"], "--max-loras"),
                        (["serve", str(tiny_base), "--max-lora-rank", "8"], "--engine vllm")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (argv, err)


def test_loopback_detection():
    from planner.cli.serve_cmd import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.5.5.5", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.2", "example.com"))
