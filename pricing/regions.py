"""Searching several regions at once (``--region any``): candidates from each, one ranking.

Pure: takes the catalog and a region list and builds candidates in each (each names its
region). ``cheapest_fit`` over the result names the region chosen; because the us-east-1
candidates are among them, the answer is never dearer than the us-east-1 choice.
"""
from __future__ import annotations

from . import choose

ANY = "any"


def resolve_regions(catalog, region: str, platform: str = "any") -> tuple[str, ...]:
    """``any`` -> every region with a known price on the platform(s); else the one region, checked."""
    if region != ANY:
        catalog.check_region(region)
        return (region,)
    return catalog.priced_regions(None if platform == "any" else platform)


def candidates_in_regions(est, catalog, regions, **kwargs) -> tuple[choose.Candidate, ...]:
    return choose.build_candidates(est, catalog, regions=tuple(regions), **kwargs)
