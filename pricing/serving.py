"""The serving decision: instance type x GPUs per replica x replicas x region x EC2 / SageMaker, cheapest
meeting the SLO, priced per hour, per month (730 h) and per million output tokens.

For every NVIDIA instance type the GPU table knows, and every tensor-parallel size that fits in it, the
planner core lays out vLLM's memory (``planner.serving.vllm_memory``) and times its steps
(``planner.serving.performance``). A replica is ``tp`` GPUs of one instance; an instance holds
``gpu_count // tp`` replicas. Replicas needed:
- ``--request-rate R``: the largest rate one replica serves within the SLO (binary search; without an
  SLO, ``MAX_LOAD`` of its capacity, a tool policy so that queues stay finite), then ``ceil(R / that)``;
- ``--concurrency N``: the fewest replicas whose share of N users meets the SLO;
- ``--concurrency max``: one replica at the concurrency its KV cache and ``max_num_seqs`` allow.
Each shape is computed once and priced in every region and platform asked for. When nothing meets the
SLO, ``what_would`` re-plans with fp8 weights, int4 (AWQ) weights, an fp8 KV cache and a max-model-len
that only covers the workload, and reports the cheapest plan each finds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from planner import hardware
from planner.errors import PlannerError
from planner.serving.performance import Link, ServingPerformance, StepModel, Workload, performance
from planner.serving.quant import QuantFormat, quant_format
from planner.serving.vllm_memory import GIB, Device, EngineMemory, EngineSettings, engine_memory, vllm_data

HOURS_PER_MONTH = 730
MAX_LOAD = 0.9          # tool policy: without an SLO a replica is planned at <= 90% of its capacity
TP_SIZES = (1, 2, 4, 8)
MAX_REPLICAS = 4096


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    itl_ms: float | None = None

    def met(self, p: ServingPerformance) -> bool:
        if p.saturated or math.isinf(p.ttft_ms):
            return False
        return (self.ttft_ms is None or p.ttft_ms <= self.ttft_ms) and (self.itl_ms is None or p.itl_ms <= self.itl_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"ttft_ms": self.ttft_ms, "itl_ms": self.itl_ms}


@dataclass(frozen=True)
class Shape:
    """One replica shape evaluated: memory, the replicas the workload needs and their performance."""

    gpu_model: str
    gpus_per_replica: int
    link: str
    memory: EngineMemory
    replicas: int
    performance: ServingPerformance | None   # at the load each replica carries
    meets_slo: bool
    reason: str = ""


@dataclass(frozen=True)
class ServingChoice:
    platform: str
    instance_type: str
    region: str
    usage: str
    gpu_model: str
    gpus_per_instance: int
    tensor_parallel_size: int
    replicas: int
    instances: int
    usd_per_hour: float
    usd_per_month: float
    usd_per_million_output_tokens: float | None
    meets_slo: bool
    shape: Shape = field(repr=False, compare=False)
    price_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"platform": self.platform, "instance_type": self.instance_type, "region": self.region,
                "usage": self.usage, "gpu": self.gpu_model, "gpus_per_instance": self.gpus_per_instance,
                "tensor_parallel_size": self.tensor_parallel_size, "replicas": self.replicas,
                "instances": self.instances, "usd_per_hour": round(self.usd_per_hour, 4),
                "usd_per_month": round(self.usd_per_month, 2),
                "usd_per_million_output_tokens": None if self.usd_per_million_output_tokens is None
                else round(self.usd_per_million_output_tokens, 4),
                "meets_slo": self.meets_slo, "price_source": self.price_source}


@dataclass(frozen=True)
class WhatWould:
    change: str
    choice: ServingChoice | None

    def to_dict(self) -> dict[str, Any]:
        return {"change": self.change, "plan": self.choice.to_dict() if self.choice else None}


@dataclass(frozen=True)
class ServingPlan:
    workload: Workload
    slo: Slo
    recommendation: ServingChoice | None
    alternatives: tuple[ServingChoice, ...]
    rejected: tuple[str, ...]
    what_would: tuple[WhatWould, ...] = ()


# ---------------------------------------------------------------- one replica shape


def device_for(gpu: hardware.Gpu, aws_gib: float | None = None) -> Device:
    """The device vLLM sees: nvidia-smi's total less the driver's share (data/vllm.json)."""
    reserved = vllm_data()["driver_reserved_mib"]["value"]
    mib = gpu.memory_mib or (aws_gib * 1024 if aws_gib else None)
    if not mib:
        raise PlannerError(f"no memory size recorded for {gpu.gpu_model}")
    return Device(gpu.gpu_model, int((mib - reserved) * 2**20), gpu.generation)


def link_of(gpu: hardware.Gpu, interconnect: str, tp: int) -> Link:
    name = hardware.link_for(interconnect, tp, 1, gpu)
    bw, _ = hardware.link_bandwidth(name, gpu, interconnect, tp)
    return Link(name, bw, hardware.load_links()[name].latency_us)


def _rate_within(sm: StepModel, w: Workload, slo: Slo) -> tuple[float, ServingPerformance]:
    """The largest request rate one replica serves meeting ``slo`` (0 when none), by bisection."""
    probe = performance(sm, replace(w, request_rate=1e9, concurrency=None, max_concurrency=False))
    cap = probe.capacity_rps
    if cap <= 0:
        return 0.0, probe
    if slo.ttft_ms is None and slo.itl_ms is None:
        r = cap * MAX_LOAD
        return r, performance(sm, replace(w, request_rate=r, concurrency=None, max_concurrency=False))
    lo, hi = 0.0, cap * 0.999
    best = None
    for _ in range(14):
        mid = (lo + hi) / 2
        p = performance(sm, replace(w, request_rate=mid, concurrency=None, max_concurrency=False))
        if slo.met(p):
            lo, best = mid, p
        else:
            hi = mid
    if best is None:  # even a trickle misses the SLO (one request alone is too slow)
        p = performance(sm, replace(w, request_rate=cap * 1e-3, concurrency=None, max_concurrency=False))
        return (cap * 1e-3, p) if slo.met(p) else (0.0, p)
    return lo, best


def evaluate_shape(spec, gpu: hardware.Gpu, device: Device, tp: int, link: Link, settings: EngineSettings,
                   quant: QuantFormat | None, w: Workload, slo: Slo) -> Shape:
    s = replace(settings, tensor_parallel_size=tp)
    mem = engine_memory(spec, device, s, quant)
    if not mem.fits:
        why = "weights do not fit" if mem.kv_cache_bytes <= 0 else \
            f"KV holds {mem.estimated_max_model_len} tokens < max-model-len {mem.max_model_len}"
        return Shape(gpu.gpu_model, tp, link.name, mem, 0, None, False, why)
    sm = StepModel(spec, mem, gpu, link, s)
    if w.request_rate is not None:
        per, _ = _rate_within(sm, w, slo)
        if per <= 0:
            p = performance(sm, replace(w, request_rate=None, concurrency=1))
            return Shape(gpu.gpu_model, tp, link.name, mem, 0, p, False, "one request alone misses the SLO")
        replicas = math.ceil(w.request_rate / per - 1e-9)
        if replicas > MAX_REPLICAS:
            return Shape(gpu.gpu_model, tp, link.name, mem, replicas, None, False, "needs too many replicas")
        p = performance(sm, replace(w, request_rate=w.request_rate / replicas))
        return Shape(gpu.gpu_model, tp, link.name, mem, replicas, p, slo.met(p))
    if w.max_concurrency:
        p = performance(sm, w)
        return Shape(gpu.gpu_model, tp, link.name, mem, 1, p, slo.met(p))
    users = w.concurrency or 1
    lo = 1
    for replicas in _replica_steps(users):
        p = performance(sm, replace(w, concurrency=math.ceil(users / replicas)))
        if slo.met(p):
            # bisect down between the last failing count and this one
            hi = replicas
            while lo < hi:
                mid = (lo + hi) // 2
                pm = performance(sm, replace(w, concurrency=math.ceil(users / mid)))
                if slo.met(pm):
                    hi, p = mid, pm
                else:
                    lo = mid + 1
            p = performance(sm, replace(w, concurrency=math.ceil(users / hi)))
            return Shape(gpu.gpu_model, tp, link.name, mem, hi, p, True)
        lo = replicas + 1
    p = performance(sm, replace(w, concurrency=1))
    return Shape(gpu.gpu_model, tp, link.name, mem, 0, p, False, "even one user per replica misses the SLO")


def _replica_steps(users: int):
    r = 1
    while r < users:
        yield r
        r *= 2
    yield users


# ---------------------------------------------------------------- search and price


def _platforms(platform: str, spot: bool) -> tuple[tuple[str, str], ...]:
    if spot:
        if platform == "sagemaker":
            raise PlannerError("--spot: SageMaker endpoints have no spot pricing; use --platform ec2 or drop --spot")
        return (("ec2", "spot"),)
    want = {"ec2": (("ec2", "on-demand"),), "sagemaker": (("sagemaker", "hosting"),),
            "any": (("ec2", "on-demand"), ("sagemaker", "hosting"))}
    if platform not in want:
        raise PlannerError(f"--platform must be ec2, sagemaker or any, got '{platform}'")
    return want[platform]


def shape_keys(spec, catalog, settings: EngineSettings, max_gpus: int | None = None) -> dict[tuple[str, int, str], tuple]:
    """Every (gpu model, tp, link) replica shape the catalog's NVIDIA instances offer -> (gpu, device, link)."""
    out: dict[tuple[str, int, str], tuple] = {}
    for inst in catalog.instances:
        if inst.accelerator != "nvidia":
            continue
        gpu = hardware.gpu(inst.gpu_model)
        if gpu is None or not gpu.mem_bandwidth_gb_s or not (gpu.tflops("bf16")):
            continue
        sizes = (settings.tensor_parallel_size,) if settings.tensor_parallel_size > 1 else TP_SIZES
        for tp in sizes:
            if tp > inst.gpu_count or (max_gpus and tp > max_gpus) or spec.num_attention_heads % tp:
                continue
            link = link_of(gpu, inst.interconnect, tp)
            out.setdefault((gpu.gpu_model, tp, link.name), (gpu, device_for(gpu, inst.gpu_memory_gib), link))
    return out


