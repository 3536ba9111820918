"""``plan prices refresh``: current prices from AWS.

By default (``refresh_bulk``) on-demand EC2 and SageMaker prices come from the public bulk price
files (pricing/bulk.py: no account, no credentials), and spot from the EC2 API only where credentials
exist. ``refresh`` (``plan prices refresh --api``) uses the Price List Query API instead:

On-demand EC2: ``pricing.get_products(ServiceCode="AmazonEC2")`` with the filters that make a
result unique (instanceType, regionCode, operatingSystem=Linux, tenancy=Shared,
preInstalledSw=NA, capacitystatus=Used); the hourly price is under
``terms.OnDemand.*.priceDimensions.*.pricePerUnit.USD``; $0 SKUs (capacity blocks) are dropped.
SageMaker: ``ServiceCode="AmazonSageMaker"`` with instanceName and platoinstancetype
(Training | Hosting). Spot: ``ec2.describe_spot_price_history`` (Linux/UNIX, from now), the
cheapest zone's latest price. Results go to the user price file in the cache directory, written
only after every call succeeded, so a failed refresh leaves the old catalog as it was.
boto3 is imported here only (the ``aws`` extra).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

from planner.errors import PlannerError

from .catalog import Catalog, Price, cache_dir, load_catalog, load_prices, write_user_prices, USER_PRICES

PRICE_LIST_REGION = "us-east-1"  # the Price List Query API is served from us-east-1 (and a few others)
EC2_SOURCE = "AWS Price List API (AmazonEC2 get_products)"
SM_SOURCE = "AWS Price List API (AmazonSageMaker get_products)"
SPOT_SOURCE = "EC2 describe_spot_price_history (Linux/UNIX)"


@dataclass(frozen=True)
class RefreshResult:
    path: str
    regions: tuple[str, ...]
    rows: int
    unknown: tuple[str, ...]  # instance types the API gave no price for

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "regions": list(self.regions), "rows": self.rows, "unknown": list(self.unknown)}


def _filters(**terms: str) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in terms.items()]


def on_demand_usd(price_list: Iterable[str]) -> float | None:
    """The lowest non-zero hourly USD price in get_products' PriceList (JSON strings), or None."""
    found = []
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = dim.get("pricePerUnit", {}).get("USD")
                if usd is not None and float(usd) > 0:
                    found.append(float(usd))
    return min(found) if found else None


def _products(client, service: str, filters: list[dict[str, str]]) -> list[str]:
    pages = client.get_paginator("get_products").paginate(ServiceCode=service, Filters=filters, FormatVersion="aws_v1",
                                                          PaginationConfig={"PageSize": 100})
    return [item for page in pages for item in page.get("PriceList", [])]


def spot_prices(ec2, instance_types: list[str], now: datetime) -> dict[str, tuple[float, float]]:
    """(cheapest, dearest) latest spot price across zones per instance type, local zones left out.

    Regular zone names are the region plus a letter (us-east-1a); local zones add a city
    (us-east-1-atl-2a) and are left out, as in the bundled catalog (docs/pricing.md, "Honest spot").
    """
    latest: dict[tuple[str, str], tuple[datetime, float]] = {}
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        InstanceTypes=instance_types, ProductDescriptions=["Linux/UNIX"], StartTime=now)
    for page in pages:
        for h in page.get("SpotPriceHistory", []):
            if not h.get("ProductDescription", "").startswith("Linux/UNIX"):
                continue
            key = (h["InstanceType"], h.get("AvailabilityZone", ""))
            if key[1].count("-") > 2:
                continue  # a local zone
            stamp = h.get("Timestamp") or now
            if key not in latest or stamp > latest[key][0]:
                latest[key] = (stamp, float(h["SpotPrice"]))
    per_type: dict[str, list[float]] = {}
    for (itype, _), (_, usd) in latest.items():
        if usd > 0:
            per_type.setdefault(itype, []).append(usd)
    return {t: (min(v), max(v)) for t, v in per_type.items()}


