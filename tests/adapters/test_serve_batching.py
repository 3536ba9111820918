"""Batching across adapters: batched replies equal single ones, per-row sampling, logprobs against the model.

The server under test has a long collection window (150 ms) so that concurrent requests really
share batches; ``scheduler.batch_sizes`` shows they did. Oracles are plain transformers/PEFT
models loaded separately (tests/adapters/test_server.py::_reference) and hand-written formulas.
"""
from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.serve import AdapterHost, ServerOptions, start_server
from backend.serve.protocol import SamplingParams
from tests.adapters.conftest import PROMPT
from tests.adapters.http_client import call
from tests.adapters.test_server import PROMPTS, _reference

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batched(tiny_base, two_adapters):
    host = AdapterHost(str(tiny_base), base_name="tiny", dtype="fp32", device="cpu")
    for name, path in two_adapters.items():
        host.load_adapter(name, path)
    running = start_server(host, options=ServerOptions(batch_window_s=0.15, max_batch_size=64))
    yield running
    running.close()


def _together(url: str, bodies: list[dict]) -> list[dict]:
    """POST every body to /v1/completions at the same moment (one thread each); the parsed replies."""
    out: dict[int, dict] = {}
    gate = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        gate.wait()
        status, body = call(url, "POST", "/v1/completions", bodies[i])
        out[i] = body if status == 200 else {"status": status, **body}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return [out[i] for i in range(len(bodies))]


def test_mixed_adapter_batches_give_the_single_adapter_replies(batched, tiny_base, two_adapters):
    refs = {"tiny": _reference(tiny_base, max_tokens=8)}
    refs.update({n: _reference(tiny_base, p, max_tokens=8) for n, p in two_adapters.items()})
    jobs = [(m, p) for m in ("capitals", "swapped", "tiny") for p in PROMPTS] * 2  # 18, prompts of 3 lengths
    before = sum(batched.server.scheduler.batch_sizes.values())
    replies = _together(batched.url, [{"model": m, "prompt": p, "max_tokens": 8, "temperature": 0} for m, p in jobs])
    assert [r["choices"][0]["text"] for r in replies] == [refs[m][p] for m, p in jobs]
    sizes = batched.server.scheduler.batch_sizes
    assert sum(sizes.values()) - before < len(jobs) and max(sizes) > 3  # they really were batched


def test_seeded_sampling_does_not_depend_on_the_batch(batched):
    body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 1234}
    alone = call(batched.url, "POST", "/v1/completions", body)[1]["choices"][0]["text"]
    others = [{"model": m, "prompt": p, "max_tokens": 10, "temperature": 1.0} for m in ("capitals", "tiny")
              for p in PROMPTS]
    replies = _together(batched.url, [body, *others, body])
    assert replies[0]["choices"][0]["text"] == alone == replies[-1]["choices"][0]["text"]


def test_n_choices_and_list_prompts(batched):
    status, body = call(batched.url, "POST", "/v1/completions",
                        {"model": "capitals", "prompt": [PROMPT, "what color is the sky ?"], "n": 2,
                         "max_tokens": 4, "temperature": 0})
    assert status == 200 and [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    texts = [c["text"] for c in body["choices"]]
    assert texts[0] == texts[1] == "paris ." and texts[2] == texts[3] == "blue ."
    status, body = call(batched.url, "POST", "/v1/completions",
                        {"model": "tiny", "prompt": PROMPT, "n": 3, "max_tokens": 12, "seed": 5})
    assert len({c["text"] for c in body["choices"]}) > 1  # each choice its own draw


def test_logprobs_are_the_models_log_softmax(batched, tiny_base, two_adapters):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    status, body = call(batched.url, "POST", "/v1/completions",
                        {"model": "capitals", "prompt": PROMPT, "max_tokens": 2, "temperature": 0, "logprobs": 3})
    assert status == 200
    lp = body["choices"][0]["logprobs"]
    assert lp["tokens"] == ["paris", "."] and lp["text_offset"] == [0, 5]
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32),
                                      two_adapters["capitals"]).eval()
    with torch.no_grad():
        ids = tok(PROMPT, return_tensors="pt")["input_ids"]
        want = torch.log_softmax(model(input_ids=ids).logits[0, -1], dim=-1)
    assert math.isclose(lp["token_logprobs"][0], float(want[tok.convert_tokens_to_ids("paris")]), abs_tol=1e-4)
    top = want.topk(3)
    assert list(lp["top_logprobs"][0]) == [tok.decode([int(i)]) for i in top.indices]
    # chat: the same numbers in the chat format
    status, body = call(batched.url, "POST", "/v1/chat/completions",
                        {"model": "capitals", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2,
                         "logprobs": True, "top_logprobs": 2, "temperature": 0})
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == body["usage"]["completion_tokens"] >= 1 and len(content[0]["top_logprobs"]) == 2
    assert content[0]["bytes"] == list(content[0]["token"].encode())


# ---- the row sampler against hand-written formulas (no server) ---------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=6, max_size=6), st.lists(st.integers(0, 3), min_size=6, max_size=6),
       st.floats(-2, 2), st.floats(-2, 2))
def test_greedy_with_penalties_is_the_argmax_of_the_openai_formula(logits, counts, presence, frequency):
    import torch

    from backend.serve.sampling import RowSampler

    params = [SamplingParams(max_tokens=1, temperature=0.0, presence_penalty=presence, frequency_penalty=frequency)]
    sampler = RowSampler.build(params, 6, "cpu", torch.Generator())
    sampler.counts = torch.tensor([counts], dtype=torch.float32)
    want = [x - c * frequency - (c > 0) * presence for x, c in zip(logits, counts)]
    got = int(sampler.choose(torch.tensor([logits]))[0])
    assert want[got] == pytest.approx(max(want), abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=8, max_size=8), st.floats(0.01, 1.0), st.integers(0, 2 ** 32))
def test_top_p_samples_only_from_the_nucleus(logits, top_p, seed):
    import torch

    from backend.serve.sampling import RowSampler

    probs = torch.softmax(torch.tensor(logits), dim=-1).tolist()
    order = sorted(range(8), key=lambda i: -probs[i])
    nucleus, mass = set(), 0.0
    for i in order:  # the smallest prefix whose mass reaches top_p
        nucleus.add(i)
        mass += probs[i]
        if mass >= top_p + 1e-6:  # (loose by float rounding, never tight)
            break
    params = [SamplingParams(max_tokens=1, temperature=1.0, top_p=top_p, seed=seed)] * 4
    sampler = RowSampler.build(params, 8, "cpu", torch.Generator())
    got = sampler.choose(torch.tensor([logits] * 4)).tolist()
    assert set(got) <= nucleus and len(set(got)) == 1  # same seed: same draw on every row
