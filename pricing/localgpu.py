"""``--gpu NAME``: does the job fit on one GPU of your own, and how far can batch and sequence go."""
from __future__ import annotations

from typing import Callable

from planner.errors import PlannerError

from . import choose, timecost
from .costs import NOTHING_FITS_EXIT, Money, PlanCosts
from .fit import GIB, fit_machine, usable_bytes

MAX_BATCH_SEARCHED = 4096
MAX_SEQ_SEARCHED = 1 << 20


def _largest(fits: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Largest n in [lo, hi] with fits(n), assuming memory never falls as n grows; None if none."""
    if not fits(lo):
        return None
    if fits(hi):
        return hi
    while hi - lo > 1:  # fits(lo) and not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def largest_shapes(est, gpu_memory_gib: float) -> dict[str, int | None]:
    """Largest --batch-size at this --seq-len, and largest --seq-len at this --batch-size, on one GPU."""
    from planner.estimate import estimate  # pure and fast; re-estimates the same model

    usable = usable_bytes(gpu_memory_gib, est)

    def fits_with(**change) -> bool:
        try:
            e = estimate(est.model, est.job.with_(**change))
        except PlannerError:
            return False
        return fit_machine(e, gpu_memory_gib=gpu_memory_gib, gpu_count=1).per_gpu_bytes <= usable

    seq_cap = min(MAX_SEQ_SEARCHED, est.model.max_position_embeddings or MAX_SEQ_SEARCHED)
    return {"largest_batch_size": _largest(lambda b: fits_with(batch_size=b), 1, MAX_BATCH_SEARCHED),
            "largest_seq_len": _largest(lambda s: fits_with(seq_len=s), 1, seq_cap),
            "seq_len_searched_up_to": seq_cap, "batch_size_searched_up_to": MAX_BATCH_SEARCHED}


def local_costs(est, catalog, gpu_name: str, *, tokens: int | None = None, tokens_source: str | None = None,
                epochs: float = 1.0, money: Money | None = None, notes: tuple[str, ...] = ()) -> PlanCosts:
    """Fit the job on one local GPU (no price: it is yours); job hours when throughput is known."""
    gpu = catalog.local_gpu(gpu_name)
    f = fit_machine(est, gpu_memory_gib=gpu.memory_gib, gpu_count=1)
    spec = catalog.gpu(gpu.spec)
    hours = timecost.job_hours(est, tokens=tokens, epochs=epochs, gpus=1, machines=1, spec=spec, platform="local")
    cand = choose.Candidate(instance_type=gpu.name, platform="local", region="local", usage="owned",
                            gpu_model=gpu.name, gpus_per_machine=1, gpu_memory_gib=round(gpu.memory_gib, 2),
                            fits=f.fits, reason=f.reason, strategy=f.strategy, machines=1, gpu_count=1,
                            per_gpu_bytes=f.per_gpu_bytes, usable_bytes_per_gpu=f.usable_bytes_per_gpu,
                            job_hours=hours, price_source=gpu.source, price_as_of=gpu.as_of)
    shapes = largest_shapes(est, gpu.memory_gib)
    notes = list(notes)
    if est.job.is_training and tokens is not None and hours is None:
        notes.append(f"no throughput figure for {gpu.name} in the catalog: job hours unknown")
    if f.fits:
        verdict = f"fits on one {gpu.name}: {f.per_gpu_bytes / GIB:.1f} of {f.usable_bytes_per_gpu / GIB:.1f} GiB usable"
    else:
        verdict = (f"does not fit on one {gpu.name}: needs {f.per_gpu_bytes / GIB:.1f} GiB, has "
                   f"{f.usable_bytes_per_gpu / GIB:.1f} usable of {gpu.memory_gib:.1f}")
        if shapes["largest_batch_size"] is None and shapes["largest_seq_len"] is None:
            verdict += "; no batch size or sequence length makes it fit"
    return PlanCosts(recommendation=cand if f.fits else None, candidates=(cand,), objective="fit", platform="local",
                     region="local", spot=False, tokens=tokens, tokens_source=tokens_source, epochs=epochs,
                     money=money, closest=None if f.fits else cand, verdict=verdict, notes=tuple(notes),
                     local={"gpu": gpu.name, "memory_mib": gpu.memory_mib, "source": gpu.source, "seq_len": est.job.seq_len,
                            "batch_size": est.job.batch_size, **shapes},
                     exit_code=0 if f.fits else NOTHING_FITS_EXIT)
