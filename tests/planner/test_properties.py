"""Invariants of the memory model, checked over many random jobs."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import Job, count_params, estimate, resolve
from planner.job import BYTES_PER_PARAM
from planner.memory import live_replay, replay_args

MODELS = [resolve(n) for n in ("llama3.2-1b", "qwen2.5-7b", "mistral-7b", "phi3-mini", "gemma2-2b", "mixtral-8x7b")]
modes = st.sampled_from(["inference", "full", "lora", "qlora", "prompt-tuning"])
models = st.sampled_from(MODELS)
seqs = st.integers(1, 32768)
batches = st.integers(1, 16)


@settings(max_examples=300, deadline=None)
@given(models, modes, seqs, batches, st.booleans())
def test_more_tokens_never_need_less(spec, mode, seq, batch, ckpt):
    base = Job(mode=mode, seq_len=seq, batch_size=batch, gradient_checkpointing=ckpt)
    m0 = estimate(spec, base).peak_allocated_bytes
    assert estimate(spec, base.with_(seq_len=seq + 1)).peak_allocated_bytes >= m0
    assert estimate(spec, base.with_(batch_size=batch + 1)).peak_allocated_bytes >= m0


@settings(max_examples=200, deadline=None)
@given(models, st.sampled_from(["full", "lora", "qlora", "prompt-tuning"]), seqs, batches)
def test_checkpointing_never_costs_memory(spec, mode, seq, batch):
    job = Job(mode=mode, seq_len=seq, batch_size=batch)
    on = estimate(spec, job.with_(gradient_checkpointing=True)).peak_allocated_bytes
    off = estimate(spec, job.with_(gradient_checkpointing=False)).peak_allocated_bytes
    assert on <= off


@settings(max_examples=100, deadline=None)
@given(models, st.sampled_from(["lora", "qlora"]), st.integers(1, 256))
def test_higher_rank_never_needs_less(spec, mode, r):
    job = Job(mode=mode, lora_r=r)
    assert estimate(spec, job.with_(lora_r=r + 1)).peak_allocated_bytes >= estimate(spec, job).peak_allocated_bytes


@settings(max_examples=100, deadline=None)
@given(models, modes, seqs, batches)
def test_every_phase_holds_the_weights_once(spec, mode, seq, batch):
    # independent oracle: the parameter count (planner/params.py) times the bytes of the storage
    # precision (4-bit: at least half a byte per quantized parameter); every moment of the step
    # holds them, and no term is listed twice under one name (the breakdown is keyed by name)
    est = estimate(spec, Job(mode=mode, seq_len=seq, batch_size=batch))
    floor = est.params.total * (0.5 if est.job.precision == "int4" else BYTES_PER_PARAM[est.job.precision])
    for name, terms in est.phases:
        assert sum(t.bytes for t in terms if t.kind == "weights") >= floor, name
        assert len({t.name for t in terms}) == len(terms), name


@pytest.mark.slow  # each example replays the run through the allocator model
@settings(max_examples=15, deadline=None)
@given(models, modes, st.integers(1, 8192), st.integers(1, 8))
def test_the_replayed_pool_is_whole_segments_above_the_live_bytes(spec, mode, seq, batch):
    # the caching allocator only ever cudaMallocs whole segments (2 MiB, 20 MiB or a multiple of
    # 2 MiB: c10/cuda/CUDACachingAllocator.cpp get_allocation_size), and never holds less than
    # what is live; the estimate keeps exactly the surplus the replay found above its own peak
    est = estimate(spec, Job(mode=mode, seq_len=seq, batch_size=batch))
    r = live_replay(spec, count_params(spec), *replay_args(spec, count_params(spec), est.job, est.terms))
    assert r.reserved_bytes % (2 * 1024**2) == 0 and r.reserved_bytes >= r.peak_allocated_bytes > 0
    assert est.allocator_slack_bytes == max(0, r.reserved_bytes - r.peak_allocated_bytes)
