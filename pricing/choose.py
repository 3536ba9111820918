"""Candidates (instance x platform) with fit and price, and the cheapest one that fits.

Pure selection over data passed in: ``build_candidates`` takes the estimate and the catalog and
returns every candidate considered, kept or dropped, each with its reason; ``cheapest_fit``
picks the best fitting one under the objective: job cost (the default when the job's hours are
known), cost per hour of the whole plan (the default otherwise), or job time (``--objective``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from planner.errors import PlannerError

from . import timecost
from .fit import fit_machine

OBJECTIVES = ("job_usd", "usd_per_hour", "job_hours")
# --objective NAME -> the Candidate field that ranks, and how the output names it.
OBJECTIVE_NAMES = {"job-cost": "job_usd", "hourly": "usd_per_hour", "time": "job_hours"}
OBJECTIVE_LABELS = {"job_usd": "job cost", "usd_per_hour": "cost per hour", "job_hours": "job time"}


@dataclass(frozen=True)
class Candidate:
    """One way to run the job: an instance type on a platform in a region, fitted and priced.

    ``usd_per_hour`` is for the whole plan (all machines); ``usd_per_hour_per_machine`` is the
    catalog price. None means unknown.
    """

    instance_type: str
    platform: str
    region: str
    usage: str
    gpu_model: str
    gpus_per_machine: int
    gpu_memory_gib: float | None
    fits: bool
    reason: str
    strategy: str | None = None
    machines: int = 1
    gpu_count: int = 0  # GPUs used by the plan
    per_gpu_bytes: int | None = None
    usable_bytes_per_gpu: int | None = None
    usd_per_hour_per_machine: float | None = None
    usd_per_hour: float | None = None
    usd_per_month: float | None = None
    job_hours: float | None = None
    job_usd: float | None = None
    overhead_hours: float | None = None  # start-up and finishing (timecost.overhead_items)
    tokens_per_second: float | None = None  # steady state, whole plan
    time_basis: str | None = None  # how tokens/s was figured (planner.perf roofline, link, fitted scales)
    interconnect: str | None = None  # none | pcie | nvlink | nvswitch | efa: the link the strategy's traffic crosses
    price_source: str | None = None
    price_as_of: str | None = None
    price_estimated: bool = False
    price_note: str = ""
    price_origin: str | None = None

    def cost(self, objective: str) -> float | None:
        """The figure ``objective`` ranks by (a cost, or the job hours for ``job_hours``)."""
        return getattr(self, objective if objective in OBJECTIVES else "usd_per_hour")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _platforms(platform: str, training: bool = True, spot: bool = False) -> tuple[str, ...]:
    """Platforms searched; with --spot for inference, SageMaker (hosting, no spot) is left out, not priced on-demand."""
    if platform != "any":
        return (platform,)
    return ("ec2", "sagemaker") if training or not spot else ("ec2",)


def _usage(platform: str, training: bool, spot: bool) -> str:
    """The price row a candidate uses; SageMaker spot means managed spot training (estimated price)."""
    if platform == "ec2":
        return "spot" if spot else "on-demand"
    if not training:
        return "hosting"  # hosting has no spot: pricing.spot.check_spot refuses --spot before this
    return "spot" if spot else "training"


def build_candidates(est, catalog, *, platform: str = "any", region: str = "us-east-1", spot: bool = False,
                     max_gpus: int | None = None, tokens: int | None = None, epochs: float = 1.0,
                     regions: tuple[str, ...] | None = None) -> tuple[Candidate, ...]:
    """Every NVIDIA instance of the catalog on each platform asked for, fitted and priced in each region.

    Neuron (Inferentia/Trainium) types are left out: they cannot run a CUDA/bitsandbytes stack.
    SageMaker offers only the ``ml.*`` types its price list names; with --spot its training price
    is the managed-spot estimate (pricing.catalog.managed_spot_price) or unknown. Fit and time do
    not depend on the region, so they are computed once per instance and priced per region.
    """
    training = est.job.is_training
    out: list[Candidate] = []
    for plat in _platforms(platform, training, spot):
        names = ([i.instance_type for i in catalog.instances] if plat == "ec2" else list(catalog.sagemaker_types()))
        usage = _usage(plat, training, spot)
        for name in names:
            inst = catalog.instance(name)
            if inst is None or inst.accelerator != "nvidia" or not inst.gpu_memory_gib:
                continue
            hw = dict(instance_type=name, platform=plat, usage=usage, gpu_model=inst.gpu_model,
                      gpus_per_machine=inst.gpu_count, gpu_memory_gib=inst.gpu_memory_gib)
            if max_gpus is not None and inst.gpu_count > max_gpus:
                for reg in regions or (region,):
                    out.append(Candidate(**hw, region=reg, **_price_fields(catalog.price(plat, name, reg, usage)),
                                         fits=False,
                                         reason=f"has {inst.gpu_count} GPUs per machine; --max-gpus is {max_gpus}"))
                continue
            f = fit_machine(est, gpu_memory_gib=inst.gpu_memory_gib, gpu_count=inst.gpu_count,
                            efa=inst.efa and training, max_gpus=max_gpus)
            t = timecost.job_time(est, tokens=tokens, epochs=epochs, gpus=f.gpus_used, machines=f.machines,
                                  spec=catalog.gpu(inst.gpu_model), spot=spot, platform=plat, strategy=f.strategy,
                                  interconnect=inst.interconnect, gpus_per_machine=inst.gpu_count)
            for reg in regions or (region,):
                price = catalog.price(plat, name, reg, usage)
                reason = f.reason
                hourly = None
                if price is None or price.usd_per_hour is None:
                    why = (price.note if price is not None and price.note else f"no {usage} price known for {reg}")
                    reason += f"; {why}"
                else:
                    hourly = price.usd_per_hour * f.machines
                out.append(Candidate(**hw, region=reg, **_price_fields(price), fits=f.fits, reason=reason,
                                     strategy=f.strategy, machines=f.machines, gpu_count=f.gpus_used,
                                     per_gpu_bytes=f.per_gpu_bytes, usable_bytes_per_gpu=f.usable_bytes_per_gpu,
                                     usd_per_hour=hourly, usd_per_month=timecost.monthly(hourly),
                                     job_hours=None if t is None else t.job_hours,
                                     job_usd=None if t is None or hourly is None else t.billed_hours * hourly,
                                     overhead_hours=None if t is None else t.overhead_hours,
                                     tokens_per_second=None if t is None else t.tokens_per_second,
                                     time_basis=None if t is None else t.utilization_basis,
                                     interconnect=None if t is None else t.interconnect))
    return tuple(out)


def _price_fields(price) -> dict[str, Any]:
    if price is None:
        return {}
    return dict(usd_per_hour_per_machine=price.usd_per_hour, price_source=price.source, price_as_of=price.as_of,
                price_estimated=price.estimated, price_note=price.note, price_origin=price.origin)


def objective_for(est, tokens: int | None, name: str | None = None) -> str:
    """The ranking field: ``--objective`` when given (checked), else job cost when tokens are known, else hourly."""
    known = est.job.is_training and tokens is not None
    if name is None:
        return "job_usd" if known else "usd_per_hour"
    if name not in OBJECTIVE_NAMES:
        raise PlannerError(f"unknown --objective '{name}'; choose job-cost, hourly or time")
    if OBJECTIVE_NAMES[name] != "usd_per_hour" and not known:
        raise PlannerError(f"--objective {name} needs a training job with --tokens or --dataset (job hours are "
                           "unknown without them); use --objective hourly")
    return OBJECTIVE_NAMES[name]


def rank(candidates, objective: str) -> tuple[Candidate, ...]:
    """Fitting and priced first (cheapest first), then fitting but unpriced, then the rest."""
    def key(c: Candidate):
        cost = c.cost(objective)
        return (not c.fits, cost is None, cost if cost is not None else 0.0,
                c.job_usd if c.job_usd is not None else float("inf"),
                c.usd_per_hour if c.usd_per_hour is not None else float("inf"), c.platform, c.instance_type)
    return tuple(sorted(candidates, key=key))


def cheapest_fit(candidates, objective: str) -> Candidate | None:
    """The fitting candidate with the lowest known cost under ``objective`` (None if there is none)."""
    priced = [c for c in candidates if c.fits and c.cost(objective) is not None]
    return rank(priced, objective)[0] if priced else None


def closest(candidates) -> Candidate | None:
    """When nothing fits: the candidate whose need is nearest to what it has."""
    sized = [c for c in candidates if c.per_gpu_bytes and c.usable_bytes_per_gpu and c.usable_bytes_per_gpu > 0]
    return min(sized, key=lambda c: (c.per_gpu_bytes / c.usable_bytes_per_gpu, c.instance_type), default=None)
