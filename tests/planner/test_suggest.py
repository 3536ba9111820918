"""planner/suggest.py against a hand-made fit rule (an independent oracle: a byte budget)."""
from planner import estimate
from planner.job import Job
from planner.suggest import Verdict, suggest


def budget(limit: int):
    def check(e, n: int) -> Verdict:
        need = e.peak_allocated_bytes // n
        return Verdict(need <= limit, need, "single-gpu" if n == 1 else "fsdp")
    return check


def test_each_suggestion_fits_by_the_rule_it_was_given():
    base = estimate("llama3-8b", mode="full", seq_len=2048, batch_size=4)
    limit = base.peak_allocated_bytes // 3
    out = suggest(base.model, base.job, budget(limit), gpu_count=1, gpu_name="X")
    assert out
    for s in out:
        assert s.fits and s.per_gpu_bytes <= limit
    flags = [s.flags for s in out]
    assert ("--gpu", "3x X") in flags  # exactly the smallest count that divides it under the budget


def test_largest_batch_and_seq_that_fit_are_exact():
    job = Job(mode="lora", seq_len=4096, batch_size=8)
    base = estimate("llama3.2-1b", job)
    limit = estimate("llama3.2-1b", job.with_(batch_size=3)).peak_allocated_bytes
    out = {s.flags[0]: s for s in suggest(base.model, job, budget(limit))}
    assert out["--batch-size"].flags == ("--batch-size", "3") and "over 3 steps" in out["--batch-size"].why


def test_nothing_single_fits_combines_the_savings():
    base = estimate("llama3-8b", mode="full", gradient_checkpointing=False)
    combined = estimate("llama3-8b", Job(mode="qlora", gradient_checkpointing=True, optimizer="paged-adamw-8bit"))
    out = suggest(base.model, base.job, budget(combined.peak_allocated_bytes))
    assert [s.flags for s in out] == [("--gradient-checkpointing", "--optimizer", "paged-adamw-8bit",
                                       "--mode", "qlora")]
