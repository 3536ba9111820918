"""Issue 21: vLLM's memory layout, the step model, the serving decision and the --engine vllm flags.

Oracles are independent of the code under test: numbers copied from published vLLM startup logs, and
arithmetic written out here from vLLM's source (kv_cache_utils.py, arg_utils.py, vllm.py @0.19.0).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planner import hardware
from planner.errors import PlannerError
from planner.registry import resolve
from planner.serving.performance import StepModel, Workload, performance
from planner.serving.quant import from_config, quant_format, served_format
from planner.serving.vllm_memory import (GIB, Device, EngineSettings, batch_defaults, check_version,
                                         cudagraph_capture_sizes, engine_memory, version_rules, weights_per_rank)

H100 = Device("H100", (81559 - 512) * 2**20, "hopper")
A100 = Device("A100-80GB", (81920 - 512) * 2**20, "ampere")


# ---------------------------------------------------------------- weights against published startup logs


@pytest.mark.parametrize("alias, tp, quant, logged_gib", [
    ("llama3.1-8b", 1, None, 14.9888),        # vllm#10517 "Loading model weights took 14.9888 GB"
    ("llama3.1-70b", 1, "fp8", 67.7229),      # vllm PR #12569 (w8a8 checkpoint)
    ("qwen3-30b-a3b", 4, None, 14.2474),      # vllm#17469 "Model loading took 14.2474 GiB" (TP4)
])
def test_weights_per_rank_match_logged_loading(alias, tp, quant, logged_gib):
    held, _ = weights_per_rank(resolve(alias), EngineSettings(tensor_parallel_size=tp),
                               quant_format(quant) if quant else None)
    assert held / GIB == pytest.approx(logged_gib, rel=0.002)


def test_ignore_list_keeps_named_modules_in_bf16():
    """fp8 ``ignored_layers`` / ``modules_to_not_convert`` (vLLM is_layer_skipped): the named linears stay
    bf16. Llama-3.1-8B, every attention projection ignored: per layer q, o are 4096x4096 and k, v 4096x1024,
    each losing its fp32 per-row scale and gaining a byte per weight."""
    spec = resolve("llama3.1-8b")
    attn = [f"model.layers.{i}.self_attn.{n}" for i in range(32) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
    plain, _ = weights_per_rank(spec, EngineSettings(), from_config({"quantization_config": {"quant_method": "fp8"}}))
    skipped, _ = weights_per_rank(spec, EngineSettings(), from_config(
        {"quantization_config": {"quant_method": "fp8", "ignored_layers": attn}}))
    numel, rows = 2 * 4096 * 4096 + 2 * 4096 * 1024, 2 * 4096 + 2 * 1024
    assert skipped - plain == 32 * (numel * 1 - rows * 4)
    regex = from_config({"quantization_config": {"quant_method": "compressed-tensors", "ignore": ["re:.*self_attn.*"],
                                                 "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}})
    assert weights_per_rank(spec, EngineSettings(), regex)[0] == skipped


def test_mxfp4_experts_padded_for_marlin_on_ampere():
    """gpt-oss-20b on an A100 logs 13.72 GiB (myoceane.fr, vLLM 0.19.0): Marlin pads 2880 -> 3072 / 2944."""
    spec = resolve("gpt-oss-20b")
    ampere, _ = weights_per_rank(spec, EngineSettings(), quant_format("mxfp4"), 0, "ampere")
    hopper, _ = weights_per_rank(spec, EngineSettings(), quant_format("mxfp4"), 0, "hopper")
    assert ampere / GIB == pytest.approx(13.72, rel=0.01)
    assert ampere > hopper


def test_kv_heads_replicated_when_fewer_than_ranks():
    """Llama-3-70B has 8 KV heads: at TP16 each rank still holds one (QKVParallelLinear replicates)."""
    spec = resolve("llama3-70b")
    m8 = engine_memory(spec, H100, EngineSettings(tensor_parallel_size=8, max_model_len=4096))
    assert m8.page_size_bytes == 2 * 16 * 1 * 128 * 2
    m4 = engine_memory(spec, H100, EngineSettings(tensor_parallel_size=4, max_model_len=4096))
    assert m4.page_size_bytes == 2 * 16 * 2 * 128 * 2


# ---------------------------------------------------------------- KV blocks, written out from kv_cache_utils.py


def test_blocks_tokens_and_concurrency_follow_vllm_arithmetic():
    spec = resolve("llama3.1-8b")
    m = engine_memory(spec, H100, EngineSettings(max_model_len=8192))
    requested = math.ceil(H100.total_bytes * 0.9)
    assert m.requested_bytes == requested
    available = requested - m.weights_bytes - m.activation_peak_bytes - m.non_torch_bytes - m.cudagraph_bytes
    assert m.kv_cache_bytes == available
    page = 2 * 16 * 8 * 128 * 2
    assert m.num_blocks == available // page // 32
    assert m.kv_cache_tokens == m.num_blocks * 16
    assert m.max_concurrency == pytest.approx(m.num_blocks / (8192 // 16))


def test_fp8_kv_halves_the_page_and_doubles_tokens():
    spec = resolve("qwen2.5-7b")
    a = engine_memory(spec, H100, EngineSettings(max_model_len=8192))
    b = engine_memory(spec, H100, EngineSettings(max_model_len=8192, kv_cache_dtype="fp8"))
    assert b.page_size_bytes * 2 == a.page_size_bytes
    assert b.kv_cache_tokens == pytest.approx(2 * a.kv_cache_tokens, abs=16)


def test_mla_latent_page():
    spec = resolve("deepseek-v2-lite")
    m = engine_memory(spec, H100, EngineSettings(max_model_len=4096, tensor_parallel_size=2))
    assert m.page_size_bytes == 16 * (512 + 64) * 2  # coef 1, latent not split across ranks


def test_hybrid_sliding_layers_grouped_and_cheaper_per_request():
    """gpt-oss: 12 sliding + 12 full layers -> 2 groups of 12; a sliding layer needs window - 1 + mnbt."""
    spec = resolve("gpt-oss-20b")
    m = engine_memory(spec, H100, EngineSettings(max_model_len=131072), quant_format("mxfp4"))
    assert (m.kv_groups, m.layers_per_group) == (2, 12)
    assert m.kv_cache_tokens == m.num_blocks // 2 * 16
    sliding = math.ceil(min(128 - 1 + m.max_num_batched_tokens, 131072) / 16) + 1
    assert m.blocks_per_request == 131072 // 16 + sliding


def test_estimated_max_model_len_when_one_request_does_not_fit():
    spec = resolve("llama3.1-8b")
    l4 = Device("L4", (23034 - 430) * 2**20, "ada")
    m = engine_memory(spec, l4, EngineSettings())
    assert not m.fits and 0 < m.estimated_max_model_len < 131072
    per_token = 32 * 2 * 8 * 128 * 2
    assert m.estimated_max_model_len // 16 * 16 * per_token <= m.kv_cache_bytes
    assert (m.estimated_max_model_len + 16) * per_token > m.kv_cache_bytes
    assert "estimated maximum model length" in m.log_lines()[-1]


# ---------------------------------------------------------------- defaults and versions


def test_batch_defaults_with_the_a100_exception():
    assert batch_defaults(H100) == (8192, 1024)
    assert batch_defaults(A100) == (2048, 256)  # PR #17885: large budgets reduced A100 throughput
    assert batch_defaults(Device("L40S", 45 * GIB)) == (2048, 256)
    assert batch_defaults(A100, "0.8.5") == (8192, 1024)  # the exception is absent @0.8.5, present @0.9.0
    assert batch_defaults(A100, "0.9.0") == (2048, 256)


def test_context_and_nccl_charged_before_the_snapshot_accounting():
    """@0.8.5/0.9.0 the budget lost everything outside torch (context, NCCL); from 0.9.2 a snapshot after NCCL."""
    spec = resolve("llama3.1-8b")
    early = engine_memory(spec, H100, EngineSettings(version="0.9.0", max_model_len=8192))
    late = engine_memory(spec, H100, EngineSettings(version="0.9.2", max_model_len=8192))
    assert early.non_torch_bytes > late.non_torch_bytes
    assert late.kv_cache_bytes - early.kv_cache_bytes == early.non_torch_bytes - late.non_torch_bytes


def test_cudagraph_sizes():
    sizes = cudagraph_capture_sizes(1024, 8192)
    assert len(sizes) == 51 and sizes[-1] == 512
    assert cudagraph_capture_sizes(256, 2048)[-1] == 512
    assert cudagraph_capture_sizes(8, 2048) == (1, 2, 4, 8, 16)


def test_cudagraph_estimate_is_subtracted_from_its_default_release():
    spec = resolve("llama3.1-8b")
    old = engine_memory(spec, H100, EngineSettings(version="0.19.0", max_model_len=8192))
    new = engine_memory(spec, H100, EngineSettings(version="0.21.0", max_model_len=8192))
    eager = engine_memory(spec, H100, EngineSettings(version="0.21.0", max_model_len=8192, enforce_eager=True))
    assert old.cudagraph_bytes == 0 and new.cudagraph_bytes > 0 and eager.cudagraph_bytes == 0
    assert old.kv_cache_bytes - new.kv_cache_bytes == new.cudagraph_bytes
    assert not version_rules("0.19.0")["cudagraph_estimate_default"]


@pytest.mark.parametrize("bad", ["0.3.1", "1.0.0", "abc", "0", "0.19.0\n", " 0.19.0", "0.19.0.1.2", "0.19.0rc1", ""])
def test_unknown_engine_version_refused(bad):
    with pytest.raises(PlannerError):
        check_version(bad)


def test_engine_version_is_read_exactly():  # the release modelled is the one written (issue 19 probe round 2)
    assert check_version("0.19.0") == "0.19.0" and check_version("v0.19") == "0.19.0"
    assert check_version("0.10.1.1") == "0.10.1.1"  # vLLM publishes post releases


# ---------------------------------------------------------------- checkpoints as served


def test_quantization_config_read_as_vllm_does():
    assert from_config({"quantization_config": {"quant_method": "awq", "group_size": 128}}).name == "awq"
    assert from_config({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}).name == "nvfp4"
    ct = {"quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized",
                                  "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}}}
    assert from_config(ct).name == "fp8"
    assert from_config({}) is None
    with pytest.raises(PlannerError, match="does not match"):
        served_format({"quantization_config": {"quant_method": "fp8"}}, "awq")


def test_int4_bytes_include_group_scales():
    awq = quant_format("awq")
    n = 4096 * 4096
    assert awq.tensor_bytes(4096, 4096) == pytest.approx(n * 0.5 + n / 128 * 2.5)


# ---------------------------------------------------------------- speed


def _step(alias="llama3.1-8b", quant=None, tp=1):
    spec = resolve(alias)
    gpu = hardware.gpu("H100")
    from pricing.serving import link_of
    s = EngineSettings(max_model_len=4096, tensor_parallel_size=tp)
    mem = engine_memory(spec, H100, s, quant_format(quant) if quant else None)
    return StepModel(spec, mem, gpu, link_of(gpu, "NVSwitch", tp), s)


def test_decode_is_bandwidth_bound_at_batch_one():
    sm = _step()
    t = sm.decode(1, 1024)
    floor = sm.mem.weights_bytes / (3350e9)
    assert floor < t < 3 * floor


def test_closed_loop_throughput_is_littles_law():
    sm = _step()
    p = performance(sm, Workload(512, 128, concurrency=16))
    assert p.output_tokens_per_second == pytest.approx(16 * 128 / (p.e2e_ms / 1e3), rel=1e-6)


def test_rate_above_capacity_is_saturated():
    sm = _step()
    cap = performance(sm, Workload(512, 128, max_concurrency=True)).capacity_rps
    assert performance(sm, Workload(512, 128, request_rate=cap * 1.01)).saturated
    ok = performance(sm, Workload(512, 128, request_rate=cap * 0.5))
    assert not ok.saturated and ok.ttft_p99_ms >= ok.ttft_ms


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.floats(0.1, 30))
def test_higher_rate_never_faster(rate):
    sm = _step()
    w = Workload(512, 128, request_rate=rate)
    a, b = performance(sm, w), performance(sm, Workload(512, 128, request_rate=rate * 1.3))
    assert b.ttft_ms >= a.ttft_ms - 1e-9 or b.saturated


# ---------------------------------------------------------------- the decision (pricing)


def _plan(rate=None, conc=None, ttft=None, itl=None, alias="llama3.1-8b", mml=4096):
    from pricing.catalog import load_catalog
    from pricing.serving import Slo, plan_serving
    w = Workload(512, 128, request_rate=rate, concurrency=conc, max_concurrency=rate is None and conc is None)
    return plan_serving(resolve(alias), load_catalog(), EngineSettings(max_model_len=mml), None, w, Slo(ttft, itl),
                        suggest=False)


def test_recommendation_meets_its_own_slo_and_kv_holds_it():
    p = _plan(rate=20, ttft=500, itl=40)
    rec = p.recommendation
    assert rec is not None and rec.meets_slo
    perf = rec.shape.performance
    assert perf.ttft_ms <= 500 and perf.itl_ms <= 40
    assert perf.running <= perf.kv_limited_concurrency
    assert rec.usd_per_month == pytest.approx(rec.usd_per_hour * 730)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(st.floats(1, 60))
def test_higher_rate_never_costs_less(rate):
    a, b = _plan(rate=rate, ttft=800, itl=60), _plan(rate=rate * 2, ttft=800, itl=60)
    if a.recommendation and b.recommendation:
        assert b.recommendation.usd_per_hour >= a.recommendation.usd_per_hour - 1e-9


@settings(max_examples=6, deadline=None, derandomize=True)
@given(st.floats(15, 100))
def test_stricter_slo_never_costs_less(itl):
    loose, strict = _plan(rate=10, itl=itl), _plan(rate=10, itl=itl * 0.5)
    if loose.recommendation and strict.recommendation:
        assert strict.recommendation.usd_per_hour >= loose.recommendation.usd_per_hour - 1e-9
    if loose.recommendation is None:
        assert strict.recommendation is None


def test_what_would_is_replanned_when_nothing_meets():
    from pricing.catalog import load_catalog
    from pricing.serving import Slo, plan_serving
    w = Workload(1000, 200, request_rate=1)
    p = plan_serving(resolve("llama3-70b"), load_catalog(), EngineSettings(), None, w, Slo(itl_ms=1), platform="ec2")
    assert p.recommendation is None
    assert {x.change.split()[0] for x in p.what_would} >= {"--quantization", "--kv-cache-dtype"}


# ---------------------------------------------------------------- the CLI contract


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=120)


def test_cli_json_keys_of_the_interface():
    r = _cli("llama3.1-8b", "--mode", "inference", "--engine", "vllm", "--gpu", "H100", "--request-rate", "5",
             "--max-model-len", "8192", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    s = d["serving"]
    for key in ("engine", "engine_version", "tensor_parallel_size", "pipeline_parallel_size", "per_gpu",
                "kv_cache_tokens", "max_model_len", "max_concurrency", "fits", "estimated_max_model_len",
                "performance"):
        assert key in s
    assert set(s["per_gpu"]) == {"weights_bytes", "activation_peak_bytes", "non_torch_bytes", "cudagraph_bytes",
                                 "kv_cache_bytes"}
    assert set(s["performance"]) >= {"concurrency", "output_tokens_per_second", "requests_per_second", "ttft_ms",
                                     "ttft_p99_ms", "itl_ms", "e2e_ms"}
    assert set(d["recommendation"]) >= {"replicas", "tensor_parallel_size", "usd_per_million_output_tokens",
                                        "usd_per_month", "meets_slo"}
    assert "vllm serve meta-llama/Llama-3.1-8B" in d["vllm"]["command"]


@pytest.mark.parametrize("flags, message", [
    (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--concurrency", "0"], "--concurrency"),
    (["--request-rate", "nan"], "--request-rate"),
    (["--quantization", "foo"], "--quantization"),
    (["--engine-version", "0.1.0"], "--engine-version"),
    (["--kv-cache-dtype", "int4"], "--kv-cache-dtype"),
    (["--max-num-seqs", "0"], "--max-num-seqs"),
    (["--ttft-ms", "-1"], "--ttft-ms"),
    (["--seq-len", "512"], "--seq-len"),
])
def test_cli_bad_serving_input_is_one_line(flags, message):
    r = _cli("llama3.1-8b", "--mode", "inference", "--engine", "vllm", "--gpu", "H100", *flags)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_serving_flags_without_engine_refused():
    r = _cli("llama3.1-8b", "--mode", "inference", "--request-rate", "5")
    assert r.returncode == 2 and "--engine vllm" in r.stderr


def test_serving_plan_never_imports_torch():
    code = ("import sys; from planner.cli import main; "
            "main(['llama3.1-8b','--mode','inference','--engine','vllm','--request-rate','5','--json']); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_accuracy_serving_doc_is_current():
    """docs/accuracy-serving.md is generated by scripts/serving_accuracy.py (rerun it after a model change)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "scripts" / "serving_accuracy.py"), "--check"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_engine_vllm_implies_inference_mode():
    r = _cli("qwen2.5-7b", "--engine", "vllm", "--gpu", "L4", "--max-model-len", "8192", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serving"]["fits"] is True
    r = _cli("qwen2.5-7b", "--mode", "lora", "--engine", "vllm", "--gpu", "L4")
    assert r.returncode == 2 and "--mode inference" in r.stderr


def test_gemma3_groups_and_concurrency_per_group():
    """Gemma-3-27B: 52 sliding + 10 full layers -> groups of 10: 6 sliding groups + 1 full (padding 8 layers);
    a request needs one layer's pages per group (get_max_concurrency_for_kv_cache_config)."""
    m = engine_memory(resolve("gemma3-27b"), H100, EngineSettings(max_model_len=32768))
    assert (m.kv_groups, m.layers_per_group) == (7, 10)
    sliding = math.ceil(min(1024 - 1 + m.max_num_batched_tokens, 32768) / 16) + 1
    assert m.blocks_per_request == 6 * sliding + 32768 // 16
    assert m.kv_cache_tokens == m.num_blocks // 7 * 16


def test_currency_converts_the_serving_price():
    r = _cli("llama3.1-8b", "--engine", "vllm", "--request-rate", "2", "--max-model-len", "8192",
             "--currency", "INR", "--usd-rate", "88.5", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    rec = d["recommendation"]
    assert set(rec) >= {"replicas", "tensor_parallel_size", "usd_per_million_output_tokens", "usd_per_month",
                        "meets_slo", "instance_type", "region", "platform"}
    assert d["serving"]["performance"]["requests_per_second"] == pytest.approx(2 / rec["replicas"], rel=1e-3)
    assert rec["currency"]["per_month"] == pytest.approx(rec["usd_per_month"] * 88.5, rel=1e-3)


def test_published_quantization_config_is_read_for_shipped_models():
    """openai/gpt-oss-20b's Hub config declares mxfp4; the shipped copy omits it, vLLM would still read it."""
    r = _cli("gpt-oss-20b", "--engine", "vllm", "--gpu", "H100", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)["serving"]
    assert s["details"]["quantization"]["name"] == "mxfp4"
    assert s["per_gpu"]["weights_bytes"] < 14 * GIB


def test_what_would_on_own_gpus_is_replanned():
    r = _cli("llama3.1-8b", "--engine", "vllm", "--gpu", "L4", "--itl-ms", "40", "--concurrency", "4", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["recommendation"]["meets_slo"] is False
    ww = {x["change"]: x for x in d["what_would"]}
    fp8 = next(v for k, v in ww.items() if k.startswith("--quantization fp8"))
    assert fp8["fits"] and fp8["meets_slo"] and fp8["performance"]["itl_ms"] <= 40


@pytest.mark.parametrize("flag", [["--platform", "ec2"], ["--region", "us-west-2"], ["--max-gpus", "2"]])
def test_cloud_flags_with_own_gpus_refused(flag):
    r = _cli("llama3.1-8b", "--engine", "vllm", "--gpu", "L4", "--max-model-len", "4096", *flag)
    assert r.returncode == 2 and flag[0] in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sampler_peak_from_0_11_is_the_measured_one():
    """llm-d-benchmark's vLLM 0.11.0 H100 log for Llama-3.1-8B quotes a 4.76 GiB profile peak (the dummy
    sampler on 1024 x 128,256 logits); before 0.11.0 the 10-byte assumption stands."""
    spec = resolve("llama3.1-8b")
    new = engine_memory(spec, H100, EngineSettings(version="0.11.0", max_model_len=16000))
    old = engine_memory(spec, H100, EngineSettings(version="0.10.0", max_model_len=16000))
    assert new.activation_peak_bytes / GIB == pytest.approx(4.76, rel=0.03)
    assert old.activation_peak_bytes < new.activation_peak_bytes / 3
