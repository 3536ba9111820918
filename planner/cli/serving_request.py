"""``plan MODEL --mode inference --engine vllm ...``: flags -> planner core + pricing -> one JSON / table.

With ``--gpu`` the answer is for those GPUs (tensor parallel over all of them unless
``--tensor-parallel-size`` says otherwise; several replicas when TP x PP is smaller than the count);
without, ``pricing.serving`` searches the catalog. Imports stay light: csv, json and dataclasses.
"""
from __future__ import annotations

import json
import math
from typing import Any

import typer

from ..errors import PlannerError
from .serving_flags import ServingFlags, check_serving, parse_concurrency

DEFAULT_INPUT, DEFAULT_OUTPUT = 1024, 128  # vllm bench serve's random dataset (vllm/benchmarks/datasets.py @0.19.0)
# plan flags that describe a training job or a transformers batch: refused with --engine vllm, never ignored.
NOT_FOR_VLLM = ("seq_len", "batch_size", "gradient_checkpointing", "lora_r", "lora_alpha", "lora_dropout",
                "lora_targets", "num_virtual_tokens", "optimizer", "attention", "allocator", "adapters",
                "max_lora_rank", "objective", "max_hours", "tokens", "dataset", "epochs",
                "execute", "backend", "yes", "force", "output_dir", "max_steps", "learning_rate", "save_steps",
                "experiment", "role", "bucket", "max_cost", "restart", "dry_run", "wait", "emit_config")
_DTYPE_FROM_CONFIG = {"bfloat16": "bf16", "float16": "fp16"}


def _dtype(precision: str | None, config: dict) -> str:
    if precision in ("int8", "int4"):
        raise PlannerError(f"--precision {precision}: vLLM serves quantized weights through --quantization "
                           "(fp8, awq, gptq, bitsandbytes, mxfp4, nvfp4), not --precision")
    if precision:
        return precision
    # --dtype auto: the checkpoint's torch_dtype; fp32 checkpoints are served in bf16 here (vLLM: fp16/bf16)
    return _DTYPE_FROM_CONFIG.get(str(config.get("torch_dtype") or config.get("dtype") or ""), "bf16")


def run_serving(ctx: Any, model: str, flags: ServingFlags, *, mode: str, precision: str | None, gpu: str | None,
                platform: str, region: str, spot: bool, max_gpus: int | None, no_pricing: bool,
                as_json: bool, currency: str | None = None, usd_rate: float | None = None) -> None:
    from .validate import given
    if flags.engine == "vllm" and not given(ctx, "mode"):
        mode = "inference"  # --engine vllm plans serving: --mode inference is implied when --mode is not given
    check_serving(flags, mode)
    bad = [n for n in NOT_FOR_VLLM if given(ctx, n)]
    if bad:
        names = ", ".join("--" + n.replace("_", "-") for n in bad)
        raise PlannerError(f"{names}: not used by --engine vllm (a served deployment, not a training job or one batch); drop it")
    from ..registry import resolve
    from ..serving.performance import Workload
    from ..serving.quant import served_format, with_published_quantization
    from ..serving.vllm_memory import EngineSettings
    from pricing.serving import Slo

    spec = resolve(model)
    config, published = with_published_quantization(dict(spec.config), spec.hf_id)
    quant = served_format(config, flags.quantization)
    settings = EngineSettings(version=flags.engine_version, tensor_parallel_size=flags.tensor_parallel_size or 1,
                              pipeline_parallel_size=flags.pipeline_parallel_size or 1,
                              gpu_memory_utilization=flags.gpu_memory_utilization, max_model_len=flags.max_model_len,
                              max_num_seqs=flags.max_num_seqs, max_num_batched_tokens=flags.max_num_batched_tokens,
                              kv_cache_dtype=flags.kv_cache_dtype or "auto", dtype=_dtype(precision, dict(spec.config)),
                              enforce_eager=flags.enforce_eager)
    conc = parse_concurrency(flags.concurrency)
    workload = Workload(flags.input_tokens or DEFAULT_INPUT, flags.output_tokens or DEFAULT_OUTPUT,
                        concurrency=conc if isinstance(conc, int) else None, request_rate=flags.request_rate,
                        max_concurrency=conc == "max" or (conc is None and flags.request_rate is None))
    slo = Slo(flags.ttft_ms, flags.itl_ms)
    hf_id = spec.hf_id or model
    if gpu is not None:
        cloud = [f"--{n.replace('_', '-')}" for n in ("platform", "region", "max_gpus") if given(ctx, n)]
        if cloud:
            raise PlannerError(f"{', '.join(cloud)}: these pick cloud machines; --gpu plans your own GPUs: drop them "
                               "or drop --gpu")
        if currency is not None or usd_rate is not None:
            raise PlannerError("--currency and --usd-rate convert cloud prices; --gpu plans your own GPUs: drop them")
        if spot or region == "any":
            raise PlannerError("--spot and --region any price cloud machines; --gpu plans your own GPUs: drop them")
        result = _on_local_gpus(spec, hf_id, gpu, settings, flags, quant, workload, slo, tp_given=flags.tensor_parallel_size)
    elif no_pricing:
        raise PlannerError("--engine vllm needs GPUs to lay memory out on: give --gpu (e.g. \"2x H100\") or drop "
                           "--no-pricing to search the catalog")
    else:
        from pricing.costs import Money
        money = Money.parse(currency, usd_rate)
        result = _priced(spec, hf_id, settings, flags, quant, workload, slo, platform=platform, region=region,
                         spot=spot, max_gpus=max_gpus)
        rec = result.get("recommendation")
        if money is not None and rec:
            rec["currency"] = {"code": money.code, "usd_rate": money.usd_rate,
                               "per_hour": round(money.convert(rec["usd_per_hour"]), 2),
                               "per_month": round(money.convert(rec["usd_per_month"]), 2),
                               "per_million_output_tokens": None if rec["usd_per_million_output_tokens"] is None
                               else round(money.convert(rec["usd_per_million_output_tokens"]), 4)}
    if published and result.get("serving"):
        result["serving"]["details"]["notes"].append(f"quantization_config from the published checkpoint: {published}")
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from .output import console
        from .render_serving import render_serving
        render_serving(console(), result)


