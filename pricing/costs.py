"""The pricing answer for one plan: recommendation, every candidate, and what the numbers rest on."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from planner.errors import PlannerError

from . import choose, timecost
from .catalog import STALE_AFTER_DAYS, age_days
from .fit import GIB, needs_text

NOTHING_FITS_EXIT = 1


@dataclass(frozen=True)
class Money:
    """Show costs in another currency at a rate the user gives (never fetched, never assumed)."""

    code: str
    usd_rate: float

    @classmethod
    def parse(cls, code: str | None, usd_rate: float | None) -> "Money | None":
        if code is None and usd_rate is None:
            return None
        if code is None or usd_rate is None:
            raise PlannerError("--currency and --usd-rate go together, e.g. --currency INR --usd-rate 88.5 "
                               "(units of the currency per US dollar; no rate is ever fetched)")
        if not re.fullmatch(r"[A-Za-z]{3}", code):
            raise PlannerError(f"--currency must be a three-letter ISO 4217 code such as INR or EUR, got '{code}'")
        if not math.isfinite(usd_rate) or usd_rate <= 0:
            raise PlannerError(f"--usd-rate must be a positive number, got {usd_rate}")
        if usd_rate < 1e-6:  # issue 19: 1e-320 priced every machine at 0.00 (a sanity bound of this tool)
            raise PlannerError(f"--usd-rate must be at least 1e-06 (a sanity bound of this tool), got {usd_rate:g}")
        if code.upper() == "USD" and usd_rate != 1:  # issue 19: would relabel scaled dollars as dollars
            raise PlannerError(f"--usd-rate {usd_rate:g} with --currency USD would scale dollar prices and still "
                               "call them dollars: drop both flags for US dollars")
        return cls(code.upper(), float(usd_rate))

    def convert(self, usd: float | None) -> float | None:
        return None if usd is None else usd * self.usd_rate


@dataclass(frozen=True)
class PlanCosts:
    """Result of pricing a plan. ``exit_code`` is non-zero when nothing fits (the CLI exits with it)."""

    recommendation: choose.Candidate | None
    candidates: tuple[choose.Candidate, ...]
    objective: str
    platform: str
    region: str
    spot: bool
    tokens: int | None = None
    tokens_source: str | None = None
    epochs: float = 1.0
    money: Money | None = None
    closest: choose.Candidate | None = None
    verdict: str = ""
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    local: dict[str, Any] | None = None  # --gpu: largest batch / sequence that fit
    exit_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    suggestions: tuple[Any, ...] = ()  # planner.suggest.Suggestion: what would make it fit
    over_limits: int = 0  # candidates that fit in memory but are over --max-hours / --max-cost

    def fit_summary(self) -> str:
        """'N candidates considered, F fit', saying why when ones that fit in memory were excluded by a limit.

        One wording everywhere (issue 18): a verdict that names a job over the limits is never left beside
        a bare '0 fit' that seems to contradict it.
        """
        fitting = sum(1 for c in self.candidates if c.fits)
        over = ""
        if self.over_limits:
            flags = " / ".join(f for f, v in (("--max-hours", self.extra.get("max_hours")),
                                               ("--max-cost", self.extra.get("max_cost"))) if v is not None)
            over = f"; {self.over_limits} more fit in memory but are over {flags}"
        return f"{len(self.candidates)} candidates considered, {fitting} fit{over}"

    def alternatives(self, n: int = 5) -> tuple[choose.Candidate, ...]:
        fitting = [c for c in self.candidates if c.fits and c is not self.recommendation]
        return tuple(fitting[:n])

    def _money(self, c: choose.Candidate | None) -> dict[str, Any]:
        if c is None:
            return {}
        d = c.to_dict()
        if self.money is not None:
            d["currency"] = {"code": self.money.code, "usd_rate": self.money.usd_rate,
                             "per_hour": self.money.convert(c.usd_per_hour),
                             "per_month": self.money.convert(c.usd_per_month),
                             "job": self.money.convert(c.job_usd)}
        return d

    def to_dict(self) -> dict[str, Any]:
        more = {"suggestions": [s.to_dict() for s in self.suggestions]} if self.suggestions else {}
        return {
            **more,
            "recommendation": self._money(self.recommendation) or None,
            "candidates": [c.to_dict() for c in self.candidates],
            "pricing": {
                "objective": self.objective, "platform": self.platform, "region": self.region, "spot": self.spot,
                "tokens": self.tokens, "tokens_source": self.tokens_source, "epochs": self.epochs,
                "currency": None if self.money is None else {"code": self.money.code, "usd_rate": self.money.usd_rate},
                "verdict": self.verdict, "closest": self._money(self.closest) or None,
                "local_gpu": self.local, "warnings": list(self.warnings), "notes": list(self.notes),
                **self.extra,
            },
        }


def stale_warning(candidate: choose.Candidate | None, today: date) -> str | None:
    """One line when the recommendation's price is older than STALE_AFTER_DAYS (or undated)."""
    if candidate is None or candidate.price_as_of is None:
        return None
    age = age_days(candidate.price_as_of, today)
    if age is not None and age <= STALE_AFTER_DAYS:
        return None
    if age is None:
        when = "of unknown date"
    elif len(candidate.price_as_of.strip()) <= 7:  # '2026' or '2026-08': only a year or month is known
        when = f"dated only '{candidate.price_as_of}', possibly {age} days old"
    else:
        when = f"{age} days old (as of {candidate.price_as_of})"
    return (f"the {candidate.instance_type} price is {when}; run `plan prices refresh` for current prices")


