"""Current on-demand prices from the AWS public price list bulk files: no AWS account needed (issue 18).

AWS publishes every price as static files (https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/
using-ppslong.html): ``/offers/v1.0/aws/index.json`` names each offer's ``currentRegionIndexUrl``; that
region index names each region's ``currentVersionUrl`` (a JSON file; the same path ending in ``.csv`` is
the CSV form). SkyPilot's catalog fetcher (sky/catalog/data_fetchers/fetch_aws.py) reads the EC2 region
CSV the same way, skipping its 5 metadata lines and keeping TermType=OnDemand, Linux, Shared tenancy,
no pre-installed software, CapacityStatus=Used, hourly units. The EC2 CSV is hundreds of MB, so it is
streamed line by line; the SageMaker region file is small and read as JSON (its attributes are the
Price List API's: instanceName, platoinstancetype = Training | Hosting).

Plain ``urllib`` does the GETs: they are unauthenticated static files, and boto3 has no client for
them. ``$PLAN_AWS_PRICE_LIST_URL`` replaces the host (the tests serve bulk-format files on 127.0.0.1).
"""
from __future__ import annotations

import csv
import io
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from planner.errors import PlannerError

DEFAULT_BASE = "https://pricing.us-east-1.amazonaws.com"
BASE_ENV = "PLAN_AWS_PRICE_LIST_URL"
OFFERS_INDEX = "/offers/v1.0/aws/index.json"
SOURCE_CODE = "AWSBULK"
CSV_METADATA_LINES = 5  # FormatVersion, Disclaimer, Publication Date, Version, OfferCode
EC2_KEEP = {"TermType": "OnDemand", "Operating System": "Linux", "Tenancy": "Shared",
            "Pre Installed S/W": "NA", "CapacityStatus": "Used"}
HOURLY_UNITS = ("Hrs", "Hours")
SM_COMPONENTS = {"Training": "training", "Hosting": "hosting"}

Progress = Callable[[str, int, "int | None"], None]  # (what, bytes read so far, total bytes or None)


@dataclass(frozen=True)
class BulkPrices:
    """Prices read from one region's files: {(platform, instance, usage): usd} and where they came from."""

    usd: dict[tuple[str, str, str], float]
    sources: dict[str, str]  # platform -> "AWSBULK AmazonEC2 <version> <path>"
    published: dict[str, str]  # platform -> publication date (YYYY-MM-DD)


def base_url() -> str:
    return os.environ.get(BASE_ENV, DEFAULT_BASE).rstrip("/")


def _get(url: str, timeout_s: float):
    try:
        return urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 - an https/http URL we build
    except urllib.error.HTTPError as exc:
        raise PlannerError(f"the AWS price list answered {exc.code} for {url}; the price catalog is unchanged") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PlannerError(f"cannot reach the AWS price list ({reason}) at {url}; "
                           "the price catalog is unchanged") from None


def _json(url: str, timeout_s: float) -> dict:
    with _get(url, timeout_s) as resp:
        try:
            return json.loads(resp.read())
        except (ValueError, TimeoutError, OSError) as exc:
            raise PlannerError(f"unreadable AWS price list file {url} ({exc}); the price catalog is unchanged") from None


def region_file(offer: str, region: str, timeout_s: float, base: str | None = None) -> str:
    """URL of ``offer``'s current JSON file for ``region`` (offers index -> region index -> version)."""
    base = base or base_url()
    offers = _json(base + OFFERS_INDEX, timeout_s).get("offers", {})
    if offer not in offers:
        raise PlannerError(f"the AWS price list has no offer {offer}; the price catalog is unchanged")
    regions = _json(base + offers[offer]["currentRegionIndexUrl"], timeout_s).get("regions", {})
    if region not in regions:
        raise PlannerError(f"the AWS price list has no {offer} file for {region}; the price catalog is unchanged")
    return base + regions[region]["currentVersionUrl"]