def fetch_region(region: str, *, pricing, ec2, ec2_types: list[str], sagemaker_types: list[str],
                 today: date, now: datetime) -> tuple[list[Price], list[str]]:
    """Price rows for one region, and the instance types with no price."""
    rows: list[Price] = []
    unknown: list[str] = []
    stamp = today.isoformat()

    def row(platform: str, itype: str, usage: str, usd: float, source: str, note: str = "") -> Price:
        return Price(platform, itype, region, usage, usd, "yes", False, source, stamp, note, origin="user")

    for itype in ec2_types:
        usd = on_demand_usd(_products(pricing, "AmazonEC2", _filters(
            instanceType=itype, regionCode=region, operatingSystem="Linux", tenancy="Shared",
            preInstalledSw="NA", capacitystatus="Used")))
        if usd is None:
            unknown.append(itype)
        else:
            rows.append(row("ec2", itype, "on-demand", usd, EC2_SOURCE))
    for itype in sagemaker_types:
        for usage, component in (("training", "Training"), ("hosting", "Hosting")):
            usd = on_demand_usd(_products(pricing, "AmazonSageMaker", _filters(
                instanceName=itype, regionCode=region, platoinstancetype=component)))
            if usd is None:
                unknown.append(f"{itype} ({usage})")
            else:
                rows.append(row("sagemaker", itype, usage, usd, SM_SOURCE))
    if ec2_types:
        for itype, (lo, hi) in sorted(spot_prices(ec2, ec2_types, now).items()):
            rows.append(row("ec2", itype, "spot", lo, SPOT_SOURCE, f"cheapest zone; zones ranged {lo:g}-{hi:g}"))
    return rows, unknown


# Bounded waits for every AWS call (issue 13): botocore's defaults are 60 s connect + 60 s read with
# retries, so a port that accepts and never answers held `plan prices refresh` for minutes.
CONNECT_TIMEOUT_ENV, READ_TIMEOUT_ENV = "PLAN_AWS_CONNECT_TIMEOUT", "PLAN_AWS_READ_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_READ_TIMEOUT_S, MAX_ATTEMPTS = 10.0, 30.0, 3


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise PlannerError(f"{env} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise PlannerError(f"{env} must be a positive number of seconds, got {raw!r}")
    return value


def aws_timeouts() -> tuple[float, float, int]:
    """(connect s, read s, attempts in all, the first included) for every AWS client; ``$PLAN_AWS_*_TIMEOUT`` override the seconds."""
    return (_seconds(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT_S), _seconds(READ_TIMEOUT_ENV, DEFAULT_READ_TIMEOUT_S),
            MAX_ATTEMPTS)


def bounded_session(region: str | None = None) -> Any:
    """A fresh boto3 session whose clients all use bounded timeouts and retries (botocore ``Config``)."""
    import boto3
    import botocore.session
    from botocore.config import Config

    connect, read, attempts = aws_timeouts()
    core = botocore.session.Session()
    core.set_default_client_config(Config(connect_timeout=connect, read_timeout=read,
                                          retries={"total_max_attempts": attempts, "mode": "standard"}))
    return boto3.session.Session(botocore_session=core, region_name=region or None)


def _boto3():
    try:
        import boto3  # heavy: only for refresh
        import botocore.exceptions as bexc
    except ImportError:
        raise PlannerError("`plan prices refresh` needs boto3: pip install 'llm-finetune-planner[aws]'") from None
    return boto3, bexc


def _gpu_types(catalog: Catalog, ec2_types, sagemaker_types) -> tuple[list[str], list[str]]:
    """The NVIDIA instance types to price, unless the caller named them."""
    if ec2_types is None:
        ec2_types = [i.instance_type for i in catalog.instances if i.accelerator == "nvidia"]
    if sagemaker_types is None:
        sagemaker_types = [t for t in catalog.sagemaker_types()
                           if (catalog.instance(t) is not None and catalog.instance(t).accelerator == "nvidia")]
    return ec2_types, sagemaker_types


def refresh(regions: Iterable[str], *, directory: Path | None = None, catalog: Catalog | None = None,
            client_factory: Callable[[str, str], Any] | None = None, today: date | None = None,
            ec2_types: list[str] | None = None, sagemaker_types: list[str] | None = None) -> RefreshResult:
    """Fetch prices for ``regions`` and merge them into the user price file.

    ``client_factory(service, region)`` builds the boto3 clients (tests pass stubbed ones).
    """
    catalog = catalog or load_catalog(user_dir=False)
    regions = tuple(dict.fromkeys(regions)) or ("us-east-1",)
    for r in regions:
        catalog.check_region(r)
    boto3, bexc = _boto3()
    session = bounded_session()  # fresh: never reuse credentials cached by an earlier session
    make = client_factory or (lambda service, region: session.client(service, region_name=region))
    ec2_types, sagemaker_types = _gpu_types(catalog, ec2_types, sagemaker_types)
    today = today or date.today()
    now = datetime.now(timezone.utc)
    fresh: list[Price] = []
    unknown: list[str] = []
    try:
        pricing = make("pricing", PRICE_LIST_REGION)
        for region in regions:
            rows, missing = fetch_region(region, pricing=pricing, ec2=make("ec2", region), ec2_types=ec2_types,
                                         sagemaker_types=sagemaker_types, today=today, now=now)
            fresh.extend(rows)
            unknown.extend(f"{region}:{m}" for m in missing)
    except bexc.NoCredentialsError:
        raise PlannerError("no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
                           "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and retry; the price catalog is unchanged") from None
    except (bexc.EndpointConnectionError, bexc.ConnectTimeoutError, bexc.ReadTimeoutError) as exc:
        raise PlannerError(f"cannot reach AWS ({exc}); the price catalog is unchanged") from None
    except bexc.ClientError as exc:
        err = exc.response.get("Error", {})
        raise PlannerError(f"AWS refused the price request ({err.get('Code')}: {err.get('Message')}); "
                           "the price catalog is unchanged") from None
    except bexc.BotoCoreError as exc:
        raise PlannerError(f"price refresh failed ({exc}); the price catalog is unchanged") from None
    directory = Path(directory or cache_dir())
    old_path = directory / USER_PRICES
    kept = [p for p in load_prices(old_path, origin="user") if p.region not in regions] if old_path.is_file() else []
    path = write_user_prices(kept + fresh, directory)
    return RefreshResult(str(path), regions, len(fresh), tuple(unknown))


@dataclass(frozen=True)
class BulkRefreshResult(RefreshResult):
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "source": "aws-bulk-price-list", "notes": list(self.notes)}


