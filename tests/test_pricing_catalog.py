"""Every shipped pricing data file loads, every row carries provenance, prices match the reference."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from planner.cli import main
from planner.errors import PlannerError
from pricing.catalog import DATA_DIR, load_catalog, load_prices, parse_as_of

_NEAR = [Path(__file__).resolve().parents[n] / "shared" / "reference" for n in (1, 2, 3)]
REFERENCE = next((d for d in _NEAR if d.is_dir()), _NEAR[1])


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


@pytest.mark.parametrize("name", ["instances.csv", "prices.csv", "../../planner/data/gpus.csv", "local_gpus.csv", "aws_regions.csv",
                                  "prices_regions.csv", "spot_zones.csv"])
def test_every_row_has_source_and_as_of(name):
    rows = list(csv.DictReader(open(DATA_DIR / name)))
    assert rows
    for r in rows:
        assert r["source"].strip() and r["as_of"].strip(), r
        assert r["as_of"] == "unknown" or parse_as_of(r["as_of"]) is not None, r


def test_known_facts(catalog):
    p4d = catalog.price("ec2", "p4d.24xlarge", "us-east-1", "on-demand")
    assert p4d.usd_per_hour == 21.957642 and p4d.as_of == "2026" and "SKY8" in p4d.source
    p5e = catalog.price("ec2", "p5e.48xlarge", "us-east-1", "on-demand")
    assert p5e.usd_per_hour is None and "reservation-only" in p5e.note
    assert catalog.instance("p5e.48xlarge").availability == "reservation-only"
    assert {i.instance_type for i in catalog.instances if i.accelerator == "neuron"} == {
        "inf2.24xlarge", "trn1.2xlarge", "trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge"}
    assert catalog.instance("g6e.xlarge").gpu_memory_gib == 44.70
    assert catalog.instance("ml.p4d.24xlarge").efa and not catalog.instance("g6e.48xlarge").efa
    # SageMaker: list-checked (SMK-A), billed or Price List rows are not estimated; every other row is
    sm = [p for p in catalog.prices if p.platform == "sagemaker"]
    assert {p.estimated for p in sm if p.source.startswith("SMK-A")} == {False}
    assert all(p.estimated for p in sm if p.verified == "no")
    assert all(p.estimated and "estimated" in p.note for p in sm if p.usage == "spot")  # managed spot: derived
    p4d_sm = catalog.price("sagemaker", "ml.p4d.24xlarge", "us-east-1", "training")  # derived from the June 2025 cut
    assert p4d_sm.estimated and p4d_sm.usd_per_hour == 25.25096 and "cut ratio" in p4d_sm.note
    assert catalog.price("sagemaker", "ml.inf2.xlarge", "us-east-1", "hosting").usd_per_hour is None  # sources disagree
    assert catalog.gpu("T4").bf16_dense_tflops is None and catalog.gpu("T4").fp16_dense_tflops == 65
    assert catalog.gpu("B300").bf16_dense_tflops is None
    assert catalog.price("ec2", "p6-b300.48xlarge", "us-east-1", "on-demand") is None
    assert catalog.local_gpu("rtx4090").memory_mib == 24564
    assert catalog.local_gpu("NVIDIA H100 80GB HBM3").memory_gib == pytest.approx(79.647, abs=1e-3)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared reference folder not present")
def test_prices_match_reference_files(catalog):
    ec2 = list(csv.DictReader(open(REFERENCE / "aws_ec2_gpu_instances_us-east-1.csv")))
    for r in ec2:
        region = "us-west-2" if "us-west-2 only" in r["source"] else "us-east-1"  # p6-b300: never priced for us-east-1
        od = catalog.price("ec2", r["instance_type"], region, "on-demand")
        assert od.usd_per_hour == (float(r["od_usd_hr"]) if r["od_usd_hr"] else None), r["instance_type"]
        inst = catalog.instance(r["instance_type"])
        assert inst.gpu_count == int(r["gpu_count"])
        assert inst.gpu_memory_gib == (float(r["gpu_mem_gib_per_gpu"]) if r["gpu_mem_gib_per_gpu"] else None)
    for r in csv.DictReader(open(REFERENCE / "aws_sagemaker_gpu_prices.csv")):
        region = r["region"].split()[0]
        known = [p for p in catalog.prices if p.platform == "sagemaker" and p.instance_type == r["sm_instance_type"]
                 and p.region == region and p.usage != "spot"]  # managed spot is derived, not in the table
        assert known, r
        for p in known:
            try:
                assert p.usd_per_hour == float(r["usd_hr"])
            except ValueError:
                assert p.usd_per_hour is None


def test_malformed_user_catalog_is_one_warning_and_the_bundled_one_is_used(tmp_path, monkeypatch, capsys):
    # issue 13: a corrupt user catalog no longer blocks every command (it was a one-line error)
    (tmp_path / "prices.csv").write_text("platform,instance_type\nec2,p4d.24xlarge\n")
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))
    assert main(["llama3-8b", "--mode", "qlora", "--json"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "user price catalog" in ln]
    assert len(err) == 1 and err[0].startswith("warning: ") and "missing column" in err[0] and "prices.csv" in err[0]


def test_bad_number_names_file_and_line(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text((DATA_DIR / "prices.csv").read_text().splitlines()[0] +
                    "\nec2,p4d.24xlarge,us-east-1,on-demand,cheap,yes,no,me,2026-11-01,\n")
    with pytest.raises(PlannerError, match=r"prices.csv:2: usd_per_hour must be a number"):
        load_prices(path)
