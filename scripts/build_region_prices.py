"""Build pricing/data/prices_regions.csv and spot_zones.csv from the shared reference tables.

Run from the repository root when the reference set changes:
    python scripts/build_region_prices.py [--reference ../shared/reference]
Inputs (read-only): aws_ec2_gpu_by_region.csv (one row per instance and region, SKY8),
aws_ec2_gpu_vms_by_zone.csv (the same per zone), aws_sagemaker_gpu_prices_regions.csv.
Rules (docs/pricing.md, "Every region" and "Honest spot"):
* EC2 on-demand: the region's price as SKY8 gives it, every region and type listed.
* EC2 spot: per zone in spot_zones.csv; the region's spot row is the cheapest zone that is
  neither a local zone (e.g. use1-atl2-az1) nor an artefact (spot exactly 10% of on-demand),
  with the range over those zones and the zones where spot equals on-demand (a cap: no discount).
* SageMaker: only what a source prints for that region; never copied from another region.
Rows for us-east-1 on-demand stay in prices.csv (hand-checked, same values) and win there.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "pricing" / "data"
SKY8_AS_OF = "2026"
COLUMNS = ("platform", "instance_type", "region", "usage", "usd_per_hour", "verified", "estimated", "source",
           "as_of", "note")
ZONE_COLUMNS = ("instance_type", "region", "zone", "local_zone", "on_demand_usd", "spot_usd", "flag", "source",
                "as_of")


def is_local_zone(zone: str) -> bool:
    """Local zones carry a city code: use1-atl2-az1 (three parts) vs use1-az1."""
    return zone.count("-") >= 2


def zone_flag(od: float | None, spot: float | None) -> str:
    if spot is None or od is None:
        return ""
    if abs(spot - od) < 1e-6:
        return "spot-equals-on-demand"
    if abs(spot - od / 10) < 1e-6:
        return "artefact-10pct-of-on-demand"
    return ""


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _f(text: str) -> float | None:
    text = (text or "").strip()
    return float(text) if text else None


def build_zones(ref: Path) -> list[dict[str, str]]:
    out = []
    for r in read(ref / "aws_ec2_gpu_vms_by_zone.csv"):
        od, spot = _f(r["Price"]), _f(r["SpotPrice"])
        zone = r["AvailabilityZone"]
        out.append({"instance_type": r["InstanceType"], "region": r["Region"], "zone": zone,
                    "local_zone": "yes" if is_local_zone(zone) else "no",
                    "on_demand_usd": r["Price"], "spot_usd": r["SpotPrice"], "flag": zone_flag(od, spot),
                    "source": "SKY8 " + r["source"] + " via reference/aws_ec2_gpu_vms_by_zone.csv",
                    "as_of": SKY8_AS_OF})
    return out


def spot_row(itype: str, region: str, zones: list[dict[str, str]]) -> dict[str, str] | None:
    priced = [z for z in zones if z["spot_usd"]]
    if not priced:
        return None
    usable = [z for z in priced if z["local_zone"] == "no" and not z["flag"].startswith("artefact")]
    local = [z["zone"] for z in priced if z["local_zone"] == "yes"]
    artefact = [z["zone"] for z in priced if z["flag"].startswith("artefact")]
    capped = [z["zone"] for z in usable if z["flag"] == "spot-equals-on-demand"]
    note = []
    price = ""
    if usable:
        best = min(usable, key=lambda z: float(z["spot_usd"]))
        lo, hi = min(float(z["spot_usd"]) for z in usable), max(float(z["spot_usd"]) for z in usable)
        price = best["spot_usd"]
        note.append(f"cheapest zone {best['zone']}; {len(usable)} zone(s) ranged {lo:.4f}-{hi:.4f}")
    else:
        note.append("no usable zone: every zone priced is a local zone or an artefact")
    if capped:
        note.append(f"spot equals on-demand in {' '.join(capped)}")
    if local:
        note.append(f"local zones left out: {' '.join(local)}")
    if artefact:
        note.append(f"left out as artefacts (spot exactly 10% of on-demand): {' '.join(artefact)}")
    return {"platform": "ec2", "instance_type": itype, "region": region, "usage": "spot", "usd_per_hour": price,
            "verified": "partial", "estimated": "no",
            "source": "SKY8 per-zone spot via reference/aws_ec2_gpu_vms_by_zone.csv", "as_of": SKY8_AS_OF,
            "note": "; ".join(note)}


def sagemaker_rows(ref: Path) -> list[dict[str, str]]:
    """Region-specific SageMaker prices; see the rules in pricing/data/README.md."""
    rows = read(ref / "aws_sagemaker_gpu_prices_regions.csv")
    out: dict[tuple[str, str, str], dict[str, str]] = {}
    src = "via reference/aws_sagemaker_gpu_prices_regions.csv"
    # 1. exact billed rates (eu-west-1, 2023-12) and Price List API training rates (us-west-2)
    for r in rows:
        if r["usage"] not in ("training", "hosting") or not r["price_qualifier"].startswith("exact"):
            continue
        billed = "bill" in r["price_qualifier"]
        out[(r["instance"], r["region"], r["usage"])] = {
            "platform": "sagemaker", "instance_type": r["instance"], "region": r["region"], "usage": r["usage"],
            "usd_per_hour": r["usd_per_hour"], "verified": "partial", "estimated": "no",
            "source": f"{r['source']} {src}", "as_of": "2023-12" if billed else "unknown",
            "note": ("rate printed on an AWS bill (2023-12)" if billed else
                     "Price List API per the source's docstring; date not stated")}
    # 2. approximate eu-west-1 hosting (2026-03): only where no exact rate exists; estimated
    for r in rows:
        key = (r["instance"], r["region"], r["usage"])
        if r["usage"] != "hosting" or not r["price_qualifier"].startswith("approximate"):
            continue
        if key in out:
            out[key]["note"] += f"; an approximate 2026-03 source says ~{r['usd_per_hour']}"
            continue
        out[key] = {"platform": "sagemaker", "instance_type": r["instance"], "region": r["region"],
                    "usage": "hosting", "usd_per_hour": r["usd_per_hour"], "verified": "no", "estimated": "yes",
                    "source": f"{r['source']} {src}", "as_of": "2026-03",
                    "note": "approximate ('~') figure, low confidence"}
    # 3. us-east-2 'unspecified' (component not stated): both usages, estimated; disagreeing versions -> unknown
    seen: dict[str, set[str]] = defaultdict(set)
    first: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["usage"] == "unspecified":
            seen[r["instance"]].add(r["usd_per_hour"])
            first.setdefault(r["instance"], r)
    for inst, prices in seen.items():
        r = first[inst]
        agree = len(prices) == 1
        for usage in ("training", "hosting"):
            key = (inst, r["region"], usage)
            if key in out:
                continue
            out[key] = {"platform": "sagemaker", "instance_type": inst, "region": r["region"], "usage": usage,
                        "usd_per_hour": r["usd_per_hour"] if agree else "", "verified": "no", "estimated": "yes",
                        "source": f"{r['source'].split('@')[0]} {src}", "as_of": "unknown",
                        "note": ("component (training or hosting) not stated by the source; low confidence" if agree
                                 else f"versions of the source disagree ({' or '.join(sorted(prices))}): unknown")}
    return list(out.values())


def sagemaker_after_cut(ref: Path) -> list[dict[str, str]]:
    """ml.p4d / ml.p5 in us-east-1 after the June 2025 cut: estimated, basis in the note.

    The pre-cut us-east-1 SageMaker price times the same family's EC2 us-east-1 cut ratio (both
    in aws_p4_p5_price_cut_2025.csv); the result equals the post-cut us-west-2 SageMaker price.
    """
    rows = read(ref / "aws_p4_p5_price_cut_2025.csv")
    ec2 = {r["instance_type"]: r for r in rows if r["region"] == "us-east-1" and "SageMaker" not in r["instance_type"]}
    out = []
    for r in rows:
        if "(SageMaker)" not in r["instance_type"] or r["region"] != "us-east-1":
            continue
        inst = r["instance_type"].split()[0]
        e = ec2.get(inst.removeprefix("ml."))
        if e is None:
            continue
        ratio = float(e["after_usd_hr"]) / float(e["before_usd_hr"])
        price = round(float(r["before_usd_hr"]) * ratio, 6)
        note = (f"estimated: pre-cut us-east-1 price {r['before_usd_hr']} ({r['before_source']}) x the EC2 "
                f"{e['instance_type']} us-east-1 cut ratio {e['after_usd_hr']}/{e['before_usd_hr']}; "
                f"the post-cut us-west-2 SageMaker price is {r['after_usd_hr']}")
        for usage in ("training", "hosting"):
            out.append({"platform": "sagemaker", "instance_type": inst, "region": "us-east-1", "usage": usage,
                        "usd_per_hour": repr(price), "verified": "no", "estimated": "yes",
                        "source": "derived from reference/aws_p4_p5_price_cut_2025.csv", "as_of": "2025-06",
                        "note": note})
    return out


def build(ref: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    zones = build_zones(ref)
    by_pair: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for z in zones:
        by_pair[(z["instance_type"], z["region"])].append(z)
    bundled = {(r["platform"], r["instance_type"], r["region"], r["usage"])
               for r in read(DATA / "prices.csv")}
    prices = []
    for r in read(ref / "aws_ec2_gpu_by_region.csv"):
        itype, region = r["InstanceType"], r["Region"]
        if ("ec2", itype, region, "on-demand") not in bundled:
            note = "" if r["OnDemandPrice"] else "no on-demand price in the source (reservation-only or not sold)"
            prices.append({"platform": "ec2", "instance_type": itype, "region": region, "usage": "on-demand",
                           "usd_per_hour": r["OnDemandPrice"], "verified": "partial", "estimated": "no",
                           "source": "SKY8 " + r["source"] + " via reference/aws_ec2_gpu_by_region.csv",
                           "as_of": SKY8_AS_OF, "note": note})
        spot = spot_row(itype, region, by_pair.get((itype, region), []))
        if spot is not None:
            prices.append(spot)
    prices.extend(sagemaker_rows(ref))
    prices.extend(sagemaker_after_cut(ref))
    return prices, zones


def write(path: Path, columns, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    near = [d / "shared" / "reference" for d in (ROOT.parent, ROOT.parent.parent)]
    ap.add_argument("--reference", type=Path, default=next((d for d in near if d.is_dir()), near[0]))
    args = ap.parse_args()
    prices, zones = build(args.reference)
    write(DATA / "prices_regions.csv", COLUMNS, prices)
    write(DATA / "spot_zones.csv", ZONE_COLUMNS, zones)
    print(f"{len(prices)} price rows, {len(zones)} zone rows")


if __name__ == "__main__":
    main()
