"""Throughput calibration data, the fitted time scales, the roofline time model through pricing, links,
sequence-length shape and the start-up overheads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner import estimate, hardware
from pricing import throughput, timecost
from pricing.catalog import load_catalog
from pricing.localgpu import local_costs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


def test_every_measurement_cites_a_url_and_a_known_gpu_and_model(catalog):
    ms = throughput.load_measurements()
    assert len(ms) >= 20 and len({m.source_key for m in ms}) >= 3
    for m in ms:
        assert "https://" in m.source and catalog.gpu(m.gpu_model) is not None, m.id
        assert m.kernels in throughput.KERNELS and m.attention in ("flash", "math"), m.id
        dims, total = throughput.dims_of(m.model_key)
        assert abs(total / m.params - 1) < 0.01, m.id  # the shapes give the row's parameter count


def test_shipped_scales_are_the_fit_of_the_shipped_measurements():
    ms = throughput.load_measurements()
    cal = throughput.fit(ms, {m.id: throughput.speed_of(m) for m in ms})
    shipped = throughput.load_calibration()
    assert cal.scale == shipped.scale and cal.dequant_scale == shipped.dequant_scale


def test_throughput_report_is_up_to_date():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "throughput_report.py"), "--check"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


def test_fit_needs_two_sources_per_scale():
    """A kernel class measured by one source keeps the roofline as is (no constant tuned to one publication)."""
    ms = [m for m in throughput.load_measurements() if m.source_key in ("qwen-finetune", "torchtune")]
    cal = throughput.fit(ms, {m.id: throughput.speed_of(m) for m in ms})
    assert "eager" not in cal.scale and "compiled" not in cal.scale  # one source each
    assert cal.scale_for("eager")[0] == 1.0
    assert cal.dequant_scale != 1.0  # QLoRA rows from two sources


@pytest.mark.parametrize("instance,expected", [("p4d.24xlarge", "nvswitch"), ("p3.8xlarge", "nvlink"),
                                               ("g5.12xlarge", "pcie"), ("g7e.12xlarge", "pcie"),
                                               ("g5.xlarge", "none")])
def test_link_of_instances(catalog, instance, expected):
    inst = catalog.instance(instance)
    spec = catalog.gpu(inst.gpu_model)
    assert hardware.link_for(inst.interconnect, inst.gpu_count, 1, spec) == expected
    assert hardware.link_for(inst.interconnect, inst.gpu_count, 2, spec) == "efa"


def test_more_gpus_are_faster_but_not_linearly_and_pcie_is_slower(catalog):
    est = estimate("llama3-8b", mode="full")
    spec = catalog.gpu("A100-80GB")
    one = timecost.tokens_per_second(est, gpus=1, spec=spec).tokens_per_second
    eight = timecost.tokens_per_second(est, gpus=8, spec=spec, strategy="fsdp", link="nvswitch")
    pcie = timecost.tokens_per_second(est, gpus=8, spec=spec, strategy="fsdp", link="pcie")
    ddp = timecost.tokens_per_second(est, gpus=8, spec=spec, strategy="data-parallel", link="pcie")
    assert pcie.tokens_per_second < eight.tokens_per_second
    assert pcie.scaling_efficiency < eight.scaling_efficiency <= 1
    assert ddp.tokens_per_second < 8 * one  # replicated: every GPU runs the whole optimizer step
    # FSDP shards the optimizer step (1/8 per GPU), so 8 sharded GPUs may beat 8x one unsharded GPU


def test_sxm_box_from_gpu_flag_is_nvswitch(catalog):
    est = estimate("llama3-8b", mode="qlora")
    c = local_costs(est, catalog, "8x H100", tokens=10**9).recommendation
    assert c.tokens_per_second and c.interconnect == "nvswitch" and "nvswitch" in c.time_basis
    pcie = local_costs(est, catalog, "2x H100 PCIe", tokens=10**9).recommendation
    assert pcie.interconnect == "pcie"


def test_h100_pcie_is_its_own_card(catalog):
    """'H100 PCIe' maps to its own gpus.csv row (756.5 dense bf16 TFLOPS, 2,000 GB/s: half NVIDIA's sparse
    1,513), not to the SXM figures, so one PCIe card is slower than one SXM card on the same job."""
    assert (catalog.gpu("H100 PCIe").bf16_dense_tflops, catalog.gpu("H100 PCIe").mem_bandwidth_gb_s) == (756.5, 2000)
    est = estimate("llama3-8b", mode="qlora")
    sxm = local_costs(est, catalog, "1x H100", tokens=10**9).recommendation
    pcie = local_costs(est, catalog, "1x H100 PCIe", tokens=10**9).recommendation
    assert pcie.tokens_per_second < sxm.tokens_per_second


def test_one_gpu_flag_equals_the_pricing_candidate_figure(catalog):
    """--gpu "1x A100 40GB" and a one-GPU A100 40GB plan in pricing are one computation."""
    est = estimate("llama3-8b", mode="qlora")
    local = local_costs(est, catalog, "1x A100 40GB", tokens=10**9).recommendation
    inst = catalog.instance("p4d.24xlarge")
    t = timecost.job_time(est, tokens=10**9, epochs=1, gpus=1, machines=1, spec=catalog.gpu(inst.gpu_model),
                          strategy="single-gpu", interconnect=inst.interconnect, gpus_per_machine=inst.gpu_count)
    assert local.tokens_per_second == t.tokens_per_second


@pytest.mark.parametrize("mode", ["qlora", "lora"])
def test_throughput_against_sequence_length_has_the_published_shape(catalog, mode):
    """Batch 1: tokens/s rises while short sequences leave the GPU underfed, peaks, and falls once attention
    dominates (Qwen README grid; torchtitan 8k -> 256k); a property over 1k..64k."""
    spec = catalog.gpu("H100")
    seqs = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
    tps = [timecost.tokens_per_second(estimate("llama3-8b", mode=mode, seq_len=s, batch_size=1), gpus=1,
                                      spec=spec).tokens_per_second for s in seqs]
    peak = tps.index(max(tps))
    assert 0 < peak < len(seqs) - 1, tps
    assert all(a <= b for a, b in zip(tps[:peak], tps[1:peak + 1])), tps  # rising to the peak
    assert all(a >= b for a, b in zip(tps[peak:], tps[peak + 1:])), tps  # falling after it
    assert tps[-1] < 0.6 * max(tps)
    # at 64k attention is the largest part of the step (torchtitan: 8,532 -> 548 tokens/s per GPU, 8k -> 256k)
    from planner.perf import ModelDims
    from planner.perf.training import method_of_job, training_speed
    est = estimate("llama3-8b", mode=mode, seq_len=65536, batch_size=1)
    kinds = training_speed(ModelDims.from_spec(est.model), method_of_job(est.job), spec, batch=1, seq_len=65536,
                           trainable_params=est.trainable_params).by_kind
    assert kinds["attention"] == max(kinds.values())



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


def test_issue_22_command_has_tokens_per_second_and_an_nvswitch_basis():
    """`plan llama3-8b --mode qlora --gpu "8x H100" --tokens 1B --json` (the issue's acceptance command)."""
    import json
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "planner", "llama3-8b", "--mode", "qlora", "--gpu", "8x H100",
                          "--tokens", "1B", "--json"], env=env, capture_output=True, text=True, check=True).stdout
    rec = json.loads(out)["recommendation"]
    assert rec["tokens_per_second"] > 0 and rec["interconnect"] == "nvswitch" and "NVLink" in rec["time_basis"]
    assert rec["job_hours"] == pytest.approx(1e9 / rec["tokens_per_second"] / 3600, rel=0.05)  # local: no start-up