def _workload_dict(w, slo) -> dict[str, Any]:
    return {"input_tokens": w.input_tokens, "output_tokens": w.output_tokens,
            "concurrency": "max" if w.max_concurrency else w.concurrency, "request_rate": w.request_rate,
            "slo": slo.to_dict()}


def _serving_block(mem, perf, workload, slo, gpu_label: str) -> dict[str, Any]:
    d = mem.to_dict()
    block = {k: d[k] for k in ("engine", "engine_version", "tensor_parallel_size", "pipeline_parallel_size",
                               "per_gpu", "kv_cache_tokens", "max_model_len", "max_concurrency", "fits",
                               "estimated_max_model_len")}
    block["performance"] = perf.to_dict() if perf is not None else None
    block["gpu"] = gpu_label
    block["workload"] = _workload_dict(workload, slo)
    block["details"] = {k: v for k, v in d.items() if k not in block}
    return block


def _on_local_gpus(spec, hf_id, gpu_text, settings, flags, quant, workload, slo, tp_given,
                   suggest: bool = True) -> dict[str, Any]:
    from dataclasses import replace

    from pricing.catalog import load_catalog
    from pricing.localgpu import resolve as resolve_gpu
    from pricing.serving import device_for, link_of

    from .. import hardware
    from ..serving.performance import StepModel, performance
    from ..serving.vllm_memory import Device, engine_memory
    from ..vllm import vllm_serving_command

    catalog = load_catalog()
    g = resolve_gpu(catalog, gpu_text)
    card = catalog.local_gpu(g.name).spec if g.name else None
    hw = hardware.gpu(card) if card else None
    tp = tp_given or max(1, g.count // settings.pipeline_parallel_size)
    if tp * settings.pipeline_parallel_size > g.count:
        raise PlannerError(f"--tensor-parallel-size {tp} x --pipeline-parallel-size {settings.pipeline_parallel_size}"
                           f" needs more than the {g.count} GPU(s) of --gpu")
    settings = replace(settings, tensor_parallel_size=tp)
    device = device_for(hw) if hw is not None and hw.memory_mib else Device(g.name or "GPU", g.memory_bytes)
    mem = engine_memory(spec, device, settings, quant)
    replicas = g.count // (tp * settings.pipeline_parallel_size)
    perf, notes = None, []
    if hw is None or not hw.mem_bandwidth_gb_s or not hw.tflops("bf16"):
        notes.append(f"no bandwidth/TFLOPS recorded for '{gpu_text}' (planner/data/gpus.csv): speed unknown")
    elif mem.fits:
        link = link_of(hw, "", tp)
        sm = StepModel(spec, mem, hw, link, settings)
        w = workload
        if w.concurrency is not None:
            w = replace(w, concurrency=math.ceil(w.concurrency / replicas))
        elif w.request_rate is not None:
            w = replace(w, request_rate=w.request_rate / replicas)
        perf = performance(sm, w)
    label = f"{g.count}x {g.name or 'GPU'}"
    result: dict[str, Any] = {"model": {"name": spec.name, "hf_id": spec.hf_id},
                              "serving": _serving_block(mem, perf, workload, slo, label)}
    meets = perf is not None and slo.met(perf)
    tok_s = perf.output_tokens_per_second * replicas if perf else None
    result["recommendation"] = {"gpu": label, "replicas": replicas, "tensor_parallel_size": tp,
                                "usd_per_million_output_tokens": None, "usd_per_month": None, "usd_per_hour": None,
                                "meets_slo": meets, "output_tokens_per_second": tok_s, "notes": notes}
    if mem.fits:
        result["vllm"] = vllm_serving_command(hf_id, mem, quantization_flag=flags.quantization,
                                              enforce_eager=flags.enforce_eager).to_dict()
    if suggest and not meets and hw is not None:
        result["what_would"] = _local_what_would(spec, hf_id, gpu_text, settings, flags, quant, workload, slo,
                                                 tp_given, fits=mem.fits)
    return result


def _local_what_would(spec, hf_id, gpu_text, settings, flags, quant, workload, slo, tp_given,
                      fits: bool = True) -> list[dict]:
    """On the user's GPUs: each change re-planned, and whether it fits and meets the SLO (when the plan does
    not fit, the other changes are tried with a max-model-len that covers the workload)."""
    from dataclasses import replace

    from ..serving.quant import quant_format
    need = workload.input_tokens + workload.output_tokens
    short = 1 << max(0, (need - 1).bit_length())
    base, also = settings, ""
    if not fits and (settings.max_model_len is None or settings.max_model_len > short):
        base, also = replace(settings, max_model_len=short), f" with --max-model-len {short}"
    tries = []
    if quant is None:
        tries += [(f"--quantization fp8{also}", base, quant_format("fp8"), "fp8"),
                  (f"an AWQ int4 checkpoint (--quantization awq){also}", base, quant_format("awq"), "awq")]
    if settings.kv_cache_dtype != "fp8":
        tries.append((f"--kv-cache-dtype fp8{also}", replace(base, kv_cache_dtype="fp8"), quant, flags.quantization))
    if settings.max_model_len is None or settings.max_model_len > short:
        tries.append((f"--max-model-len {short}", replace(settings, max_model_len=short), quant, flags.quantization))
    out = []
    for change, s, q, qflag in tries:
        try:
            r = _on_local_gpus(spec, hf_id, gpu_text, s, replace(flags, quantization=qflag), q, workload, slo,
                               tp_given, suggest=False)
        except PlannerError:
            continue
        rec, serving = r["recommendation"], r["serving"]
        out.append({"change": change, "fits": serving["fits"], "meets_slo": rec["meets_slo"],
                    "performance": serving["performance"]})
    return out


def _priced(spec, hf_id, settings, flags, quant, workload, slo, **kw) -> dict[str, Any]:
    from pricing.catalog import load_catalog
    from pricing.regions import ANY
    from pricing.serving import plan_serving

    from ..vllm import vllm_serving_command

    catalog = load_catalog()
    if kw["region"] != ANY:
        catalog.check_region(kw["region"])
    plan = plan_serving(spec, catalog, settings, quant, workload, slo, **kw)
    choice = plan.recommendation or (plan.alternatives[0] if plan.alternatives else None)
    result: dict[str, Any] = {"model": {"name": spec.name, "hf_id": spec.hf_id}}
    if choice is None:
        result["serving"] = None
        result["recommendation"] = None
        result["rejected"] = list(plan.rejected)
    else:
        shape = choice.shape
        result["serving"] = _serving_block(shape.memory, shape.performance, workload, slo,
                                           f"{choice.tensor_parallel_size}x {choice.gpu_model}")
        rec = choice.to_dict()
        rec["output_tokens_per_second"] = round(shape.performance.output_tokens_per_second * choice.replicas, 2)
        result["recommendation"] = rec
        result["vllm"] = vllm_serving_command(hf_id, shape.memory, quantization_flag=flags.quantization,
                                              enforce_eager=flags.enforce_eager).to_dict()
        if choice.platform == "sagemaker":
            count = choice.instances
            result["deploy"] = {
                "instance_type": choice.instance_type, "count": count,
                "command": f"plan deploy JOB_OR_PACKAGE_ARN --name ENDPOINT --role ROLE_ARN "
                           f"--instance-type {choice.instance_type} --count {count}",
                "note": "plan deploy takes the instance type and count; the vLLM settings above (TP, "
                        "--gpu-memory-utilization, --max-model-len, --max-num-seqs) are not passed to its container yet"}
        result["alternatives"] = [c.to_dict() for c in plan.alternatives[1:]]
        result["rejected"] = list(plan.rejected)
    result["what_would"] = [x.to_dict() for x in plan.what_would]
    return result