def _lines(resp, what: str, progress: Progress | None) -> Iterator[str]:
    total = resp.headers.get("Content-Length")
    total_n = int(total) if total and total.isdigit() else None
    done = 0
    for raw in resp:
        done += len(raw)
        if progress is not None:
            progress(what, done, total_n)
        yield raw.decode("utf-8")


def ec2_on_demand(lines: Iterable[str], types: set[str]) -> tuple[dict[str, float], str]:
    """{instance type: lowest hourly USD} from an EC2 region CSV, and its publication date."""
    it = iter(lines)
    meta = {}
    for _ in range(CSV_METADATA_LINES):
        row = next(csv.reader([next(it, "")]), [])
        if len(row) >= 2:
            meta[row[0]] = row[1]
    found: dict[str, float] = {}
    for r in csv.DictReader(it):
        itype = r.get("Instance Type", "")
        if itype not in types or any(r.get(k) != v for k, v in EC2_KEEP.items()):
            continue
        if r.get("Unit") not in HOURLY_UNITS or r.get("Currency", "USD") != "USD":
            continue
        try:
            usd = float(r.get("PricePerUnit") or "")
        except ValueError:
            continue
        if usd > 0:  # $0 SKUs (capacity blocks, reservations) are not a price
            found[itype] = min(usd, found.get(itype, usd))
    return found, meta.get("Publication Date", "")[:10]


def sagemaker_prices(doc: dict, types: set[str]) -> dict[tuple[str, str], float]:
    """{(ml. instance, training|hosting): lowest hourly USD} from a SageMaker region JSON file."""
    skus = {}
    for sku, product in doc.get("products", {}).items():
        attrs = product.get("attributes", {})
        usage = SM_COMPONENTS.get(attrs.get("platoinstancetype", ""))
        if usage and attrs.get("instanceName") in types:
            skus[sku] = (attrs["instanceName"], usage)
    found: dict[tuple[str, str], float] = {}
    for sku, terms in doc.get("terms", {}).get("OnDemand", {}).items():
        if sku not in skus:
            continue
        for term in terms.values():
            for dim in term.get("priceDimensions", {}).values():
                usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                if usd > 0 and dim.get("unit", "Hrs") in HOURLY_UNITS:
                    key = skus[sku]
                    found[key] = min(usd, found.get(key, usd))
    return found


def fetch_region(region: str, ec2_types: set[str], sm_types: set[str], *, timeout_s: float,
                 progress: Progress | None = None) -> BulkPrices:
    """Every on-demand price of ``region`` for the given instance types, from the bulk files."""
    usd: dict[tuple[str, str, str], float] = {}
    sources, published = {}, {}
    base = base_url()
    if ec2_types:
        url = region_file("AmazonEC2", region, timeout_s, base)[: -len("json")] + "csv"
        with _get(url, timeout_s) as resp:
            try:
                prices, when = ec2_on_demand(_lines(resp, f"AmazonEC2 {region}", progress), ec2_types)
            except (TimeoutError, OSError, UnicodeDecodeError, csv.Error) as exc:
                raise PlannerError(f"reading {url} failed ({exc}); the price catalog is unchanged") from None
        usd.update({("ec2", t, "on-demand"): p for t, p in prices.items()})
        sources["ec2"], published["ec2"] = f"{SOURCE_CODE} {url[len(base):]}", when
    if sm_types:
        url = region_file("AmazonSageMaker", region, timeout_s, base)
        with _get(url, timeout_s) as resp:
            body = io.BytesIO()
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                body.write(chunk)
                if progress is not None:
                    progress(f"AmazonSageMaker {region}", body.tell(), None)
        try:
            doc = json.loads(body.getvalue())
        except ValueError as exc:
            raise PlannerError(f"unreadable AWS price list file {url} ({exc}); the price catalog is unchanged") from None
        usd.update({("sagemaker", t, u): p for (t, u), p in sagemaker_prices(doc, sm_types).items()})
        sources["sagemaker"] = f"{SOURCE_CODE} {url[len(base):]}"
        published["sagemaker"] = str(doc.get("publicationDate", ""))[:10]
    return BulkPrices(usd, sources, published)
