"""Invariants of the memory model, checked over many random jobs."""
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import Job, estimate, resolve

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
def test_breakdown_sums_to_peak_and_total_adds_overheads(spec, mode, seq, batch):
    est = estimate(spec, Job(mode=mode, seq_len=seq, batch_size=batch))
    assert sum(est.breakdown.values()) == est.peak_allocated_bytes
    assert all(v > 0 for v in est.breakdown.values())


@settings(max_examples=15, deadline=None)  # each example replays the run through the allocator model
@given(models, modes, st.integers(1, 8192), st.integers(1, 8))
def test_total_adds_reserved_and_out_of_pool(spec, mode, seq, batch):
    # contract (issue 10): reserved = peak + what the caching allocator keeps cached; total adds
    # what lives outside the pool and the model tolerance; the CUDA context is counted apart
    est = estimate(spec, Job(mode=mode, seq_len=seq, batch_size=batch))
    assert est.reserved_bytes == est.peak_allocated_bytes + est.allocator_slack_bytes
    assert est.allocator_slack_bytes >= 0
    assert est.total_bytes == est.reserved_bytes + est.out_of_pool_bytes + est.tolerance_bytes