def _spot_rows(regions: tuple[str, ...], ec2_types: list[str], today: date) -> tuple[list[Price], str | None]:
    """EC2 spot rows where boto3 and credentials exist (spot history has no public file); else a note."""
    try:
        import boto3  # noqa: F401  (the aws extra)
        import botocore.exceptions as bexc
    except ImportError:
        return [], "spot prices not refreshed: they come only from the EC2 API (install the aws extra and credentials)"
    session = bounded_session()
    if session.get_credentials() is None:
        return [], "spot prices not refreshed: EC2 spot price history needs AWS credentials (on-demand needed none)"
    now = datetime.now(timezone.utc)
    rows = []
    try:
        for region in regions:
            for itype, (lo, hi) in sorted(spot_prices(session.client("ec2", region_name=region), ec2_types, now).items()):
                rows.append(Price("ec2", itype, region, "spot", lo, "yes", False, SPOT_SOURCE, today.isoformat(),
                                  f"cheapest zone; zones ranged {lo:g}-{hi:g}", origin="user"))
    except (bexc.BotoCoreError, bexc.ClientError) as exc:
        return [], f"spot prices not refreshed ({exc})"
    return rows, None


def refresh_bulk(regions: Iterable[str], *, directory: Path | None = None, catalog: Catalog | None = None,
                 today: date | None = None, ec2_types: list[str] | None = None,
                 sagemaker_types: list[str] | None = None, progress=None, spot: bool = True) -> BulkRefreshResult:
    """On-demand EC2 and SageMaker prices from the public bulk files (pricing/bulk.py), spot where credentials allow.

    The user price file is rewritten only after every region was read; rows of other regions, and this
    region's spot rows when spot could not be refreshed, are kept.
    """
    from . import bulk

    catalog = catalog or load_catalog(user_dir=False)
    regions = tuple(dict.fromkeys(regions)) or ("us-east-1",)
    for r in regions:
        catalog.check_region(r)
    ec2_types, sagemaker_types = _gpu_types(catalog, ec2_types, sagemaker_types)
    today = today or date.today()
    _, read_s, _ = aws_timeouts()
    fresh: list[Price] = []
    unknown: list[str] = []
    for region in regions:
        got = bulk.fetch_region(region, set(ec2_types), set(sagemaker_types), timeout_s=read_s, progress=progress)
        wanted = [("ec2", t, "on-demand") for t in ec2_types] + [
            ("sagemaker", t, u) for t in sagemaker_types for u in ("training", "hosting")]
        for platform, itype, usage in wanted:
            usd = got.usd.get((platform, itype, usage))
            if usd is None:
                unknown.append(f"{region}:{itype}" + ("" if platform == "ec2" else f" ({usage})"))
                continue
            fresh.append(Price(platform, itype, region, usage, usd, "yes", False, got.sources[platform],
                               got.published.get(platform) or today.isoformat(), "", origin="user"))
    notes = []
    spot_rows, note = _spot_rows(regions, ec2_types, today) if spot and ec2_types else ([], None)
    fresh.extend(spot_rows)
    if note:
        notes.append(note)
    directory = Path(directory or cache_dir())
    old_path = directory / USER_PRICES
    old = load_prices(old_path, origin="user") if old_path.is_file() else ()
    kept = [p for p in old if p.region not in regions or (p.usage == "spot" and not spot_rows)]
    path = write_user_prices(kept + fresh, directory)
    return BulkRefreshResult(str(path), regions, len(fresh), tuple(unknown), tuple(notes))
