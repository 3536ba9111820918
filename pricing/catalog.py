"""The price and hardware catalog: small CSV files with provenance on every row.

Bundled files live in ``pricing/data`` (schema in ``pricing/data/README.md``). ``plan prices
refresh`` writes a user price file in the cache directory; its rows win over bundled rows with
the same (platform, instance type, region, usage). Nothing here touches the network.
"""
from __future__ import annotations

import csv
import difflib
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from planner.errors import PlannerError
from planner.hardware import Gpu, load_gpus
from planner.safe_io import regular_file

DATA_DIR = Path(__file__).parent / "data"
USER_PRICES = "prices.csv"
REGION_PRICES = "prices_regions.csv"  # every region, built by scripts/build_region_prices.py
SPOT_ZONES = "spot_zones.csv"
STALE_AFTER_DAYS = 90
PLATFORMS = ("ec2", "sagemaker")
USAGES = ("on-demand", "spot", "training", "hosting")
PRICE_COLUMNS = ("platform", "instance_type", "region", "usage", "usd_per_hour", "verified", "estimated",
                 "source", "as_of", "note")


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type's hardware (region-independent). SageMaker ``ml.X`` runs on EC2 ``X``."""

    instance_type: str
    family: str
    gpu_model: str
    gpu_count: int
    gpu_memory_gib: float | None  # per GPU, as AWS reports it
    vcpus: int
    ram_gib: float
    interconnect: str
    efa: bool
    accelerator: str  # nvidia | neuron
    availability: str  # on-demand | reservation-only
    source: str
    as_of: str


@dataclass(frozen=True)
class Price:
    """One hourly price. ``usd_per_hour`` None means unknown (never guessed)."""

    platform: str
    instance_type: str
    region: str
    usage: str
    usd_per_hour: float | None
    verified: str
    estimated: bool
    source: str
    as_of: str
    note: str = ""
    origin: str = "bundled"  # bundled | user | derived (SageMaker managed spot)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.platform, self.instance_type, self.region, self.usage)

    def to_row(self) -> dict[str, str]:
        price = "" if self.usd_per_hour is None else repr(self.usd_per_hour)
        return {"platform": self.platform, "instance_type": self.instance_type, "region": self.region,
                "usage": self.usage, "usd_per_hour": price, "verified": self.verified,
                "estimated": "yes" if self.estimated else "no", "source": self.source, "as_of": self.as_of,
                "note": self.note}


# One GPU table for the whole project (planner/data/gpus.csv, planner.hardware): pricing reads it there.
GpuSpec = Gpu


@dataclass(frozen=True)
class LocalGpu:
    """A GPU someone may own, with its memory as ``nvidia-smi`` reports it (memory.total)."""

    name: str
    aliases: tuple[str, ...]
    memory_mib: int
    spec: str | None  # key into gpus.csv for throughput, when known
    source: str
    as_of: str

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024


@dataclass(frozen=True)
class Region:
    region: str
    name: str
    source: str
    as_of: str


@dataclass(frozen=True)
class SpotZone:
    """One availability zone's spot price for one instance type (SKY8 snapshot).

    ``flag``: ``spot-equals-on-demand`` (a cap: no discount there) or ``artefact-10pct-of-on-demand``
    (exactly 10% of on-demand: left out of the region's spot price); local zones are left out too.
    """

    instance_type: str
    region: str
    zone: str
    local_zone: bool
    on_demand_usd: float | None
    spot_usd: float | None
    flag: str
    source: str
    as_of: str

    @property
    def usable(self) -> bool:
        return self.spot_usd is not None and not self.local_zone and not self.flag.startswith("artefact")


