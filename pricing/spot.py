"""Spot prices told honestly: the zone range behind a region's spot price, and where spot is refused.

EC2 spot is priced per availability zone; the catalog's region row is the cheapest usable zone
(no local zones, no artefacts), and ``spot_summary`` gives the range beside it. SageMaker hosting
(real-time endpoints) has no spot capacity at all, so ``check_spot`` refuses the combination.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from planner.errors import PlannerError


@dataclass(frozen=True)
class SpotSummary:
    """Zone prices for one EC2 type in one region; None where no zone has a usable spot price."""

    instance_type: str
    region: str
    cheapest_usd: float | None
    cheapest_zone: str | None
    dearest_usd: float | None
    zones: int
    capped_zones: tuple[str, ...]  # spot equals on-demand there
    left_out: tuple[str, ...]  # local zones and artefacts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spot_summary(catalog, instance_type: str, region: str) -> SpotSummary:
    zones = catalog.zones(instance_type, region)
    usable = [z for z in zones if z.usable]
    best = min(usable, key=lambda z: z.spot_usd, default=None)
    return SpotSummary(instance_type.removeprefix("ml."), region, best.spot_usd if best else None,
                       best.zone if best else None, max((z.spot_usd for z in usable), default=None), len(usable),
                       tuple(z.zone for z in usable if z.flag == "spot-equals-on-demand"),
                       tuple(z.zone for z in zones if z.spot_usd is not None and not z.usable))


def check_spot(platform: str, training: bool, spot: bool) -> None:
    """Refuse --spot where no spot exists: SageMaker hosting and inference endpoints."""
    if spot and not training and platform == "sagemaker":
        raise PlannerError("--spot: SageMaker hosting (inference endpoints) has no spot capacity; "
                           "drop --spot, or use --platform ec2 for spot instances")
