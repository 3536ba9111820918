"""``--gpu SPEC``: does the job fit the GPU(s) you own, with which strategy, and how far can batch
and sequence go. SPEC is parsed by planner/gpuspec.py against pricing/data/local_gpus.csv; the
verdict is pricing/fit.py's ``fit_machine`` (the one fit rule, also used by ``--execute``)."""
from __future__ import annotations

from typing import Callable

from planner.errors import PlannerError
from planner.gpuspec import GpuSpec, cards_from_rows, parse_gpu_spec

from . import choose, timecost
from .costs import NOTHING_FITS_EXIT, Money, PlanCosts
from .fit import GIB, Fit, fit_machine, needs_text, surely_short

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


def fit_spec(est, gpu: GpuSpec) -> Fit:
    """The one fit rule on the user's own ``gpu.count`` cards (one machine, no EFA)."""
    return fit_machine(est, gpu_memory_bytes=gpu.memory_bytes, gpu_count=gpu.count, efa=None)


def largest_shapes(est, gpu: GpuSpec) -> dict[str, int | str | None]:
    """Largest --batch-size at this --seq-len, and largest --seq-len at this --batch-size, on these GPUs."""
    from planner.estimate import estimate  # pure and fast; re-estimates the same model

    def fits_with(**change) -> bool:
        try:
            e = estimate(est.model, est.job.with_(**change))
        except PlannerError:
            return False
        return not surely_short(e, gpu.memory_bytes, gpu.count) and fit_spec(e, gpu).fits

    ctx = est.model.max_position_embeddings
    seq_cap = min(MAX_SEQ_SEARCHED, ctx or MAX_SEQ_SEARCHED)
    cap_label = ("the model's context (max_position_embeddings)" if ctx and ctx <= MAX_SEQ_SEARCHED
                 else "the search limit")
    return {"largest_batch_size": _largest(lambda b: fits_with(batch_size=b), 1, MAX_BATCH_SEARCHED),
            "largest_seq_len": _largest(lambda s: fits_with(seq_len=s), 1, seq_cap),
            "seq_len_searched_up_to": seq_cap, "seq_len_cap": cap_label,
            "batch_size_searched_up_to": MAX_BATCH_SEARCHED}


def resolve(catalog, spec: str) -> GpuSpec:
    return parse_gpu_spec(spec, cards_from_rows(catalog.local_gpus))


def card_interconnect(name: str | None) -> str:
    """The link a card's name states (``H100 PCIe``, ``H100 NVL``); empty lets planner.hardware decide from
    the card's form (an SXM card in a multi-GPU box is on NVSwitch: docs/decisions.md, issue 22)."""
    text = (name or "").lower()
    if "pcie" in text:
        return "PCIe"
    if "nvl" in text.split():
        return "NVLink"
    return ""


def gpu_label(gpu: GpuSpec) -> str:
    what = gpu.name or f"{gpu.memory_bytes / GIB:.2f} GiB GPU"
    return what if gpu.count == 1 else f"{gpu.count}x {what}"


def suggestions_for_gpu(est, gpu: GpuSpec, *, more_gpus: bool = True) -> tuple:
    """planner/suggest.py with this module's fit rule on the user's cards (more of them for "--gpu Nx"
    unless ``more_gpus`` is False: a machine's own GPUs are what they are)."""
    from dataclasses import replace

    from planner.suggest import Verdict, suggest

    def check(e, n: int) -> Verdict:
        if surely_short(e, gpu.memory_bytes, n):
            return Verdict(False, e.peak_allocated_bytes + e.out_of_pool_bytes, None)  # a lower bound
        f = fit_spec(e, replace(gpu, count=n))
        return Verdict(f.fits, f.per_gpu_bytes, f.strategy)
    name = gpu.name or f"{gpu.memory_bytes // 1024**2}MiB"
    return suggest(est.model, est.job, check, gpu_count=gpu.count, gpu_name=name if more_gpus else None)


def local_costs(est, catalog, gpu_spec: str, *, tokens: int | None = None, tokens_source: str | None = None,
                epochs: float = 1.0, money: Money | None = None, notes: tuple[str, ...] = ()) -> PlanCosts:
    """Fit the job on the user's GPU(s) (no price: they are yours); job hours when throughput is known."""
    gpu = resolve(catalog, gpu_spec)
    row = next((g for g in catalog.local_gpus if g.name == gpu.name), None)
    f = fit_spec(est, gpu)
    spec = catalog.gpu(row.spec) if row is not None and row.spec else None
    t = None
    if f.strategy is not None:
        t = timecost.job_time(est, tokens=tokens, epochs=epochs, gpus=f.gpus_used, machines=1, spec=spec,
                              platform="local", strategy=f.strategy, gpus_per_machine=gpu.count,
                              interconnect=card_interconnect(gpu.name))
    hours = None if t is None else t.job_hours
    label = gpu_label(gpu)
    memory_gib = gpu.memory_bytes / GIB
    cand = choose.Candidate(instance_type=label, platform="local", region="local", usage="owned",
                            gpu_model=gpu.name or label, gpus_per_machine=gpu.count, gpu_memory_gib=round(memory_gib, 2),
                            fits=f.fits, reason=f.reason, strategy=f.strategy, machines=1, gpu_count=f.gpus_used,
                            per_gpu_bytes=f.per_gpu_bytes, usable_bytes_per_gpu=f.usable_bytes_per_gpu,
                            job_hours=hours, price_source=gpu.source, price_as_of=row.as_of if row else None,
                            tokens_per_second=None if t is None else t.tokens_per_second,
                            time_basis=None if t is None else t.utilization_basis,
                            interconnect=None if t is None else t.interconnect)
    shapes = largest_shapes(est, gpu)
    notes = list(notes)
    if est.job.is_training and tokens is not None and hours is None:
        notes.append(f"no throughput figure for {label} in the catalog: job hours unknown")
    elif hours is not None:
        notes.append(timecost.time_note(tokens_source))
    how = f" ({f.strategy})" if gpu.count > 1 and f.strategy else ""
    verdict = f"{label}{how}: {needs_text(f.per_gpu_bytes, f.usable_bytes_per_gpu)}"
    if not f.fits and shapes["largest_batch_size"] is None and shapes["largest_seq_len"] is None:
        verdict += "; no batch size or sequence length makes it fit"
    suggestions = () if f.fits else suggestions_for_gpu(est, gpu)
    return PlanCosts(recommendation=cand, candidates=(cand,), objective="fit", platform="local",
                     region="local", spot=False, tokens=tokens, tokens_source=tokens_source, epochs=epochs,
                     money=money, closest=None if f.fits else cand, verdict=verdict, notes=tuple(notes),
                     local={"gpu": label, "count": gpu.count, "memory_bytes": gpu.memory_bytes,
                            "memory_mib": gpu.memory_bytes // 1024**2, "source": gpu.source,
                            "seq_len": est.job.seq_len, "batch_size": est.job.batch_size, **shapes},
                     suggestions=suggestions, exit_code=0 if f.fits else NOTHING_FITS_EXIT)
