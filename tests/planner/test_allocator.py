"""The caching-allocator replay (planner/allocator.py) on the patterns PyTorch documents, with
the exact figures torch reports for them (pytorch/devlogs 2026-06-01, 'When does fragmentation
occur in the CUDA caching allocator?')."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import Job, estimate
from planner.allocator import Trace, replay, round_size, segment_size
from planner.errors import PlannerError

MIB = 2**20


def test_rounding_and_segment_sizes():
    assert round_size(1) == 512 and round_size(513) == 1024
    assert segment_size(100) == 2 * MIB            # small pool: 2 MiB segments
    assert segment_size(1 * MIB) == 2 * MIB
    assert segment_size(1 * MIB + 512) == 20 * MIB  # 1-10 MiB: a 20 MiB segment
    assert segment_size(10 * MIB) == 10 * MIB       # >= 10 MiB: rounded to 2 MiB
    assert segment_size(15 * MIB) == 16 * MIB


def _small_then_large():
    t = Trace()
    small = [t.alloc(16 * MIB) for _ in range(8)]
    t.free(*small)
    [t.alloc(32 * MIB) for _ in range(4)]
    return t.events


def test_small_then_large_fragments_caching_but_not_expandable():
    assert replay(_small_then_large()).reserved_bytes == 256 * MIB
    assert replay(_small_then_large(), "expandable").reserved_bytes == 140 * MIB


def test_large_then_small_reuses_segments():
    t = Trace()
    large = [t.alloc(32 * MIB) for _ in range(4)]
    t.free(*large)
    [t.alloc(16 * MIB) for _ in range(8)]
    r = replay(t.events)
    assert r.reserved_bytes == 128 * MIB and r.segments == 4


def test_split_only_when_remainder_exceeds_1_mib():
    t = Trace()
    a = t.alloc(20 * MIB)
    t.free(a)
    t.alloc(19 * MIB + 512 * 1024)  # remainder 0.5 MiB: the whole block is handed out
    t.alloc(1 * MIB + 512)
    r = replay(t.events)
    assert r.reserved_bytes == 40 * MIB
    assert r.peak_allocated_bytes == 20 * MIB + 1 * MIB + 512


def test_max_split_size_keeps_oversize_blocks_whole():
    t = Trace()
    a = t.alloc(300 * MIB)
    t.free(a)
    t.alloc(50 * MIB)
    assert replay(t.events).reserved_bytes == 300 * MIB
    assert replay(t.events, max_split_size=256 * MIB).reserved_bytes == 350 * MIB


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 64 * MIB)), min_size=1, max_size=60))
def test_reserved_never_below_live_bytes(ops):
    t, live = Trace(), []
    for free_one, size in ops:
        if free_one and live:
            t.free(live.pop(0))
        else:
            live.append(t.alloc(size))
    for policy in ("caching", "expandable"):
        r = replay(t.events, policy)
        assert r.reserved_bytes >= r.peak_allocated_bytes > 0


def test_expandable_policy_is_not_above_caching_on_a_training_step():
    cach = estimate("llama3.2-1b", mode="lora", seq_len=2048, batch_size=4)
    exp = estimate("llama3.2-1b", mode="lora", seq_len=2048, batch_size=4, allocator="expandable")
    assert exp.peak_allocated_bytes == cach.peak_allocated_bytes
    assert exp.peak_allocated_bytes <= exp.reserved_bytes < cach.reserved_bytes
    assert exp.to_dict()["memory"]["allocator"] == "expandable"


def test_bad_allocator_is_one_line():
    with pytest.raises(PlannerError) as err:
        Job(allocator="foo")
    assert "\n" not in str(err.value) and "caching" in str(err.value)


def test_int8_inference_holds_llm_int8_matmul_buffers_not_a_dequantized_weight():
    # bitsandbytes 0.50.2, Llama-3-8B's gate/up projection (4096 -> 14336) over 2048 tokens: the
    # product holds the int8 codes (1 B x 4096), the fp32 row scales (4 B), the int32 product
    # (4 B x 14336), its fp16 dequantization and the bf16 cast (2 + 2 B x 14336) at once
    est = estimate("llama3-8b", mode="inference", precision="int8", seq_len=2048)
    assert est.breakdown["int8 matmul buffers"] == (4096 + 4 + 8 * 14336) * 2048
    assert "dequantization buffer" not in est.breakdown
    assert "dequantization buffer" in estimate("llama3-8b", mode="inference", precision="int4").breakdown
    bf16 = estimate("llama3-8b", mode="inference", precision="bf16", seq_len=2048)
    # the replay caches the per-linear int32/fp16 blocks: more slack than the bf16 prefill's
    assert est.allocator_slack_bytes > bf16.allocator_slack_bytes