@dataclass(frozen=True)
class Catalog:
    """Everything pricing knows, loaded from data files. Lookups return None for unknown."""

    instances: tuple[InstanceType, ...]
    prices: tuple[Price, ...]
    gpus: tuple[GpuSpec, ...]
    local_gpus: tuple[LocalGpu, ...]
    regions: tuple[Region, ...]
    user_file: str | None = None
    spot_zones: tuple[SpotZone, ...] = ()
    _index: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index["instance"] = {i.instance_type: i for i in self.instances}
        self._index["price"] = {p.key: p for p in self.prices}
        self._index["gpu"] = {g.gpu_model: g for g in self.gpus}
        zones: dict[tuple[str, str], list[SpotZone]] = {}
        for z in self.spot_zones:
            zones.setdefault((z.instance_type, z.region), []).append(z)
        self._index["zones"] = {k: tuple(v) for k, v in zones.items()}

    def zones(self, instance_type: str, region: str) -> tuple[SpotZone, ...]:
        """Every zone's spot price for an EC2 type in a region (empty when unknown)."""
        return self._index["zones"].get((instance_type.removeprefix("ml."), region), ())

    def priced_regions(self, platform: str | None = None) -> tuple[str, ...]:
        """Regions with at least one known price (on ``platform`` when given), in aws_regions.csv order."""
        have = {p.region for p in self.prices if p.usd_per_hour is not None and platform in (None, p.platform)}
        return tuple(r.region for r in self.regions if r.region in have)

    def instance(self, instance_type: str) -> InstanceType | None:
        return self._index["instance"].get(instance_type.removeprefix("ml."))

    def price(self, platform: str, instance_type: str, region: str, usage: str) -> Price | None:
        return self._index["price"].get((platform, instance_type, region, usage))

    def gpu(self, gpu_model: str | None) -> GpuSpec | None:
        return self._index["gpu"].get(gpu_model) if gpu_model else None

    def sagemaker_types(self) -> tuple[str, ...]:
        """SageMaker instance types the catalog knows of (in any region), in file order."""
        return tuple(dict.fromkeys(p.instance_type for p in self.prices if p.platform == "sagemaker"))

    def check_region(self, region: str) -> Region:
        for r in self.regions:
            if r.region == region:
                return r
        hint = difflib.get_close_matches(region, [r.region for r in self.regions], n=1)
        did = f"did you mean {hint[0]}? " if hint else ""
        raise PlannerError(f"unknown AWS region '{region}'; {did}`plan prices show --regions` lists them")

    def local_gpu(self, name: str) -> LocalGpu:
        want = _norm(name)
        for g in self.local_gpus:
            if want in {_norm(n) for n in (g.name, *g.aliases)}:
                return g
        names = [g.name for g in self.local_gpus]
        hint = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        raise PlannerError(f"unknown GPU '{name}'; {did}known: {', '.join(names)}")


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def cache_dir() -> Path:
    """Where refreshed prices go: $PLAN_CACHE_DIR, else the platform's user cache directory."""
    if os.environ.get("PLAN_CACHE_DIR"):
        return Path(os.environ["PLAN_CACHE_DIR"])
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("llm-finetune-planner"))


def parse_as_of(text: str) -> date | None:
    """'2025-03-14', '2026-08' or '2026' -> the earliest day it can mean; 'unknown' -> None."""
    parts = text.strip().split("-")
    try:
        if len(parts) == 1 and len(parts[0]) == 4:
            return date(int(parts[0]), 1, 1)
        if len(parts) == 2:
            return date(int(parts[0]), int(parts[1]), 1)
        if len(parts) == 3:
            return date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return None
    return None


def age_days(as_of: str, today: date) -> int | None:
    day = parse_as_of(as_of)
    return None if day is None else (today - day).days


