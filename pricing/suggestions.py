"""What would make a job fit some machine of the catalog when none does: planner/suggest.py with
the catalog's machines (each fitted by pricing/fit.py, the one fit rule) as the check."""
from __future__ import annotations

from planner.suggest import Suggestion, Verdict, suggest

from .fit import fit_machine


def suggestions_for_catalog(est, catalog, *, platform: str = "any", max_gpus: int | None = None
                            ) -> tuple[Suggestion, ...]:
    """Changes of flags under which at least one machine of ``catalog`` fits (prices aside)."""
    from .choose import _platforms

    names = set()
    for plat in _platforms(platform):
        names |= {i.instance_type for i in catalog.instances} if plat == "ec2" else set(catalog.sagemaker_types())
    shapes = {(i.gpu_memory_gib, i.gpu_count, i.efa) for i in (catalog.instance(n) for n in names)
              if i is not None and i.accelerator == "nvidia" and i.gpu_memory_gib
              and (max_gpus is None or i.gpu_count <= max_gpus)}

    def check(e, _n: int) -> Verdict:
        fits = [f for f in (fit_machine(e, gpu_memory_gib=m, gpu_count=g, efa=efa and e.job.is_training,
                                        max_gpus=max_gpus) for m, g, efa in sorted(shapes)) if f.fits]
        best = min(fits, key=lambda f: f.per_gpu_bytes * f.gpus_used, default=None)
        return Verdict(best is not None, best.per_gpu_bytes if best else 0, best.strategy if best else None)
    return suggest(est.model, est.job, check)
