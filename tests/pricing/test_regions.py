"""Every region priced from the shared tables; honest spot per zone; SageMaker never copied across regions."""
from __future__ import annotations

import csv
import random

import pytest

from planner.errors import PlannerError
from pricing.catalog import load_catalog
from pricing.spot import check_spot, spot_summary
from tests.test_pricing_catalog import REFERENCE


def read(name):
    with open(REFERENCE / name, newline="") as fh:
        return list(csv.DictReader(fh))


needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared reference folder not present")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


@needs_reference
def test_sampled_on_demand_prices_outside_us_east_1_equal_the_shared_table(catalog):
    rows = [r for r in read("aws_ec2_gpu_by_region.csv") if r["Region"] != "us-east-1"]
    for r in random.Random(11).sample(rows, 60) + [r for r in rows if r["InstanceType"] == "p4d.24xlarge"]:
        p = catalog.price("ec2", r["InstanceType"], r["Region"], "on-demand")
        assert p is not None, (r["InstanceType"], r["Region"])
        assert p.usd_per_hour == (float(r["OnDemandPrice"]) if r["OnDemandPrice"] else None)
        assert "SKY8" in p.source and p.as_of == "2026"


@needs_reference
def test_every_region_of_the_table_is_priced_and_accepted(catalog):
    regions = {r["Region"] for r in read("aws_ec2_gpu_by_region.csv")}
    assert regions <= set(catalog.priced_regions("ec2")) and len(regions) == 23
    for region in regions:
        catalog.check_region(region)


@needs_reference
def test_spot_is_cheapest_usable_zone_with_the_range(catalog):
    zones = [r for r in read("aws_ec2_gpu_vms_by_zone.csv")
             if r["InstanceType"] == "p5.48xlarge" and r["Region"] == "us-east-1" and r["SpotPrice"]]
    usable = [float(z["SpotPrice"]) for z in zones if z["AvailabilityZone"].count("-") == 1
              and float(z["SpotPrice"]) != round(float(z["Price"]) / 10, 6)]
    p = catalog.price("ec2", "p5.48xlarge", "us-east-1", "spot")
    assert p.usd_per_hour == min(usable) == 17.6289
    assert f"ranged {min(usable):.4f}-{max(usable):.4f}" in p.note
    assert "spot equals on-demand in" in p.note and "local zones left out: use1-atl2-az1" in p.note
    s = spot_summary(catalog, "p5.48xlarge", "us-east-1")
    assert (s.cheapest_usd, s.dearest_usd) == (17.6289, 55.04) and "use1-atl2-az1" in s.left_out
    assert s.capped_zones  # zones where spot costs on-demand are shown, not hidden


def test_artefact_zones_are_left_out(catalog):
    flagged = [z for z in catalog.spot_zones if z.flag.startswith("artefact")]
    assert flagged
    for z in flagged[:10]:
        p = catalog.price("ec2", z.instance_type, z.region, "spot")
        assert p is None or p.usd_per_hour is None or p.usd_per_hour != z.spot_usd or any(
            o.usable and o.spot_usd == z.spot_usd for o in catalog.zones(z.instance_type, z.region))


def test_sagemaker_never_guessed_from_another_region(catalog):
    # eu-central-1 has EC2 prices but no SageMaker source: unknown, not us-east-1's price
    assert catalog.price("ec2", "g5.xlarge", "eu-central-1", "on-demand").usd_per_hour is not None
    assert catalog.price("sagemaker", "ml.g5.xlarge", "eu-central-1", "training") is None
    assert "sagemaker" not in {p.platform for p in catalog.prices if p.region == "ap-south-1"}
    # eu-west-1: the billed rate, not the us-east-1 one
    assert catalog.price("sagemaker", "ml.g5.xlarge", "eu-west-1", "training").usd_per_hour == 1.57
    # us-east-2: two versions of the source disagree for ml.g6.24xlarge -> unknown
    assert catalog.price("sagemaker", "ml.g6.24xlarge", "us-east-2", "training").usd_per_hour is None


def test_managed_spot_is_estimated_with_its_basis(catalog):
    sm = catalog.price("sagemaker", "ml.g5.12xlarge", "us-east-1", "spot")
    od = catalog.price("ec2", "g5.12xlarge", "us-east-1", "on-demand").usd_per_hour
    dearest = max(z.spot_usd for z in catalog.zones("g5.12xlarge", "us-east-1") if z.usable)
    assert sm.estimated and sm.usd_per_hour == pytest.approx(7.09 * dearest / od)
    assert "AWS publishes no managed-spot price" in sm.note
    # no EC2 spot known -> no managed spot estimate either
    assert catalog.price("sagemaker", "ml.g5.xlarge", "eu-west-1", "spot") is None or \
        catalog.zones("g5.xlarge", "eu-west-1")


def test_sagemaker_hosting_spot_is_refused():
    with pytest.raises(PlannerError, match="SageMaker hosting .* has no spot"):
        check_spot("sagemaker", training=False, spot=True)
    check_spot("sagemaker", training=True, spot=True)
    check_spot("ec2", training=False, spot=True)


def test_region_any_is_never_dearer_and_names_the_region(catalog):
    from planner import estimate
    from pricing import choose
    from pricing.regions import candidates_in_regions, resolve_regions
    est = estimate("llama3-8b", mode="qlora")
    regions = resolve_regions(catalog, "any")
    assert "us-east-1" in regions and "eu-west-1" in regions and len(regions) >= 23
    for kw in ({"tokens": 10**8}, {"tokens": None}, {"tokens": 10**8, "spot": True, "platform": "ec2"}):
        objective = choose.objective_for(est, kw.get("tokens"))
        anyc = choose.cheapest_fit(candidates_in_regions(est, catalog, regions, **kw), objective)
        one = choose.cheapest_fit(choose.build_candidates(est, catalog, region="us-east-1", **kw), objective)
        assert anyc.cost(objective) <= one.cost(objective) and anyc.region in regions
    with pytest.raises(PlannerError, match="unknown AWS region"):
        resolve_regions(catalog, "mars-1")


def test_refresh_leaves_local_zones_out_of_spot():
    """A real boto3 EC2 client answered by botocore's Stubber (moto serves no local zones)."""
    from datetime import datetime, timezone

    import boto3
    from botocore.stub import ANY, Stubber

    from pricing.refresh import spot_prices

    ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    history = [{"InstanceType": "g5.xlarge", "AvailabilityZone": z, "SpotPrice": p, "ProductDescription": "Linux/UNIX",
                "Timestamp": datetime.now(timezone.utc)}
               for z, p in (("us-east-1a", "0.50"), ("us-east-1b", "0.45"), ("us-east-1-atl-2a", "0.10"))]
    with Stubber(ec2) as stub:
        stub.add_response("describe_spot_price_history", {"SpotPriceHistory": history},
                          {"InstanceTypes": ["g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": ANY})
        assert spot_prices(ec2, ["g5.xlarge"], datetime.now(timezone.utc)) == {"g5.xlarge": (0.45, 0.50)}


@needs_reference
def test_bundled_region_files_are_what_the_build_script_makes():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "scripts" / "build_region_prices.py"
    spec = importlib.util.spec_from_file_location("build_region_prices", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prices, zones = mod.build(REFERENCE)
    data = path.parents[1] / "pricing" / "data"
    with open(data / "prices_regions.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == prices
    with open(data / "spot_zones.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == zones
