"""An independent oracle for the recommendation: brute force over machines x GPU counts x strategies.

Written apart from ``pricing/``: it imports nothing from it except the entry point under test
(``pricing.plan_costs`` / ``pricing.load_catalog``). It reads the catalog CSV files itself and
does its own per-GPU arithmetic from the estimate's terms (the rules stated in docs/pricing.md,
"Fitting rules" and "Time model"), enumerates every machine, every machine count, every strategy,
and must agree with the recommendation: same cheapest cost, the same set of fitting machines, and
the same job cost for each of them.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from planner import estimate, hardware
from pricing import load_catalog, plan_costs, timecost

DATA = Path(__file__).resolve().parents[1] / "pricing" / "data"
PLANNER_DATA = Path(__file__).resolve().parents[1] / "planner" / "data"
GIB = 1024**3
PER_PARAM = ("weights", "trainable", "gradients", "optimizer")
REGION = "us-east-1"


def rows(name):
    with open((PLANNER_DATA if name == "gpus.csv" else DATA) / name, newline="") as fh:
        return list(csv.DictReader(fh))


def num(text):
    return float(text) if text and text.strip() else None


INSTANCES = {r["instance_type"]: r for r in rows("instances.csv")}
PRICES = {}
for name in ("prices.csv", "prices_regions.csv"):  # later file wins on the same key
    for r in rows(name):
        price = num(r["usd_per_hour"])
        PRICES[(r["platform"], r["instance_type"], r["region"], r["usage"])] = price or None
GPUS = {r["gpu_model"]: r for r in rows("gpus.csv")}
OVER = {(r["platform"], r["item"]): r for r in rows("overheads.csv")}


# ---- memory per GPU, from the estimate's terms ----
def phases(est):
    return [list(t) for _, t in est.phases] if est.phases else [list(est.terms)]


def total(terms, *kinds):
    return sum(t.bytes for t in terms if not kinds or t.kind in kinds)


def slack(est, peak):
    """Issue 10's one rule: total_bytes on one GPU; else reserved scaled by the replay's ratio,
    its tolerance fraction, and the out-of-pool bytes (docs/pricing.md)."""
    if math.ceil(peak) == est.peak_allocated_bytes:
        return est.total_bytes
    reserved = math.ceil(peak * est.reserved_bytes / est.peak_allocated_bytes)
    return reserved + int(reserved * est.tolerance_bytes / est.reserved_bytes) + est.out_of_pool_bytes


def usable(est, gib):
    return round(gib * GIB) - est.cuda_context_bytes  # no margin on top (issue 10)


def need(est, strategy, n):
    ph = phases(est)
    if strategy == "single-gpu":
        return slack(est, est.peak_allocated_bytes)
    if strategy == "data-parallel":
        return slack(est, est.peak_allocated_bytes + max(total(t, "gradients") for t in ph))
    if strategy in ("fsdp", "fsdp-qlora"):
        if strategy == "fsdp-qlora":  # FSDP-QLoRA runs the pure-bf16 recipe (backend/recipes/fsdp_qlora.py)
            est = estimate(est.model, est.job.with_(kbit_prep=False))
            ph = phases(est)
        p = est.params
        weights = max(total(t, "weights") for t in ph)
        layer = (p.total - p.embedding - p.lm_head) / est.model.num_hidden_layers
        gathered = int(min(weights, (p.embedding + p.lm_head + 2 * layer) * min(2.0, weights / p.total)))
        return slack(est, max(total(t) - total(t, *PER_PARAM) * (1 - 1 / n) for t in ph) + gathered)
    kv = est.model.num_key_value_heads
    keep = math.ceil(kv / n) / kv
    return slack(est, max(total(t) - total(t, *PER_PARAM) * (1 - 1 / n) - total(t, "kv_cache") * (1 - keep)
                          for t in ph))


# ---- time and cost ----
def link(inst, machines):
    if machines > 1:
        return "efa"
    if int(inst["gpu_count"]) == 1:
        return "none"
    text = inst["interconnect"].lower()
    return "nvswitch" if "nvswitch" in text else "nvlink" if "nvlink" in text else "pcie"


def over_seconds(est, platform, epochs):
    """(all seconds, billed seconds) of start-up and finishing, from overheads.csv."""
    def get(item):
        r = OVER.get((platform, item)) or OVER.get(("any", item))
        return float(r["value"]), r["billed"] == "yes"
    mb = est.params.total * 2 / 1e6
    parts = [OVER[(platform, i)] for i in ("machine_start", "environment_setup", "image_pull") if (platform, i) in OVER]
    items = [(float(r["value"]), r["billed"] == "yes") for r in parts]
    for item, size in (("download_bandwidth", mb), ("load_bandwidth", mb)):
        bw, billed = get(item)
        items.append((size / bw, billed))
    if est.job.mode == "qlora":
        bw, billed = get("quantize_bandwidth")
        items.append((mb / bw, billed))
    kinds = ("trainable", "optimizer") + (("weights",) if est.job.mode == "full" else ())
    bw, billed = get("checkpoint_bandwidth")
    items.append((math.ceil(epochs) * est.bytes_of(*kinds) / 1e6 / bw, billed))
    if platform == "sagemaker":
        bw, billed = get("upload_bandwidth")
        out = est.bytes_of("weights") if est.job.mode == "full" else est.bytes_of("trainable")
        items.append((out / 1e6 / bw, billed))
    return sum(s for s, _ in items), sum(s for s, b in items if b)


def billed_hours(est, inst, platform, strategy, gpus, machines, tokens, epochs):
    """Billed overheads (re-derived here from overheads.csv) + tokens over the steady-state rate. The rate is
    planner.perf's roofline through timecost.tokens_per_second (checked against hand counts in
    tests/planner/test_perf_core.py); the link is re-derived here from the instance row."""
    spec = hardware.gpu(inst["gpu_model"])
    if spec is None or not spec.bf16_dense_tflops and not spec.fp16_dense_tflops:
        return None
    per_machine = int(inst["gpu_count"])
    rate = timecost.tokens_per_second(est, gpus=gpus, spec=spec, strategy=strategy,
                                      link=link(inst, machines) if gpus > 1 else "none",
                                      interconnect=inst["interconnect"], gpus_per_machine=per_machine)
    if rate is None:
        return None
    _, billed = over_seconds(est, platform, epochs)
    return billed / 3600 + tokens * epochs / rate.tokens_per_second / 3600


def plans(est, inst):
    """Every (strategy, GPUs used, machines) a machine type allows for this job."""
    g = int(inst["gpu_count"])
    if not est.job.is_training:
        yield "single-gpu", 1, 1
        for d in range(2, g + 1):
            if g % d == 0 and est.model.num_attention_heads % d == 0:
                yield "tensor-parallel", d, 1
        return
    yield ("single-gpu" if g == 1 else "data-parallel"), g, 1
    for m in range(1, (16 if inst["efa"] == "yes" else 1) + 1):
        if m * g > 1:
            yield ("fsdp-qlora" if est.job.mode == "qlora" else "fsdp"), m * g, m


def oracle(est, tokens, epochs=1.0, region=None):
    """{(platform, instance): the cost of its first fitting plan} for the job."""
    sm_types = {k[1] for k in PRICES if k[0] == "sagemaker"}
    out = {}
    for platform in ("ec2", "sagemaker"):
        names = INSTANCES if platform == "ec2" else sm_types
        for name in names:
            inst = INSTANCES.get(name.removeprefix("ml."))
            if inst is None or inst["accelerator"] != "nvidia" or not num(inst["gpu_memory_gib"]):
                continue
            usage = "on-demand" if platform == "ec2" else ("training" if est.job.is_training else "hosting")
            price = PRICES.get((platform, name, region or REGION, usage))
            room = usable(est, float(inst["gpu_memory_gib"]))
            costs = []
            for strategy, gpus, machines in plans(est, inst):
                if need(est, strategy, gpus) > room:
                    continue
                if price is None:
                    costs.append(None)
                elif tokens is None:
                    costs.append(price * machines)
                else:
                    h = billed_hours(est, inst, platform, strategy, gpus, machines, tokens, epochs)
                    costs.append(None if h is None else h * price * machines)
                # the fit rule runs the first plan that fits (fewest machines, simplest strategy: pricing/fit.py);
                # with the roofline, a sharded plan can be faster than data-parallel (its optimizer step is
                # sharded), so "cheapest of every fitting plan" is no longer the same thing
                break
            if costs:
                known = [c for c in costs if c is not None]
                out[(platform, name)] = min(known) if known else None
    return out


SPREAD = [
    ("qwen2.5-0.5b", "lora", 10**4), ("llama3.2-1b", "full", 10**8), ("llama3-8b", "qlora", 10**4),
    ("llama3-8b", "qlora", 10**9), ("llama3-8b", "lora", None), ("llama3-8b", "full", 10**9),
    ("mistral-7b", "inference", None), ("llama3-70b", "inference", None), ("llama3-70b", "qlora", 10**8),
    ("llama3-70b", "full", 10**9), ("llama3-70b", "full", 10**7), ("mixtral-8x7b", "lora", 10**8),
    ("qwen2.5-72b", "full", None), ("gemma2-27b", "prompt-tuning", 10**7), ("llama3.1-405b", "qlora", 10**9),
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


@pytest.mark.parametrize("model,mode,tokens", SPREAD)
def test_recommendation_agrees_with_brute_force(catalog, model, mode, tokens):
    est = estimate(model, mode=mode)
    got = plan_costs(est, catalog, platform="any", region=REGION, tokens=tokens)
    want = oracle(est, tokens)
    fitting = {(c.platform, c.instance_type) for c in got.candidates if c.fits}
    assert fitting == set(want), (sorted(fitting ^ set(want)))
    known = {k: v for k, v in want.items() if v is not None}
    best = min(known.values())
    rec = got.recommendation
    cost = rec.job_usd if tokens is not None else rec.usd_per_hour
    assert cost == pytest.approx(best, rel=1e-9), (rec.instance_type, cost, min(known, key=known.get), best)
    assert known[(rec.platform, rec.instance_type)] == pytest.approx(best, rel=1e-9)
    for c in got.candidates:
        if c.fits and want.get((c.platform, c.instance_type)) is not None:
            mine = c.job_usd if tokens is not None else c.usd_per_hour
            assert mine == pytest.approx(want[(c.platform, c.instance_type)], rel=1e-9), c.instance_type


@pytest.mark.parametrize("region", ["eu-west-1", "ap-northeast-1"])
@pytest.mark.parametrize("model,mode,tokens", [("llama3-8b", "qlora", 10**8), ("llama3-70b", "full", 10**9),
                                               ("mistral-7b", "inference", None)])
def test_other_regions_agree_with_brute_force(catalog, model, mode, tokens, region):
    est = estimate(model, mode=mode)
    got = plan_costs(est, catalog, platform="any", region=region, tokens=tokens)
    want = {k: v for k, v in oracle(est, tokens, region=region).items() if v is not None}
    rec = got.recommendation
    cost = rec.job_usd if tokens is not None else rec.usd_per_hour
    assert rec.region == region and cost == pytest.approx(min(want.values()), rel=1e-9)


def test_short_job_pays_start_up_and_stays_small(catalog):
    """The issue's 10,000-token job: minutes of start-up, more than a few cents, at most 4 GPUs."""
    est = estimate("llama3-8b", mode="qlora")
    rec = plan_costs(est, catalog, tokens=10_000).recommendation
    assert rec.overhead_hours * 60 >= 3 and rec.job_usd > 0.03 and rec.gpu_count <= 4
    assert rec.job_usd > 0.001  # so --max-cost 0.001 must refuse it
    assert rec.tokens_per_second > 0 and rec.job_hours > rec.overhead_hours


def test_oracle_spread_has_several_winners():
    """The spread is only a proof if different jobs are won by different families."""
    winners = set()
    for model, mode, tokens in SPREAD:
        want = {k: v for k, v in oracle(estimate(model, mode=mode), tokens).items() if v is not None}
        winners.add(INSTANCES[min(want, key=want.get)[1].removeprefix("ml.")]["family"])
    assert len(winners) >= 4, winners