def _rows(path: Path, required: Iterable[str]) -> list[tuple[int, dict[str, str]]]:
    if Path(path).exists():
        regular_file(path, "price file")  # a FIFO or /dev/zero would hang the read
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise PlannerError(f"{path}: missing column(s) {', '.join(missing)}; see pricing/data/README.md")
            return [(n, row) for n, row in enumerate(reader, start=2)]
    except FileNotFoundError:
        raise PlannerError(f"price catalog file not found: {path}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise PlannerError(f"{path}: not a readable CSV file ({exc})") from None


def _num(path: Path, line: int, row: dict[str, str], col: str, kind: type = float) -> Any:
    text = (row.get(col) or "").strip()
    if text == "":
        return None
    try:
        value = kind(text)
    except ValueError:
        raise PlannerError(f"{path}:{line}: {col} must be a number or empty, got {text!r}") from None
    if value < 0:
        raise PlannerError(f"{path}:{line}: {col} must not be negative, got {text!r}")
    return value


def _need(path: Path, line: int, row: dict[str, str], *cols: str) -> None:
    for col in cols:
        if not (row.get(col) or "").strip():
            raise PlannerError(f"{path}:{line}: {col} is empty (every row needs it)")


def load_prices(path: Path, origin: str = "bundled") -> tuple[Price, ...]:
    out = []
    for line, r in _rows(path, PRICE_COLUMNS):
        _need(path, line, r, "platform", "instance_type", "region", "usage", "source", "as_of")
        if r["platform"] not in PLATFORMS or r["usage"] not in USAGES:
            raise PlannerError(f"{path}:{line}: platform must be one of {PLATFORMS} and usage one of {USAGES}")
        price = _num(path, line, r, "usd_per_hour")
        if price == 0:
            price = None  # $0 SKUs (capacity blocks) are not a price
        out.append(Price(platform=r["platform"], instance_type=r["instance_type"], region=r["region"],
                         usage=r["usage"], usd_per_hour=price, verified=r["verified"] or "no",
                         estimated=r["estimated"] == "yes", source=r["source"], as_of=r["as_of"],
                         note=r.get("note") or "", origin=origin))
    return tuple(out)


def _load_instances(path: Path) -> tuple[InstanceType, ...]:
    cols = ("instance_type", "family", "gpu_model", "gpu_count", "gpu_memory_gib", "vcpus", "ram_gib",
            "interconnect", "efa", "accelerator", "availability", "source", "as_of")
    out = []
    for line, r in _rows(path, cols):
        _need(path, line, r, "instance_type", "gpu_model", "gpu_count", "source", "as_of")
        out.append(InstanceType(instance_type=r["instance_type"], family=r["family"], gpu_model=r["gpu_model"],
                                gpu_count=_num(path, line, r, "gpu_count", int),
                                gpu_memory_gib=_num(path, line, r, "gpu_memory_gib"),
                                vcpus=_num(path, line, r, "vcpus", int), ram_gib=_num(path, line, r, "ram_gib"),
                                interconnect=r["interconnect"], efa=r["efa"] == "yes",
                                accelerator=r["accelerator"], availability=r["availability"],
                                source=r["source"], as_of=r["as_of"]))
    return tuple(out)


def _load_local(path: Path) -> tuple[LocalGpu, ...]:
    out = []
    for line, r in _rows(path, ("name", "aliases", "memory_mib", "spec", "source", "as_of")):
        _need(path, line, r, "name", "memory_mib", "source", "as_of")
        out.append(LocalGpu(name=r["name"], aliases=tuple(a.strip() for a in r["aliases"].split(";") if a.strip()),
                            memory_mib=_num(path, line, r, "memory_mib", int), spec=r["spec"] or None,
                            source=r["source"], as_of=r["as_of"]))
    return tuple(out)


def _load_regions(path: Path) -> tuple[Region, ...]:
    return tuple(Region(r["region"], r["name"], r["source"], r["as_of"])
                 for _, r in _rows(path, ("region", "name", "source", "as_of")))


def _load_zones(path: Path) -> tuple[SpotZone, ...]:
    if not path.is_file():
        return ()
    cols = ("instance_type", "region", "zone", "local_zone", "on_demand_usd", "spot_usd", "flag", "source", "as_of")
    return tuple(SpotZone(r["instance_type"], r["region"], r["zone"], r["local_zone"] == "yes",
                          _num(path, n, r, "on_demand_usd"), _num(path, n, r, "spot_usd"), r["flag"], r["source"],
                          r["as_of"]) for n, r in _rows(path, cols))


def managed_spot_price(prices: dict, zones: dict, instance_type: str, region: str) -> Price | None:
    """SageMaker managed spot training: AWS publishes no separate price, so this estimates one.

    Assumption (docs/pricing.md, "Honest spot"): SageMaker's spot discount equals EC2's for the
    same type in the same region, taken at the dearest usable zone because SageMaker, not the
    user, picks the zone: SageMaker training price x EC2 spot / EC2 on-demand. Unknown when
    any of the three is unknown.
    """
    sm = prices.get(("sagemaker", instance_type, region, "training"))
    ec2 = instance_type.removeprefix("ml.")
    od = prices.get(("ec2", ec2, region, "on-demand"))
    if sm is None or sm.usd_per_hour is None or od is None or od.usd_per_hour is None:
        return None
    usable = [z.spot_usd for z in zones.get((ec2, region), ()) if z.usable]
    spot_row = prices.get(("ec2", ec2, region, "spot"))
    if usable:
        spot, where = max(usable), f"dearest of {len(usable)} zone(s)"
    elif spot_row is not None and spot_row.usd_per_hour is not None:
        spot, where = spot_row.usd_per_hour, "the region's spot row"
    else:
        return None
    discount = min(1.0, spot / od.usd_per_hour)
    note = (f"estimated: SageMaker training {sm.usd_per_hour} x EC2 spot/on-demand {spot}/{od.usd_per_hour} "
            f"({where}); AWS publishes no managed-spot price")
    return Price("sagemaker", instance_type, region, "spot", round(sm.usd_per_hour * discount, 6), "no", True,
                 f"derived: {sm.source} x EC2 spot ({spot_row.source if spot_row else 'zones'})", sm.as_of, note,
                 origin="derived")


class CatalogWarning(UserWarning):
    """A catalog problem that does not stop the command (the CLI shows it as one ``warning:`` line)."""


def load_catalog(data_dir: Path | None = None, user_dir: Path | None | bool = None) -> Catalog:
    """Bundled catalog plus the user's refreshed prices (``user_dir=False`` ignores them).

    Order (later wins on the same key): prices.csv, prices_regions.csv, the user's file; then
    SageMaker managed-spot estimates are derived where no row gives one.
    """
    data_dir = data_dir or DATA_DIR
    prices = {p.key: p for p in load_prices(data_dir / "prices.csv")}
    if (data_dir / REGION_PRICES).is_file():
        prices.update({p.key: p for p in load_prices(data_dir / REGION_PRICES)})
    user_file = None
    if user_dir is not False:
        path = Path(user_dir or cache_dir()) / USER_PRICES
        if path.is_file():
            try:
                user_prices = load_prices(path, origin="user")
            except PlannerError as exc:  # issue 13: a corrupt user file must not block every command
                import warnings
                warnings.warn(CatalogWarning(f"ignoring the user price catalog ({exc}); using the bundled "
                                             f"prices (run `plan prices refresh` or delete {path})"), stacklevel=2)
            else:
                user_file = str(path)
                prices.update({p.key: p for p in user_prices})
    zones = _load_zones(data_dir / SPOT_ZONES)
    by_pair: dict[tuple[str, str], list[SpotZone]] = {}
    for z in zones:
        by_pair.setdefault((z.instance_type, z.region), []).append(z)
    for key in [k for k in prices if k[0] == "sagemaker" and k[3] == "training"]:
        spot_key = ("sagemaker", key[1], key[2], "spot")
        if spot_key not in prices:
            derived = managed_spot_price(prices, by_pair, key[1], key[2])
            if derived is not None:
                prices[spot_key] = derived
    return Catalog(instances=_load_instances(data_dir / "instances.csv"), prices=tuple(prices.values()),
                   gpus=load_gpus(), local_gpus=_load_local(data_dir / "local_gpus.csv"),
                   regions=_load_regions(data_dir / "aws_regions.csv"), user_file=user_file, spot_zones=zones)


def write_user_prices(rows: Iterable[Price], directory: Path) -> Path:
    """Write the user price file atomically (a failed refresh leaves the old file as it was)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / USER_PRICES
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=PRICE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for p in rows:
            writer.writerow(p.to_row())
    os.replace(tmp, path)
    return path
