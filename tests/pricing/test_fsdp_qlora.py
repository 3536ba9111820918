"""The fsdp-qlora strategy is figured on the recipe it runs: pure bf16, no kbit preparation (issue 10)."""
import pytest

from planner import Job, estimate
from planner.errors import PlannerError
from pricing import fit


def test_fsdp_qlora_shards_the_pure_bf16_estimate():
    kbit = estimate("llama3-70b", mode="qlora", seq_len=4096, batch_size=2)
    pure = estimate("llama3-70b", Job(mode="qlora", seq_len=4096, batch_size=2, kbit_prep=False))
    assert fit.sharded_estimate(kbit).job == pure.job
    assert fit.fsdp_bytes(kbit, 2) == fit.fsdp_bytes(pure, 2)
    # bf16 embeddings/head/norms and a 2-byte residual stream instead of fp32
    assert pure.breakdown["weights (embeddings, head, norms in bf16)"] * 2 == \
        kbit.breakdown["weights (embeddings, head, norms in fp32)"]
    assert pure.peak_allocated_bytes < kbit.peak_allocated_bytes
    # single GPU and data-parallel keep the single-GPU recipe
    assert fit.replica_bytes(kbit) == kbit.total_bytes


def test_pure_bf16_adapters_and_states_are_two_bytes():
    pure = estimate("llama3-8b", Job(mode="qlora", kbit_prep=False))
    n = pure.trainable_params
    assert pure.breakdown["trainable parameters"] == 2 * n


@pytest.mark.parametrize("mode", ["lora", "full", "inference"])
def test_kbit_prep_off_is_qlora_only(mode):
    with pytest.raises(PlannerError, match="applies to --mode qlora only"):
        Job(mode=mode, kbit_prep=False)
