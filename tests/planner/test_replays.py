"""The precomputed replays (planner/replays.py, planner/data/replays.json) are the live replay's
figures: stale entries would silently change every default estimate."""
import json

import pytest

from planner import count_params, resolve
from planner.job import MODES, Job
from planner.memory import build_estimate, live_replay, replay_args
from planner.replays import TABLE, code_digest, lookup
from planner.steptrace import trace_inputs


def test_the_table_matches_the_code_that_replays():
    doc = json.loads(TABLE.read_text())
    assert doc["code"] == code_digest(), "planner/data/replays.json is stale: run scripts/precompute_replays.py"
    assert doc["source"] and doc["date"] and len(doc["entries"]) > 100


@pytest.mark.parametrize("name", ["qwen2.5-0.5b", "llama3.2-1b"])
def test_stored_replays_equal_live_ones(name):
    spec = resolve(name)
    params = count_params(spec)
    for job in [Job(mode=m) for m in MODES] + [Job(mode="qlora", kbit_prep=False)]:
        args = replay_args(spec, params, job, build_estimate(spec, params, job).terms)
        stored = lookup(trace_inputs(spec, params, *args))
        live = live_replay(spec, params, *args)
        assert stored == (live.reserved_bytes, live.peak_allocated_bytes, live.segments), job.mode


def test_a_shape_not_stored_is_replayed_live():
    spec = resolve("qwen2.5-0.5b")
    params = count_params(spec)
    job = Job(mode="lora", seq_len=777)
    args = replay_args(spec, params, job, build_estimate(spec, params, job).terms)
    assert lookup(trace_inputs(spec, params, *args)) is None
