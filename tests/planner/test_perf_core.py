"""The GPU table (planner.hardware) and the roofline core (planner.perf): exact FLOPs/bytes, hand-computed
roofline times, memory-bound decode bounded by the weights' read time, and a light import."""
import csv
import subprocess
import sys

import pytest

from planner import hardware, perf
from planner.perf.roofline import efficiency

DIMS = perf.ModelDims(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336, vocab=128256)


def test_every_gpu_and_link_row_has_source_and_date():
    for name in ("gpus.csv", "links.csv", "efficiency.csv"):
        rows = list(csv.DictReader(open(hardware.DATA_DIR / name)))
        assert rows
        assert all(r["source"].strip() for r in rows), name
    for g in hardware.load_gpus():
        assert g.as_of and g.generation in ("turing", "volta", "ampere", "ada", "hopper", "blackwell"), g


def test_gpu_facts_and_precisions():
    h100 = hardware.gpu("H100")
    assert (h100.tflops("bf16"), h100.tflops("fp8"), h100.mem_bandwidth_gb_s, h100.memory_mib) == (989, 1979, 3350, 81559)
    assert hardware.gpu("T4").tflops("bf16") == 65  # no bf16 on Turing: the fp16 rate
    assert hardware.gpu("B200").tflops("fp4") == 9000
    assert hardware.gpu("RTX A5000").memory_mib == 24564 and hardware.gpu("RTX A5000").tflops("bf16") is None
    assert hardware.gpu("RTX 6000 Ada").mem_bandwidth_gb_s == 960


def test_pricing_reads_the_planner_table():
    from pricing.catalog import load_catalog
    cat = load_catalog(user_dir=False)
    assert cat.gpu("H100") is hardware.gpu("H100")
    assert {g.gpu_model for g in cat.gpus} == {g.gpu_model for g in hardware.load_gpus()}


@pytest.mark.parametrize("text,n,machines,card,link", [
    ("", 8, 1, "H100", "nvswitch"), ("", 8, 1, "A100-80GB", "nvswitch"), ("", 4, 1, "L40S", "pcie"),
    ("", 1, 1, "H100", "none"), ("NVSwitch+3200Gbps EFA", 8, 2, "H100", "efa"), ("PCIe", 4, 1, "A10G", "pcie"),
    ("NVLink", 8, 1, "V100", "nvlink"), ("", 8, 1, "V100", "nvlink")])
def test_link_for(text, n, machines, card, link):
    assert hardware.link_for(text, n, machines, hardware.gpu(card)) == link


def test_link_bandwidth():
    bw, _ = hardware.link_bandwidth("nvswitch", hardware.gpu("H100"))
    assert bw == pytest.approx(900 / 2 * 0.8)
    bw, _ = hardware.link_bandwidth("efa", hardware.gpu("H100"), "NVSwitch+3200Gbps EFA", 8)
    assert bw == pytest.approx(3200 / 8 * 0.7)


def test_linear_and_attention_counts():
    op = perf.linear("x", 10, 20, 30)
    assert op.flops == 2 * 10 * 20 * 30 and op.bytes == 20 * 30 * 2 + 10 * 50 * 2 and op.m == 10
    assert perf.attention_pairs(4, 4) == 4 + 3 + 2 + 1
    assert perf.attention_pairs(1, 100) == 100  # decode: one query sees every key
    assert perf.attention_pairs(3, 10) == 10 + 9 + 8
    assert perf.attention_pairs(100, 100, window=10) == 100 * 10
    a = perf.attention("a", 2, 8, 8, 4, 2, 16, kernel="flash")
    assert a.flops == 4 * 2 * 4 * 16 * 36
    m = perf.attention("a", 2, 8, 8, 4, 2, 16, kernel="math")
    assert m.flops == 4 * 2 * 4 * 16 * 64 and m.bytes > a.bytes
    assert perf.attention("a", 2, 8, 8, 4, 2, 16, backward=True).flops == pytest.approx(a.flops * 2.5)


def test_roofline_by_hand():
    h100 = hardware.gpu("H100")
    row = efficiency("hopper", "gemm")
    t = perf.linear_time(h100, 8192, 8192, 8192)
    fill = 8192 / (8192 + row.m_half)
    assert t == pytest.approx(2 * 8192**3 / (989e12 * row.compute * fill))
    # a GEMV over one token is memory-bound: the weights' read time
    w = perf.linear_time(h100, 1, 8192, 8192)
    assert w == pytest.approx(max((8192 * 8192 * 2 + 2 * 8192 * 2) / (3350e9 * row.memory), row.launch_us * 1e-6))


def test_decode_is_bounded_by_reading_the_weights():
    weights = 8.03e9 * 2
    for name in ("H100", "A100-80GB", "L40S", "RTX 4090"):
        g = hardware.gpu(name)
        t = perf.step_time(perf.decode_ops(DIMS, 1, 1024), g).seconds
        floor = weights / (g.mem_bandwidth_gb_s * 1e9)
        assert floor < t < 2 * floor, name
    # a bigger batch never makes a decode step faster, and attention grows with the context
    g = hardware.gpu("H100")
    times = [perf.step_time(perf.decode_ops(DIMS, b, 2048), g).seconds for b in (1, 4, 16, 64, 256)]
    assert times == sorted(times)
    assert perf.step_time(perf.decode_ops(DIMS, 32, 8192), g).by_kind["attention"] > \
        perf.step_time(perf.decode_ops(DIMS, 32, 1024), g).by_kind["attention"]