def _choice(shape: Shape, inst, price, platform: str, usage: str) -> ServingChoice:
    per_instance = inst.gpu_count // shape.gpus_per_replica
    instances = math.ceil(shape.replicas / per_instance)
    hourly = instances * price.usd_per_hour
    p = shape.performance
    tok_s = p.output_tokens_per_second * shape.replicas if p else 0.0
    per_m = hourly / (tok_s * 3600) * 1e6 if tok_s > 0 else None
    return ServingChoice(platform, price.instance_type, price.region, usage, inst.gpu_model, inst.gpu_count,
                         shape.gpus_per_replica, shape.replicas, instances, hourly, hourly * HOURS_PER_MONTH, per_m,
                         shape.meets_slo, shape, f"{price.source} ({price.as_of})")


def plan_serving(spec, catalog, settings: EngineSettings, quant: QuantFormat | None, w: Workload, slo: Slo, *,
                 platform: str = "any", region: str = "us-east-1", spot: bool = False,
                 max_gpus: int | None = None, suggest: bool = True) -> ServingPlan:
    """Cheapest instance x TP x replicas x region meeting ``slo`` (module docstring).

    Shapes are evaluated in order of the cheapest single instance that offers them; once a plan meets
    the SLO, a shape whose one instance already costs more cannot win and is not evaluated (a plan
    needs at least one instance), so the answer is the exact optimum over the catalog."""
    from .regions import ANY
    platforms = _platforms(platform, spot)
    regions = catalog.priced_regions() if region == ANY else (region,)
    keys = shape_keys(spec, catalog, settings, max_gpus)
    offers: dict[tuple[str, int, str], list] = {k: [] for k in keys}
    for inst in catalog.instances:
        if inst.accelerator != "nvidia":
            continue
        for key, (gpu, _, link) in keys.items():
            if key[0] != inst.gpu_model or key[1] > inst.gpu_count:
                continue
            if link.name != link_of(gpu, inst.interconnect, key[1]).name:
                continue
            for plat, usage in platforms:
                name = ("ml." + inst.instance_type) if plat == "sagemaker" else inst.instance_type
                for reg in regions:
                    price = catalog.price(plat, name, reg, usage)
                    if price is not None and price.usd_per_hour is not None:
                        offers[key].append((inst, price, plat, usage))
    order = sorted((k for k in keys if offers[k]), key=lambda k: min(o[1].usd_per_hour for o in offers[k]))
    choices: list[ServingChoice] = []
    rejected: list[str] = []
    best_cost = math.inf
    for key in order:
        if min(o[1].usd_per_hour for o in offers[key]) >= best_cost:
            break
        gpu, device, link = keys[key]
        shape = evaluate_shape(spec, gpu, device, key[1], link, settings, quant, w, slo)
        if shape.reason:
            rejected.append(f"{key[0]} x{key[1]}: {shape.reason}")
        if not shape.replicas or shape.performance is None:
            continue
        for inst, price, plat, usage in offers[key]:
            c = _choice(shape, inst, price, plat, usage)
            choices.append(c)
            if c.meets_slo:
                best_cost = min(best_cost, c.usd_per_hour)
    ranked = sorted(choices, key=lambda c: (not c.meets_slo, c.usd_per_hour, c.instance_type, c.region))
    best = ranked[0] if ranked and ranked[0].meets_slo else None
    plan = ServingPlan(w, slo, best, tuple(ranked[:8]), tuple(sorted(rejected)))
    if best is None and suggest:
        plan = replace(plan, what_would=what_would(spec, catalog, settings, quant, w, slo, platform=platform,
                                                   region=region, spot=spot, max_gpus=max_gpus))
    return plan


