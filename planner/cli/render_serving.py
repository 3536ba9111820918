"""Human output of a serving plan: vLLM's startup figures, the speed at the workload, the cost, the command."""
from __future__ import annotations

from typing import Any

from .money_format import group_amount

GIB = 1024**3


def _ms(x: Any) -> str:
    return "unbounded" if x is None else f"{x:,.0f} ms" if x >= 100 else f"{x:.1f} ms"


def render_serving(console, r: dict[str, Any]) -> None:
    out = console.print
    s, rec = r.get("serving"), r.get("recommendation")
    out(f"[bold]{r['model']['name']}[/bold] served with vLLM", soft_wrap=True)
    if s is None:
        out("No NVIDIA machine in the catalog holds this model with these settings.")
        for line in r.get("rejected", []):
            out(f"  {line}")
        return
    d, pg = s["details"], s["per_gpu"]
    out(f"  {s['gpu']} per replica, vLLM {s['engine_version']}, TP {s['tensor_parallel_size']}"
        f" x PP {s['pipeline_parallel_size']}, gpu_memory_utilization {d['gpu_memory_utilization']:g}")
    out(f"  per GPU: weights {pg['weights_bytes'] / GIB:.2f} GiB, activation peak {pg['activation_peak_bytes'] / GIB:.2f}"
        f" GiB, non-torch {pg['non_torch_bytes'] / GIB:.2f} GiB, CUDA graphs {pg['cudagraph_bytes'] / GIB:.2f} GiB,"
        f" KV cache {pg['kv_cache_bytes'] / GIB:.2f} GiB", soft_wrap=True)
    out("  vLLM will log:")
    for line in d["vllm_log"]:
        out(f"    {line}", soft_wrap=True)
    p, w = s.get("performance"), s["workload"]
    load = f"{w['request_rate']:g} req/s" if w["request_rate"] is not None else f"concurrency {w['concurrency']}"
    if p:
        out(f"  at {w['input_tokens']} in / {w['output_tokens']} out tokens, {load} (per replica: "
            f"{p['concurrency']:.4g} running):")
        out(f"    TTFT {_ms(p['ttft_ms'])} (p99 {_ms(p['ttft_p99_ms'])}), ITL {_ms(p['itl_ms'])}, "
            f"{p['output_tokens_per_second']:,.0f} output tok/s, {p['requests_per_second']:.3g} req/s per replica",
            soft_wrap=True)
    if rec:
        money = ""
        if rec.get("usd_per_hour") is not None:
            per_m = rec.get("usd_per_million_output_tokens")
            money = (f" on {rec['instances']}x {rec['instance_type']} ({rec['platform']}, {rec['region']}): "
                     f"${rec['usd_per_hour']:,.2f}/h, ${rec['usd_per_month']:,.0f}/month"
                     + (f", ${per_m:,.2f} per million output tokens" if per_m is not None else ""))
        cur = rec.get("currency")
        if cur:
            money += (f" (= {cur['code']} {group_amount(cur['per_hour'], cur['code'])}/h, "
                      f"{cur['code']} {group_amount(cur['per_month'], cur['code'])}/month)")
        slo = s["workload"]["slo"]
        if slo["ttft_ms"] is None and slo["itl_ms"] is None:
            verdict = "no SLO given" if rec["meets_slo"] else "does NOT carry this load"
        else:
            verdict = "meets the SLO" if rec["meets_slo"] else "does NOT meet the SLO"
        out(f"  {rec['replicas']} replica(s) x TP {rec['tensor_parallel_size']}{money}; {verdict}", soft_wrap=True)
    for x in r.get("what_would", []):
        if "plan" not in x:  # on the user's own GPUs
            verdict = ("meets the SLO" if x["meets_slo"] else "fits, still misses the SLO") if x["fits"] \
                else "does not fit"
            out(f"  what would: {x['change']} -> {verdict}", soft_wrap=True)
            continue
        plan = x["plan"]
        if plan and plan["meets_slo"]:
            what = f"{plan['instances']}x {plan['instance_type']} TP {plan['tensor_parallel_size']}, ${plan['usd_per_hour']:,.2f}/h"
        else:
            what = "still misses the SLO"
        out(f"  what would: {x['change']} -> {what}", soft_wrap=True)
    if r.get("vllm"):
        out("  " + r["vllm"]["command"], soft_wrap=True)