def test_prefill_flops_match_2n_per_token_plus_attention():
    ops = perf.prefill_ops(DIMS, 1, 2048)
    st = perf.step_time(ops, hardware.gpu("H100"))
    layer_params = 4096 * (4096 + 2 * 1024 + 4096) + 3 * 4096 * 14336
    linear = 2 * 2048 * layer_params * 32 + 2 * 1 * 4096 * 128256
    attn = 4 * 32 * 128 * (2048 * 2049 / 2) * 32
    gemm_attn = sum(o.flops for o in ops if o.kind in ("gemm", "attention"))
    assert gemm_attn == pytest.approx(linear + attn)
    assert st.flops / st.seconds < 989e12


def test_perf_core_imports_nothing_heavy():
    code = ("import sys, planner.perf, planner.hardware; "
            "bad = [m for m in ('torch', 'transformers', 'numpy', 'pricing') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tensor_parallel_share_and_all_reduce():
    half = DIMS.sharded(2)
    assert (half.heads, half.kv_heads, half.intermediate, half.vocab, half.hidden) == (16, 4, 7168, 64128, 4096)
    g = hardware.gpu("H100")
    one = perf.step_time(perf.decode_ops(DIMS, 8, 1024), g).seconds
    two = perf.step_time(perf.decode_ops(half, 8, 1024), g).seconds
    assert one / 2 < two < one  # less to read per GPU, but not all of it halves (hidden-wide ops do not)
    bw, _ = hardware.link_bandwidth("nvswitch", g)
    ar = perf.tensor_parallel_seconds(8, 4096, 32, 2, bw)
    assert ar == pytest.approx(2 * 32 * (2 * 1 / 2 * 8 * 4096 * 2) / (bw * 1e9))
    assert perf.tensor_parallel_seconds(8, 4096, 32, 1, bw) == 0.0


def test_moe_decode_reads_only_the_experts_it_reaches():
    moe = perf.ModelDims(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336,
                         vocab=32000, experts=8, experts_per_token=2)
    g = hardware.gpu("H100")
    one = sum(o.bytes for o in perf.decode_ops(moe, 1, 512) if o.name == "down_proj")
    many = sum(o.bytes for o in perf.decode_ops(moe, 64, 512) if o.name == "down_proj")
    per_expert = 14336 * 4096 * 2 * 32
    assert one == pytest.approx(2 * per_expert, rel=0.01) and many == pytest.approx(8 * per_expert, rel=0.01)
    assert perf.step_time(perf.decode_ops(moe, 64, 512), g).seconds > perf.step_time(perf.decode_ops(moe, 1, 512), g).seconds


def test_comm_volumes_by_strategy():
    from planner.perf.comm import NF4_GATHER_BYTES, comm_bytes, comm_time
    p, t = 8_000_000_000, 40_000_000
    ring = 7 / 8
    assert comm_bytes("single-gpu", gpus=8, total_params=p, trainable_params=t, mode="lora") == 0
    assert comm_bytes("data-parallel", gpus=8, total_params=p, trainable_params=t, mode="lora") == 2 * ring * t * 2
    assert comm_bytes("data-parallel", gpus=8, total_params=p, trainable_params=t, mode="lora",
                      grad_accum=4) == 2 * ring * t * 2 / 4
    assert comm_bytes("fsdp", gpus=8, total_params=p, trainable_params=p, mode="full") == 2 * ring * p * 2 + ring * p * 2
    assert comm_bytes("fsdp-qlora", gpus=8, total_params=p, trainable_params=t, mode="qlora") == \
        2 * ring * p * NF4_GATHER_BYTES + ring * t * 2
    hidden = comm_time("fsdp", gpus=8, link_gb_s=100, total_params=p, trainable_params=p, mode="full", layers=32,
                       compute_seconds=10.0)
    assert hidden.exposed_seconds == pytest.approx(hidden.seconds / 32)  # all but one layer's worth hidden
    slow = comm_time("fsdp", gpus=8, link_gb_s=1, total_params=p, trainable_params=p, mode="full", layers=32,
                     compute_seconds=10.0)
    assert slow.exposed_seconds == pytest.approx(slow.seconds - 10.0 + slow.seconds / 32)


def test_training_step_by_method():
    from planner.perf.training import NF4_BYTES, Method, training_step_ops
    d = perf.ModelDims(hidden=1024, layers=4, heads=8, kv_heads=8, head_dim=128, intermediate=4096, vocab=1000)
    layer_params = 1024 * 1024 * 4 + 3 * 1024 * 4096
    t = 2 * 512

    def flops(ops, kind=None, name=None):
        return sum(o.flops for o in ops if (kind is None or o.kind == kind) and (name is None or name in o.name))

    full = training_step_ops(d, 2, 512, Method("full", checkpointing=False))
    lora = training_step_ops(d, 2, 512, Method("lora", checkpointing=False))
    # full: forward + input grads + weight grads of every layer linear = 3 x 2 T N_layer
    layer_gemm = sum(o.flops for o in full if o.kind == "gemm" and "lm_head" not in o.name)
    assert layer_gemm == pytest.approx(3 * 2 * t * layer_params * 4)
    assert not any("wgrad" in o.name and "lora" not in o.name for o in lora)  # frozen base: no weight grads
    base = sum(o.flops for o in lora if o.kind == "gemm" and "lora" not in o.name and "lm_head" not in o.name)
    assert base == pytest.approx(2 * 2 * t * layer_params * 4)  # forward + input grads only
    ck = training_step_ops(d, 2, 512, Method("lora", checkpointing=True))
    assert flops(ck, name="_recompute") == pytest.approx(
        sum(o.flops for o in lora if not o.name.endswith("_bwd") and o.kind in ("gemm", "attention", "elementwise")
            and "lora" not in o.name and "lm_head" not in o.name and "final_norm" not in o.name
            and "cross_entropy" not in o.name))
    q = training_step_ops(d, 2, 512, Method("qlora", checkpointing=True))
    dq = sum(o.bytes for o in q if o.kind == "dequant")
    assert dq == pytest.approx(layer_params * 4 * (NF4_BYTES + 2) * 3)  # forward, recompute, backward


def test_dataset_speed_padding_packing_and_underfed_steps():
    """A skewed length mix (many short records, a few long): padding waste without packing, packing runs
    full-length steps, and a batch of one short record is an underfed step (slower per token)."""
    from planner.perf.training import Method, _step, dataset_speed
    g = hardware.gpu("H100")
    m = Method("qlora")
    lengths = ([100] * 9 + [2000]) * 10  # a long record every tenth: most batches of 4 pad to 2001
    plain = dataset_speed(DIMS, m, g, lengths=lengths, seq_len=2048, batch=4)
    with_eos = [n + 1 for n in lengths]
    padded = sum(len(with_eos[i:i + 4]) * max(with_eos[i:i + 4]) for i in range(0, 100, 4))
    assert plain.padded_tokens == padded
    packed = dataset_speed(DIMS, m, g, lengths=lengths, seq_len=2048, batch=4, packing=True)
    full = 4 * 2048 / _step(DIMS, 4, 2048, m, g).seconds
    assert plain.real_tokens == packed.real_tokens == 90 * 101 + 10 * 2001
    assert plain.padding_fraction > 0.5 and packed.padding_fraction < 4 * 2048 / packed.padded_tokens
    assert plain.tokens_per_second < packed.tokens_per_second <= full * 1.0001
    one = dataset_speed(DIMS, m, g, lengths=[100] * 50, seq_len=2048, batch=1)
    assert one.padding_fraction == 0 and one.tokens_per_second < 0.5 * full  # short steps leave the GPU underfed
    truncated = dataset_speed(DIMS, m, g, lengths=[10_000], seq_len=2048, batch=1)
    assert truncated.real_tokens == 2048


def test_non_gated_mlp_and_no_rotary_against_a_hand_count():
    """MPT-style layers (GELU MLP x4, ALiBi): q, k, v, o and up/down only, 24 d^2 GEMM FLOPs per token
    forward (2 x (4 d^2 + 8 d^2)), no rotary pass, and one GELU kernel over the MLP width."""
    d = 1024
    dims = perf.ModelDims(hidden=d, layers=2, heads=8, kv_heads=8, head_dim=128, intermediate=4 * d, vocab=1000,
                          gated_mlp=False, rotary=False)
    assert [n for n, *_ in dims.linears()] == ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    ops = perf.layer_forward_ops(dims, batch=2, q_len=64)
    t = 2 * 64
    assert sum(o.flops for o in ops if o.kind == "gemm") == 24 * d * d * t
    assert "rotary" not in {o.name for o in ops}
    act = next(o for o in ops if o.name == "act")
    assert (act.bytes, act.launches) == (t * 4 * d * 2 * 2, 1)
    assert dims.sharded(2).gated_mlp is False and dims.sharded(2).rotary is False


def test_checkpointing_every_second_layer_recomputes_half_a_forward():
    """torchtitan's selective layer AC (every second layer): recompute = 0.5 adds half of one forward's
    FLOPs, full checkpointing one whole forward (hand count against the no-checkpointing step)."""
    from planner.perf.training import Method, training_step_ops
    d = perf.ModelDims(hidden=1024, layers=4, heads=8, kv_heads=8, head_dim=128, intermediate=4096, vocab=1000)
    fwd = sum(o.flops for o in perf.layer_forward_ops(d, 2, 512)) * d.layers
    flops = {rc: sum(o.flops for o in training_step_ops(d, 2, 512, Method("full", checkpointing=rc > 0, recompute=rc or 1)))
             for rc in (0, 0.5, 1)}
    assert flops[0.5] - flops[0] == pytest.approx(0.5 * fwd)
    assert flops[1] - flops[0] == pytest.approx(fwd)
