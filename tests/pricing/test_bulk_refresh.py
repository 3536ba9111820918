"""plan prices refresh without an AWS account (issue 18): the public bulk price files, served by a real
HTTP server on 127.0.0.1 from small files written here in the bulk format (offers index -> region index
-> region CSV / JSON), with no AWS credentials in the environment."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pricing.bulk import ec2_on_demand

ROOT = Path(__file__).resolve().parents[2]
VERSION = "20261120194640"
EC2_HEADER = ["SKU", "OfferTermCode", "RateCode", "TermType", "PriceDescription", "EffectiveDate", "StartingRange",
              "EndingRange", "Unit", "PricePerUnit", "Currency", "Product Family", "serviceCode", "Location",
              "Instance Type", "Tenancy", "Operating System", "License Model", "CapacityStatus", "Pre Installed S/W",
              "regionCode"]


def ec2_row(itype, usd, **over):
    row = {"SKU": "S" + itype, "OfferTermCode": "JRTCKXETXF", "RateCode": "R", "TermType": "OnDemand",
           "PriceDescription": "hourly", "EffectiveDate": "2026-11-01", "StartingRange": "0", "EndingRange": "Inf",
           "Unit": "Hrs", "PricePerUnit": usd, "Currency": "USD", "Product Family": "Compute Instance",
           "serviceCode": "AmazonEC2", "Location": "US East (N. Virginia)", "Instance Type": itype,
           "Tenancy": "Shared", "Operating System": "Linux", "License Model": "No License required",
           "CapacityStatus": "Used", "Pre Installed S/W": "NA", "regionCode": "us-east-1"}
    row.update(over)
    return [row[h] for h in EC2_HEADER]


def ec2_csv() -> str:
    out = io.StringIO()
    w = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for k, v in (("FormatVersion", "v1.0"), ("Disclaimer", "for informational purposes only"),
                 ("Publication Date", "2026-11-20T19:46:40Z"), ("Version", VERSION), ("OfferCode", "AmazonEC2")):
        w.writerow([k, v])
    w.writerow(EC2_HEADER)
    rows = [
        ec2_row("p4d.24xlarge", "21.9576000000"),                                 # the price
        ec2_row("p4d.24xlarge", "33.0000000000", **{"Operating System": "Windows"}),  # decoys, each one rule off
        ec2_row("p4d.24xlarge", "25.0000000000", Tenancy="Dedicated"),
        ec2_row("p4d.24xlarge", "13.0000000000", TermType="Reserved"),
        ec2_row("p4d.24xlarge", "0.0000000000", CapacityStatus="UnusedCapacityReservation"),
        ec2_row("p4d.24xlarge", "0.0000000000"),                                   # a $0 SKU is no price
        ec2_row("p4d.24xlarge", "24.0000000000", **{"Pre Installed S/W": "SQL Web"}),
        ec2_row("g6.xlarge", "0.8048000000"),
        ec2_row("m5.large", "0.0960000000"),                                       # not a GPU type we price
    ]
    w.writerows(rows)
    return out.getvalue()


def sagemaker_json() -> dict:
    def product(sku, name, component):
        return sku, {"sku": sku, "productFamily": "ML Instance", "attributes": {
            "instanceName": name, "platoinstancetype": component, "regionCode": "us-east-1"}}

    def term(sku, usd):
        return sku, {f"{sku}.JRTCKXETXF": {"priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
            "unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}

    return {"formatVersion": "v1.0", "offerCode": "AmazonSageMaker", "version": VERSION,
            "publicationDate": "2026-11-21T10:00:00Z",
            "products": dict([product("A", "ml.g5.2xlarge", "Training"), product("B", "ml.g5.2xlarge", "Hosting"),
                              product("C", "ml.g5.2xlarge", "Notebook")]),
            "terms": {"OnDemand": dict([term("A", "1.5150000000"), term("B", "1.6950000000"),
                                        term("C", "1.4100000000")])}}


def write_tree(root: Path) -> None:
    aws = root / "offers/v1.0/aws"
    offers = {o: {"offerCode": o, "currentRegionIndexUrl": f"/offers/v1.0/aws/{o}/current/region_index.json"}
              for o in ("AmazonEC2", "AmazonSageMaker")}
    (aws).mkdir(parents=True)
    (aws / "index.json").write_text(json.dumps({"formatVersion": "v1.0", "offers": offers}))
    for offer in offers:
        (aws / offer / "current").mkdir(parents=True)
        (aws / offer / VERSION / "us-east-1").mkdir(parents=True)
        (aws / offer / "current/region_index.json").write_text(json.dumps({"regions": {"us-east-1": {
            "regionCode": "us-east-1", "currentVersionUrl": f"/offers/v1.0/aws/{offer}/{VERSION}/us-east-1/index.json"}}}))
    (aws / "AmazonEC2" / VERSION / "us-east-1/index.csv").write_text(ec2_csv())
    (aws / "AmazonSageMaker" / VERSION / "us-east-1/index.json").write_text(json.dumps(sagemaker_json()))


@pytest.fixture
def price_list(tmp_path):
    files = tmp_path / "www"
    write_tree(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(files)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()


class QuietHandler(SimpleHTTPRequestHandler):
    paths: list[str] = []

    def log_message(self, *args):  # the test reads the requests from .paths, not from stderr
        QuietHandler.paths.append(self.path)


def no_aws_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", PLAN_CACHE_DIR=str(tmp_path / "cache"), NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p), **extra)
    return env


def test_ec2_csv_keeps_only_linux_shared_on_demand_hourly_rows():
    prices, published = ec2_on_demand(ec2_csv().splitlines(keepends=True), {"p4d.24xlarge", "g6.xlarge"})
    assert prices == {"p4d.24xlarge": 21.9576, "g6.xlarge": 0.8048} and published == "2026-11-20"


def test_refresh_reads_the_public_files_with_no_aws_account(price_list, tmp_path):
    url, _ = price_list
    QuietHandler.paths.clear()
    res = subprocess.run([sys.executable, "-m", "planner", "prices", "refresh"], capture_output=True, text=True,
                         env=no_aws_env(tmp_path, PLAN_AWS_PRICE_LIST_URL=url), timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("wrote ") and "Traceback" not in res.stderr
    assert "reading the AWS price list: AmazonEC2 us-east-1" in res.stderr  # the progress line
    assert "spot prices not refreshed: EC2 spot price history needs AWS credentials" in res.stderr
    assert QuietHandler.paths[:3] == ["/offers/v1.0/aws/index.json", "/offers/v1.0/aws/AmazonEC2/current/region_index.json",
                                      f"/offers/v1.0/aws/AmazonEC2/{VERSION}/us-east-1/index.csv"]
    rows = {(r["platform"], r["instance_type"], r["usage"]): r
            for r in csv.DictReader(open(tmp_path / "cache" / "prices.csv"))}
    p4d = rows[("ec2", "p4d.24xlarge", "on-demand")]
    assert float(p4d["usd_per_hour"]) == 21.9576 and p4d["as_of"] == "2026-11-20"
    assert p4d["source"] == f"AWSBULK /offers/v1.0/aws/AmazonEC2/{VERSION}/us-east-1/index.csv"
    assert float(rows[("sagemaker", "ml.g5.2xlarge", "training")]["usd_per_hour"]) == 1.515
    assert float(rows[("sagemaker", "ml.g5.2xlarge", "hosting")]["usd_per_hour"]) == 1.695
    assert ("ec2", "m5.large", "on-demand") not in rows
    # the refreshed price is the one `plan` uses, spelled out in `plan prices show`
    show = subprocess.run([sys.executable, "-m", "planner", "prices", "show", "--region", "us-east-1"],
                          capture_output=True, text=True, env=no_aws_env(tmp_path, COLUMNS="120"), timeout=120)
    assert show.returncode == 0, show.stderr
    assert "AWSBULK = AWS public price list bulk file" in show.stdout


def test_an_unreachable_price_list_fails_in_one_line_and_keeps_the_catalog(tmp_path):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    res = subprocess.run([sys.executable, "-m", "planner", "prices", "refresh"], capture_output=True, text=True,
                         env=no_aws_env(tmp_path, PLAN_AWS_PRICE_LIST_URL=f"http://127.0.0.1:{port}"), timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: cannot reach the AWS price list") and "unchanged" in lines[0]
    assert not (tmp_path / "cache" / "prices.csv").exists()
