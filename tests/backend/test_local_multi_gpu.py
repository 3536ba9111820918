"""Several local GPUs: the strategy chosen for `--execute --backend local` (pure: GPU facts are
plain values here, since this machine has no GPU; the launch itself is tests/distributed')."""
import pytest

from backend.local import local_strategy
from planner import PlannerError, estimate
from pricing import fit

GIB = 1024**3


def gpus(n, gib, name="GPU"):
    return {"name": name, "count": n, "total_memory_bytes": int(gib * GIB)}


def test_replica_fits_each_gpu_gives_data_parallel():
    est = estimate("llama3-8b", mode="qlora", seq_len=1024)
    rec, notes = local_strategy(est, gpus(2, 24), force=False)
    assert rec.strategy == "data-parallel" and rec.gpu_count == 2
    assert rec.per_gpu_bytes == fit.ddp_bytes(est) <= 24 * GIB - est.cuda_context_bytes


def test_too_big_for_one_gpu_shards_with_fsdp():
    est = estimate("llama3-8b", mode="full", seq_len=1024)
    assert fit.ddp_bytes(est) > 80 * GIB
    rec, _ = local_strategy(est, gpus(8, 80), force=False)
    assert rec.strategy == "fsdp" and rec.per_gpu_bytes == fit.fsdp_bytes(est, 8)


def test_qlora_shards_with_fsdp_qlora():
    est = estimate("llama3-70b", mode="qlora", seq_len=1024)
    rec, _ = local_strategy(est, gpus(4, 44.7, "L40S"), force=False)
    assert rec.strategy == "fsdp-qlora"


@pytest.mark.slow  # real launcher processes
def test_nothing_fits_is_refused_unless_forced():
    est = estimate("llama3-70b", mode="full")
    with pytest.raises(PlannerError, match="too big even sharded"):
        local_strategy(est, gpus(2, 24), force=False)
    rec, notes = local_strategy(est, gpus(2, 24), force=True)
    assert "running anyway" in notes[0]
