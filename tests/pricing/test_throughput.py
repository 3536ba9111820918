"""Throughput calibration data, the fitted cells, scaling by interconnect and the start-up overheads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner import estimate
from pricing import throughput, timecost
from pricing.catalog import load_catalog
from pricing.localgpu import local_costs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


def test_every_measurement_cites_a_url_and_a_known_gpu(catalog):
    ms = throughput.load_measurements()
    assert len(ms) >= 10
    for m in ms:
        assert "https://" in m.source and catalog.gpu(m.gpu_model) is not None, m.id


def test_shipped_cells_are_the_fit_of_the_shipped_measurements(catalog):
    fitted = throughput.fit_cells(throughput.load_measurements(), catalog.gpu, timecost.flops_per_token_factor)
    assert fitted == throughput.load_cells()


def test_throughput_report_is_up_to_date():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "throughput_report.py"), "--check"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_measured_utilization_is_the_inverse_of_the_rate(catalog):
    m = next(m for m in throughput.load_measurements() if m.id == "tt-8b-lora-4090")
    u = throughput.measured_utilization(m, catalog.gpu("RTX 4090"), 6)
    assert u == pytest.approx(3083 * 6 * 8030261248 / (165.2e12))


@pytest.mark.parametrize("instance,expected", [("p4d.24xlarge", "nvswitch"), ("p3.8xlarge", "nvlink"),
                                               ("g5.12xlarge", "pcie"), ("g7e.12xlarge", "pcie"),
                                               ("g5.xlarge", "none")])
def test_interconnect_class(catalog, instance, expected):
    inst = catalog.instance(instance)
    assert throughput.interconnect_class(inst.interconnect, inst.gpu_count, 1) == expected
    assert throughput.interconnect_class(inst.interconnect, inst.gpu_count, 2) == "efa"


def test_more_gpus_are_faster_but_not_linearly(catalog):
    est = estimate("llama3-8b", mode="full")
    spec = catalog.gpu("A100-80GB")
    one = timecost.tokens_per_second(est, gpus=1, spec=spec)[0]
    eight = timecost.tokens_per_second(est, gpus=8, spec=spec, strategy="fsdp", link="nvswitch")[0]
    pcie = timecost.tokens_per_second(est, gpus=8, spec=spec, strategy="fsdp", link="pcie")[0]
    assert pcie < eight < 8 * one and eight == pytest.approx(8 * one * 0.92)


def test_consumer_cards_get_job_hours(catalog):
    est = estimate("llama3-8b", mode="qlora")
    for gpu in ("RTX 3090", "RTX 4090", "RTX 5090", "RTX A6000"):
        c = local_costs(est, catalog, gpu, tokens=10**7).recommendation
        assert c.job_hours is not None and c.job_hours > 0, gpu


def test_overheads_by_platform(catalog):
    est = estimate("llama3-8b", mode="qlora")
    ec2 = {n: s for n, s, _ in timecost.overhead_items(est, "ec2", 1)}
    sm = {n: s for n, s, _ in timecost.overhead_items(est, "sagemaker", 1)}
    local = {n: s for n, s, _ in timecost.overhead_items(est, "local", 1)}
    assert ec2["machine_start"] == 240 and "image_pull" in sm and "output_upload" in sm
    assert "machine_start" not in local and "model_download" not in local and "quantize" in local
    assert ec2["model_download"] == pytest.approx(est.params.total * 2 / 1e6 / 200)
    t = timecost.job_time(est, tokens=10_000, epochs=1, gpus=1, machines=1, spec=catalog.gpu("A10G"),
                          platform="sagemaker")
    assert t.billed_hours == pytest.approx(t.job_hours - 180 / 3600)  # provisioning is not billed
    assert t.overhead_hours * 60 > 5
