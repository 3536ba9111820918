"""plan prices refresh, offline: botocore Stubber for the Price List API (moto does not serve it),
moto's server on 127.0.0.1 for EC2 spot price history."""
from __future__ import annotations

import json
import sys
from datetime import date

import boto3
import pytest
from botocore.stub import ANY, Stubber

from planner.cli import main
from planner.errors import PlannerError
from pricing.catalog import load_catalog
from pricing.refresh import on_demand_usd, refresh


def product(attrs: dict, usd: str, sku: str = "ABCDEFGHJKLMNPQR") -> str:
    """One PriceList entry in the real get_products format (a JSON string)."""
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": sku},
        "serviceCode": attrs.get("servicecode", "AmazonEC2"),
        "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
            "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "endRange": "Inf", "description": "hourly", "appliesTo": [], "beginRange": "0",
                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7", "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF", "termAttributes": {}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})


@pytest.fixture
def moto_ec2(monkeypatch):
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    yield f"http://{host}:{port}"
    server.stop()


def stubbed_pricing(p4d_usd: str):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    ec2 = {"ServiceCode": "AmazonEC2", "Filters": ANY, "FormatVersion": "aws_v1", "MaxResults": 100}
    # p4d: two pages; the second holds a $0 capacity-block SKU that must be dropped
    stub.add_response("get_products", {"PriceList": [product({"instanceType": "p4d.24xlarge", "regionCode": "us-east-1"},
                                                             p4d_usd)], "NextToken": "page2", "FormatVersion": "aws_v1"}, ec2)
    stub.add_response("get_products", {"PriceList": [product({"instanceType": "p4d.24xlarge"}, "0.0000000000", "ZZZ")],
                                       "FormatVersion": "aws_v1"}, {**ec2, "NextToken": "page2"})
    stub.add_response("get_products", {"PriceList": [], "FormatVersion": "aws_v1"}, ec2)  # g6e.xlarge: no price
    sm = {"ServiceCode": "AmazonSageMaker", "Filters": ANY, "FormatVersion": "aws_v1", "MaxResults": 100}
    stub.add_response("get_products", {"PriceList": [product({"instanceName": "ml.g5.2xlarge", "servicecode": "AmazonSageMaker",
                                                              "platoinstancetype": "Training"}, "1.5150000000")]}, sm)
    stub.add_response("get_products", {"PriceList": [product({"instanceName": "ml.g5.2xlarge",
                                                              "platoinstancetype": "Hosting"}, "1.5150000000")]}, sm)
    stub.activate()
    return client, stub


def test_on_demand_usd_reads_the_real_format():
    assert on_demand_usd([product({}, "21.9576420000"), product({}, "0.0000000000")]) == 21.957642
    assert on_demand_usd([product({}, "0.0000000000")]) is None


def test_refresh_writes_user_catalog_that_wins(tmp_path, moto_ec2, monkeypatch, capsys):
    pricing, stub = stubbed_pricing("20.0000000000")

    def factory(service, region):
        return pricing if service == "pricing" else boto3.client(service, region_name=region, endpoint_url=moto_ec2)

    result = refresh(["us-east-1"], directory=tmp_path, client_factory=factory, today=date(2026, 11, 27),
                     ec2_types=["p4d.24xlarge", "g6e.xlarge"], sagemaker_types=["ml.g5.2xlarge"])
    stub.assert_no_pending_responses()
    assert result.unknown == ("us-east-1:g6e.xlarge",)
    cat = load_catalog(user_dir=tmp_path)
    p4d = cat.price("ec2", "p4d.24xlarge", "us-east-1", "on-demand")
    assert (p4d.usd_per_hour, p4d.as_of, p4d.origin) == (20.0, "2026-11-27", "user")
    assert cat.price("ec2", "g6e.xlarge", "us-east-1", "on-demand").origin == "bundled"  # kept: no fresh price
    assert cat.price("sagemaker", "ml.g5.2xlarge", "us-east-1", "hosting").usd_per_hour == 1.515
    spot = cat.price("ec2", "p4d.24xlarge", "us-east-1", "spot")  # moto serves 0.00001 for every offered zone
    assert spot.origin == "user" and spot.usd_per_hour == 0.00001 and "describe_spot_price_history" in spot.source
    # the CLI sees the user catalog through PLAN_CACHE_DIR
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))
    assert main(["prices", "show", "--region", "us-east-1", "--platform", "ec2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["user_catalog"] == str(tmp_path / "prices.csv")
    assert any(r["instance_type"] == "p4d.24xlarge" and r["origin"] == "user" and r["age_days"] is not None
               for r in shown["prices"])


def test_no_credentials_fails_clearly_and_keeps_catalog(tmp_path, monkeypatch, capsys):
    old = tmp_path / "prices.csv"
    old.write_text("platform,instance_type,region,usage,usd_per_hour,verified,estimated,source,as_of,note\n"
                   "ec2,p4d.24xlarge,us-east-1,on-demand,19.0,yes,no,test,2026-11-01,\n")
    before = old.read_bytes()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))
    assert main(["prices", "refresh", "--api", "--region", "us-east-1"]) == 2
    # A slow credential lookup on a busy machine may add the "still waiting" progress line first: the
    # contract is one error line, the last one.
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("still waiting")]
    assert len(err) == 1 and err[0].startswith("error: no AWS credentials found") and "unchanged" in err[0]
    assert old.read_bytes() == before


def test_missing_boto3_and_bad_region(monkeypatch, tmp_path):
    with pytest.raises(PlannerError, match="unknown AWS region 'mars-1'"):
        refresh(["mars-1"], directory=tmp_path)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(PlannerError, match=r"needs boto3: pip install 'llm-finetune-planner\[aws\]'"):
        refresh(["us-east-1"], directory=tmp_path)
