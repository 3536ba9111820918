"""The pure parts of `plan bench`: percentiles, a level's figures from request records, prompt sizing,
the prediction file, the comparison and calibration rows. No server: records are made by hand."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.bench import BenchResult, BenchSettings, prompt_text, words_for
from backend.bench_results import RequestRecord, percentile, summarize
from backend.bench_compare import (Provenance, append_calibration, calibration_rows, compare, level_to_compare,
                                   load_prediction)
from planner.errors import PlannerError


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from([0, 50, 90, 99, 100]))
def test_percentile_is_numpys_linear_percentile(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-12, abs=1e-9)


def _rec(ttft, gaps, out, prompt=8):
    return RequestRecord(ok=True, ttft_s=ttft, e2e_s=ttft + sum(gaps), itl_s=tuple(gaps), prompt_tokens=prompt,
                         output_tokens=out, token_chunks=len(gaps) + 1)


def test_a_level_from_hand_made_records():
    records = [_rec(0.1, [0.01, 0.03], 3), _rec(0.2, [0.02], 2), _rec(0.3, [], 1),
               RequestRecord(ok=False, error="HTTP 400: bad"), RequestRecord(ok=False, error="HTTP 400: bad")]
    lv = summarize(2, records, cancelled=1, duration_s=2.0)
    assert (lv.requests_sent, lv.requests_ok, lv.requests_failed, lv.requests_cancelled) == (6, 3, 2, 1)
    assert lv.errors == ("HTTP 400: bad",)
    assert lv.output_tokens_total == 6 and lv.output_tokens_per_second == 3.0 and lv.requests_per_second == 1.5
    assert lv.ttft_ms.median == pytest.approx(200) and lv.ttft_ms.p99 == pytest.approx(298)
    assert sorted([lv.itl_ms.median, lv.itl_ms.mean]) == pytest.approx([20, 20])
    # TPOT: (0.04 / 2, 0.02 / 1); the one-token request has none
    assert lv.tpot_ms.median == pytest.approx(20) and lv.tpot_ms.p90 == pytest.approx(20)
    assert lv.e2e_ms.median == pytest.approx(220) and lv.input_tokens_mean == 8
    d = lv.to_dict()
    assert d["ttft_ms"]["p90"] == pytest.approx(280) and "records" not in d
    json.dumps(d)


def test_a_level_where_everything_failed_has_no_latencies():
    lv = summarize(1, [RequestRecord(ok=False, error="x")], cancelled=0, duration_s=1.0)
    assert lv.ttft_ms is None and lv.output_tokens_per_second == 0 and lv.to_dict()["e2e_ms"] is None


def test_prompts_are_sized_from_two_probes_and_differ_per_request():
    assert words_for(100, [(16, 17), (32, 33)]) == 99  # one token per word plus a BOS
    assert words_for(100, [(16, 32), (32, 64)]) == 50
    assert words_for(1, [(16, 17), (32, 33)]) == 1
    with pytest.raises(PlannerError, match="cannot size prompts"):
        words_for(10, [(16, 20), (32, 20)])
    a, b = prompt_text(20, 0, 0), prompt_text(20, 1, 0)
    assert len(a.split()) == 20 and a != b and prompt_text(20, 0, 0) == a


@pytest.mark.parametrize("kwargs,message", [
    ({"base_url": "localhost:8000"}, "--url must start with http"),
    ({"concurrencies": ()}, "--concurrency needs at least one"),
    ({"concurrencies": (0,)}, "--concurrency must be from 1"),
    ({"concurrencies": (2, 2)}, "lists a level twice"),
    ({"input_tokens": 0}, "--input-tokens must be from 1"),
    ({"output_tokens": 2**21}, "--output-tokens must be from 1"),
    ({"num_prompts": 0}, "--num-prompts must be from 1"),
    ({"max_seconds": float("nan")}, "--max-seconds must be above 0"),
    ({"request_timeout_s": 0.0}, "--request-timeout must be above 0"),
])
def test_settings_refuse_bad_values(kwargs, message):
    base = dict(base_url="http://127.0.0.1:1", concurrencies=(1,), input_tokens=8, output_tokens=8)
    with pytest.raises(PlannerError, match=message):
        BenchSettings(**{**base, **kwargs})


def test_the_api_key_is_never_in_a_report():
    s = BenchSettings(base_url="http://127.0.0.1:1", concurrencies=(1,), input_tokens=8, output_tokens=8,
                      api_key="secret")
    assert "secret" not in json.dumps(s.to_dict()) and s.v1_url == "http://127.0.0.1:1/v1"
    assert BenchSettings(base_url="http://h/v1/", concurrencies=(1,), input_tokens=1, output_tokens=1).v1_url == "http://h/v1"


def _result(levels=(1, 4)):
    s = BenchSettings(base_url="http://127.0.0.1:1", concurrencies=tuple(levels), input_tokens=8, output_tokens=3)
    lvs = tuple(summarize(c, [_rec(0.1, [0.01, 0.03], 3), _rec(0.2, [0.02, 0.02], 3)], 0, 1.0) for c in levels)
    return BenchResult(settings=s, model="tiny", words_per_prompt=8, levels=lvs, started_at="2026-12-08T02:00:00+00:00",
                       load_generator="openai-python x")


def _prediction(tmp_path, performance, **serving):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"model": "m", "serving": {"engine": "vllm", "engine_version": "0.19.0",
                                                          **serving, "performance": performance}}))
    return path


def test_comparison_reads_the_performance_block_and_tolerates_missing_keys(tmp_path):
    pred = load_prediction(_prediction(tmp_path, {"concurrency": 4, "output_tokens_per_second": 9.0,
                                                  "ttft_ms": 300.0, "itl_ms": None}))
    cmp = compare(_result(), pred)
    by = {m.key: m for m in cmp.metrics}
    assert cmp.concurrency == 4
    assert by["output_tokens_per_second"].measured == 6.0 and by["output_tokens_per_second"].error == pytest.approx(0.5)
    assert by["ttft_ms"].measured == pytest.approx(150) and by["ttft_ms"].error == pytest.approx(1.0)
    assert by["itl_ms"].predicted is None and by["itl_ms"].error is None  # unknown stays unknown
    assert by["e2e_ms"].predicted is None and by["requests_per_second"].measured == 2.0
    json.dumps(cmp.to_dict())


def test_a_prediction_must_match_a_measured_level(tmp_path):
    pred = load_prediction(_prediction(tmp_path, {"concurrency": 8}))
    with pytest.raises(PlannerError, match="is for concurrency 8, which --concurrency 1,4 does not measure: add 8"):
        level_to_compare(pred, (1, 4))
    assert load_prediction(_prediction(tmp_path, {"concurrency": 4.0})).concurrency == 4
    no_c = load_prediction(_prediction(tmp_path, {"ttft_ms": 1.0}))
    assert level_to_compare(no_c, (4,)) == 4
    with pytest.raises(PlannerError, match="names no serving.performance.concurrency"):
        level_to_compare(no_c, (1, 4))


@pytest.mark.parametrize("content,message", [
    ("not json", "is not JSON"),
    (json.dumps({"estimate": {}}), "has no serving.performance block"),
    (json.dumps({"serving": {"performance": {"concurrency": 0}}}), "concurrency must be a positive integer"),
    (json.dumps([1, 2]), "has no serving.performance block"),
    (json.dumps({"serving": {"performance": {"concurrency": 12.5}}}), "is for a mean concurrency of 12.5"),
    (json.dumps({"serving": {"performance": {"concurrency": "max"}}}), "must be a positive integer, got 'max'"),
])
def test_bad_prediction_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(PlannerError, match=message):
        load_prediction(path)
    with pytest.raises(PlannerError, match="cannot read --predicted"):
        load_prediction(tmp_path / "absent.json")


def test_calibration_rows_append_and_keep_what_was_there(tmp_path):
    result = _result()
    pred = load_prediction(_prediction(tmp_path, {"concurrency": 4, "ttft_ms": 300.0}, tensor_parallel_size=2))
    rows = calibration_rows(result, Provenance("1x CPU", "plan-serve", "0.1.0"), compare(result, pred))
    assert [r["concurrency"] for r in rows] == [1, 4]
    r4 = rows[1]
    assert r4["source"] == "plan bench" and r4["gpu"] == "1x CPU" and r4["engine_version"] == "0.1.0"
    assert (r4["isl"], r4["osl"], r4["osl_measured_mean"], r4["num_prompts"]) == (8, 3, 3.0, 2)
    assert r4["output_tokens_per_s"] == 6.0 and r4["ttft_ms"] == pytest.approx(150)
    assert r4["predicted"]["ttft_ms"] == 300.0 and "predicted" not in rows[0]
    assert r4["tp"] == rows[0]["tp"] == 2 and "pp" not in r4  # the plan's deployment; pp not given
    assert "base_url" not in r4["settings"] and r4["date"].startswith("2026-12-08")
    path = tmp_path / "cal.jsonl"
    path.write_text('{"kept": true}')  # no trailing newline: appending must not glue lines together
    assert append_calibration(path, rows) == 2
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"kept": True} and [json.loads(x)["concurrency"] for x in lines[1:]] == [1, 4]
    with pytest.raises(PlannerError, match="is a folder"):
        append_calibration(tmp_path, rows)
    with pytest.raises(PlannerError, match="does not exist"):
        append_calibration(tmp_path / "no" / "cal.jsonl", rows)