def nothing_fits_message(near: choose.Candidate | None, est) -> str:
    if near is None:
        return "nothing fits: no candidate has a known GPU memory size"
    need = near.per_gpu_bytes / GIB
    has = near.usable_bytes_per_gpu / GIB
    how = near.strategy or "one GPU"
    where = f"{near.gpu_count} GPUs on {near.machines} machines" if near.machines > 1 else f"{near.gpu_count or 1} GPU(s)"
    hint = "try --mode qlora, a shorter --seq-len or smaller --batch-size" if est.job.mode != "qlora" \
        else "try a shorter --seq-len or smaller --batch-size"
    return (f"nothing fits: closest is {near.platform} {near.instance_type} ({how}, {where}): "
            f"{needs_text(near.per_gpu_bytes, near.usable_bytes_per_gpu)} (short by {need - has:.2f} GiB); {hint}")


def apply_limits(cands, *, max_hours: float | None = None, max_cost: float | None = None):
    """Fitting candidates over --max-hours or --max-cost become non-fitting (reason says why).

    Returns (candidates, the ones the limits excluded). ``max_cost`` is compared with the job
    cost, start-up included (``Candidate.job_usd``: billed overhead + compute hours x price);
    a candidate with an unknown job cost is excluded too, since it cannot be shown to be under it.
    """
    out, limited = [], []
    for c in cands:
        over = []
        if c.fits and max_hours is not None and (c.job_hours is None or c.job_hours > max_hours):
            took = "unknown" if c.job_hours is None else f"{c.job_hours:,.2f} h"
            over.append(f"job time {took} is over --max-hours {max_hours:g}")
        if c.fits and max_cost is not None and (c.job_usd is None or c.job_usd > max_cost):
            cost = "unknown" if c.job_usd is None else f"${c.job_usd:,.2f}"
            over.append(f"job cost {cost} (start-up included) is over --max-cost ${max_cost:g}")
        if over:
            c = replace(c, fits=False, reason=f"{c.reason}; {'; '.join(over)}")
            limited.append(c)
        out.append(c)
    return tuple(out), tuple(limited)


def check_limits(est, tokens: int | None, *, max_hours: float | None, max_cost: float | None) -> None:
    for flag, value in (("--max-hours", max_hours), ("--max-cost", max_cost)):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise PlannerError(f"{flag} must be a positive number, got {value}")
    if max_hours is not None and not (est.job.is_training and tokens is not None):
        raise PlannerError("--max-hours needs a training job with --tokens or --dataset (job hours are unknown "
                           "without them)")


def _over_limits_message(limited, max_hours, max_cost) -> str:
    given = [(f, t) for f, v, t in (("--max-hours", max_hours, f"--max-hours {max_hours}"),
                                     ("--max-cost", max_cost, f"--max-cost ${max_cost}")) if v is not None]
    flags, limits = " and ".join(f for f, _ in given), " and ".join(t for _, t in given)
    priced = [c for c in limited if c.job_usd is not None]
    by_time = max_cost is None  # a deadline alone: show the fastest, else the cheapest
    best = min(priced, key=lambda c: c.job_hours if by_time else c.job_usd, default=None)
    if best is None:
        return f"nothing fits within {flags}: no fitting candidate has a known job cost and time"
    return (f"nothing fits within {flags}: the {'fastest' if by_time else 'cheapest'} job that fits in memory, "
            f"{best.platform} {best.instance_type} ({best.region}), costs ${best.job_usd:,.2f} and takes "
            f"{best.job_hours * 60:,.1f} min including {best.overhead_hours * 60:,.1f} min of start-up: over "
            f"{limits}; raise {flags} or plan a smaller job")