def what_would(spec, catalog, settings: EngineSettings, quant: QuantFormat | None, w: Workload, slo: Slo,
               **kw) -> tuple[WhatWould, ...]:
    """Each change that could make the SLO met, checked by re-planning with it."""
    tries: list[tuple[str, EngineSettings, QuantFormat | None]] = []
    if quant is None or quant.name not in ("fp8", "nvfp4", "awq", "gptq", "mxfp4"):
        tries.append(("--quantization fp8 (an fp8 checkpoint, or dynamic fp8 at load)", settings, quant_format("fp8")))
        tries.append(("an AWQ int4 checkpoint (--quantization awq)", settings, quant_format("awq")))
    if settings.kv_cache_dtype != "fp8":
        tries.append(("--kv-cache-dtype fp8", replace(settings, kv_cache_dtype="fp8"), quant))
    need = w.input_tokens + w.output_tokens
    short = 1 << max(0, (need - 1).bit_length())
    if settings.max_model_len is None or settings.max_model_len > short:
        tries.append((f"--max-model-len {short} (covers {need} tokens per request)",
                      replace(settings, max_model_len=short), quant))
    if settings.tensor_parallel_size > 1:
        tries.append(("any --tensor-parallel-size (the search tries 1, 2, 4 and 8)",
                      replace(settings, tensor_parallel_size=1), quant))
    out = []
    for change, s, q in tries:
        try:
            p = plan_serving(spec, catalog, s, q, w, slo, suggest=False, **kw)
        except PlannerError:
            continue
        out.append(WhatWould(change, p.recommendation))
    return tuple(out)


def gib(x: int) -> float:
    return x / GIB