def plan_costs(est, catalog, *, platform: str = "any", region: str = "us-east-1", spot: bool = False,
               max_gpus: int | None = None, tokens: int | None = None, tokens_source: str | None = None,
               epochs: float = 1.0, money: Money | None = None, today: date | None = None,
               notes: tuple[str, ...] = (), objective: str | None = None, max_hours: float | None = None,
               max_cost: float | None = None) -> PlanCosts:
    """Price every candidate for ``est`` (in every region with ``region="any"``) and recommend the best fit.

    ``objective`` is an --objective name (job-cost, hourly, time) or None for the default.
    """
    from .regions import ANY, resolve_regions
    from .spot import check_spot

    today = today or date.today()
    check_spot(platform, est.job.is_training, spot)
    check_limits(est, tokens, max_hours=max_hours, max_cost=max_cost)
    objective_name, objective = objective, choose.objective_for(est, tokens, objective)
    regions = resolve_regions(catalog, region, platform)
    cands = choose.build_candidates(est, catalog, platform=platform, region=region, spot=spot, max_gpus=max_gpus,
                                    tokens=tokens, epochs=epochs, regions=regions)
    timed = est.job.is_training and tokens is not None
    cands, limited = apply_limits(cands, max_hours=max_hours, max_cost=max_cost if timed else None)
    cands = choose.rank(cands, objective)
    best = choose.cheapest_fit(cands, objective)
    warnings: list[str] = []
    notes = list(notes)
    near = None
    exit_code = 0
    suggested: tuple = ()
    what = choose.OBJECTIVE_LABELS[objective]
    if spot and not est.job.is_training and platform == "any":
        notes.append("--spot: SageMaker hosting has no spot capacity, so only EC2 spot instances were searched")
    if max_cost is not None and not timed:
        notes.append("--max-cost: the job cost is unknown without --tokens or --dataset, so no candidate was "
                     "judged by it; a SageMaker launch checks it against the cost at the job's time limit")
    if best is not None:
        where = f" in {best.region}" if region == ANY else ""
        verdict = f"{'fastest' if objective == 'job_hours' else 'cheapest'} fitting plan by {what}: {best.platform} {best.instance_type}{where}"
        if region == ANY:
            notes.append(f"--region any: searched {len(regions)} regions; chose {best.region}")
        if best.price_estimated:
            warnings.append(f"the {best.instance_type} price is estimated ({best.price_source})")
        stale = stale_warning(best, today)
        if stale:
            warnings.append(stale)
    elif limited:
        verdict = _over_limits_message(limited, max_hours, max_cost)
        exit_code = NOTHING_FITS_EXIT
    elif any(c.fits for c in cands):
        fitting = [c.instance_type for c in cands if c.fits][:3]
        verdict = (f"fits on {', '.join(fitting)} but no {'price' if objective == 'usd_per_hour' else what} "
                   f"is known for {region}; run `plan prices refresh --region {region}`")
        exit_code = NOTHING_FITS_EXIT
    else:
        near = choose.closest(cands)
        verdict = nothing_fits_message(near, est)
        exit_code = NOTHING_FITS_EXIT
        from .suggestions import suggestions_for_catalog  # issue 10: what would make it fit
        suggested = suggestions_for_catalog(est, catalog, platform=platform, max_gpus=max_gpus)
    if est.job.is_training and tokens is None:
        notes.append("no --tokens or --dataset: ranked by cost per hour; give them for job hours and job cost")
    if timed:
        notes.append(timecost.time_note(tokens_source))
    if objective != "usd_per_hour" and best is not None:
        unknown = sum(1 for c in cands if c.fits and c.cost(objective) is None)
        if unknown:
            notes.append(f"{unknown} fitting candidate(s) have no {what} (unknown price or GPU throughput)")
    return PlanCosts(recommendation=best, candidates=cands, objective=objective, platform=platform, region=region,
                     spot=spot, tokens=tokens, tokens_source=tokens_source, epochs=epochs, money=money,
                     closest=near, verdict=verdict, warnings=tuple(warnings), notes=tuple(notes),
                     exit_code=exit_code, suggestions=suggested, over_limits=len(limited),
                     extra={"objective_from": "--objective" if objective_name else "default", "max_hours": max_hours, "max_cost": max_cost, "regions_searched": len(regions)})
