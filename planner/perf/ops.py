"""Per-op FLOPs and bytes of a decoder transformer: the inputs of the roofline (planner.perf.roofline).

FLOPs: a GEMM of (m x k) @ (k x n) is 2mkn (Kaplan et al. 2020, "Scaling Laws", C = 2N per token
forward). Causal attention scores and the weighted sum are 2 x 2 x head_dim FLOPs per (query, key)
pair a kernel computes: a flash kernel skips the masked half (pairs = q x kv - q(q-1)/2 when the
queries are the last q of kv positions), a math/eager kernel computes the full q x kv rectangle and
writes the scores to memory (Dao et al. 2022, FlashAttention, sec. 3). Bytes are DRAM traffic: weights
read once per GEMM, activations read and written once per kernel; eager elementwise ops (RMSNorm in
fp32, rotary, SiLU x up, residual adds) count the passes transformers' modeling_llama makes, fused
ones (torch.compile, Liger, Unsloth) one read and one write.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Op:
    """One kernel (or ``launches`` identical kernels) of a step."""

    name: str
    kind: str  # gemm | attention | elementwise | dequant | optimizer | embedding
    flops: float
    bytes: float
    path: str  # efficiency row: gemm | attn-flash | attn-math | elementwise | elementwise-fused | dequant-bnb | ...
    precision: str = "bf16"
    m: int = 0  # a GEMM's smallest dimension (0: not a GEMM)
    launches: int = 1

    def times(self, n: float) -> "Op":
        return Op(self.name, self.kind, self.flops * n, self.bytes * n, self.path, self.precision, self.m,
                  max(1, round(self.launches * n)))


@dataclass(frozen=True)
class ModelDims:
    """The shapes the ops need, from a ModelSpec (``from_spec``) or given directly by a caller."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # dense MLP width (or one expert's width for a MoE layer)
    vocab: int
    experts: int = 0  # routed experts per MoE layer (0: dense)
    experts_per_token: int = 0
    sliding_window: int | None = None
    gated_mlp: bool = True  # SwiGLU gate/up/down (Llama, Qwen, Mistral); False: up/down with GELU (MPT, GPT-2)
    rotary: bool = True  # rotary position embedding on q and k (False: ALiBi or learned positions, MPT)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @classmethod
    def from_spec(cls, spec: Any) -> "ModelDims":
        moe = bool(getattr(spec, "is_moe", False))
        return cls(hidden=spec.hidden_size, layers=spec.num_hidden_layers, heads=spec.num_attention_heads,
                   kv_heads=spec.num_key_value_heads, head_dim=spec.head_dim,
                   intermediate=spec.moe_intermediate_size if moe else spec.intermediate_size,
                   vocab=spec.vocab_size, experts=spec.num_local_experts if moe else 0,
                   experts_per_token=spec.num_experts_per_tok if moe else 0,
                   sliding_window=getattr(spec, "sliding_window", None))

    def sharded(self, tp: int) -> "ModelDims":
        """One GPU's share under tensor parallelism of degree ``tp`` (Megatron-LM column/row split: heads,
        KV heads (at least one each), MLP width and the vocabulary of the LM head divide; hidden does not)."""
        if tp <= 1:
            return self
        return replace(self, heads=max(1, self.heads // tp), kv_heads=max(1, self.kv_heads // tp),
                       intermediate=max(1, self.intermediate // tp), vocab=max(1, self.vocab // tp))

    def linears(self) -> tuple[tuple[str, int, int, int], ...]:
        """(name, in, out, tokens-multiplier) of one layer's linears; MoE experts see top-k tokens each."""
        mlp_mult = self.experts_per_token if self.experts else 1
        out = [("q_proj", self.hidden, self.q_dim, 1), ("k_proj", self.hidden, self.kv_dim, 1),
               ("v_proj", self.hidden, self.kv_dim, 1), ("o_proj", self.q_dim, self.hidden, 1),
               *([("gate_proj", self.hidden, self.intermediate, mlp_mult)] if self.gated_mlp else []),
               ("up_proj", self.hidden, self.intermediate, mlp_mult),
               ("down_proj", self.intermediate, self.hidden, mlp_mult)]
        if self.experts:
            out.append(("router", self.hidden, self.experts, 1))
        return tuple(out)


def linear(name: str, tokens: int, d_in: int, d_out: int, *, weight_bytes: float = 2, act_bytes: float = 2,
           precision: str = "bf16", weight_reads: float = 1.0) -> Op:
    """Y = X W: 2 T d_in d_out FLOPs; reads W and X, writes Y."""
    return Op(name, "gemm", 2.0 * tokens * d_in * d_out,
              d_in * d_out * weight_bytes * weight_reads + tokens * (d_in + d_out) * act_bytes,
              "gemm", precision, m=min(tokens, d_in, d_out))


def attention_pairs(q_len: int, kv_len: int, causal: bool = True, window: int | None = None) -> float:
    """(query, key) pairs a kernel that skips masked blocks computes; queries are the last q_len of kv_len."""
    if not causal:
        return float(q_len) * kv_len
    full = q_len * kv_len - q_len * (q_len - 1) / 2
    if window and window < kv_len:
        return min(full, float(q_len) * window)
    return full


def attention(name: str, batch: int, q_len: int, kv_len: int, heads: int, kv_heads: int, head_dim: int, *,
              kernel: str = "flash", causal: bool = True, window: int | None = None, act_bytes: float = 2,
              kv_bytes: float | None = None, backward: bool = False) -> Op:
    """softmax(Q K^T) V for ``batch`` sequences. ``kernel``: ``flash`` (FlashAttention / SDPA's flash or
    memory-efficient backends: masked blocks skipped, scores never stored) or ``math`` (eager: full score
    matrix computed and stored in fp32 for the softmax). Backward: 2.5x the forward FLOPs (the scores are
    recomputed: FlashAttention-2 paper, sec. 3.2) and twice the traffic plus the gradients."""
    kv_bytes = act_bytes if kv_bytes is None else kv_bytes
    io = batch * head_dim * (2 * q_len * heads * act_bytes + 2 * kv_len * kv_heads * kv_bytes)
    if kernel == "flash":
        pairs = attention_pairs(q_len, kv_len, causal, window)
        flops, nbytes, path = 4.0 * batch * heads * head_dim * pairs, io, "attn-flash"
    else:
        pairs = float(q_len) * kv_len
        scores = batch * heads * pairs
        flops, nbytes, path = 4.0 * batch * heads * head_dim * pairs, io + scores * (4 + 4 + 4 + 2 + 2), "attn-math"
    if backward:
        flops, nbytes = flops * 2.5, nbytes * 2 + io
    return Op(name, "attention", flops, nbytes, path, m=min(q_len * batch, kv_len), launches=1 if kernel == "flash" else 5)


def elementwise(name: str, elements: float, passes: float, *, fused: bool = False, elem_bytes: float = 2,
                launches: int = 1) -> Op:
    """A memory-bound op touching ``elements`` values ``passes`` times (reads + writes) of ``elem_bytes``."""
    return Op(name, "elementwise", elements * 2, elements * passes * elem_bytes,
              "elementwise-fused" if fused else "elementwise", launches=launches)


# Passes over the activations per token (reads + writes, in units of bf16 values) of one decoder layer's
# elementwise ops as transformers' modeling_llama runs them eagerly, and fused: RMSNorm upcasts to fp32
# (read 2B, write 4B, square, mean, rsqrt-mul, weight-mul, cast back: ~8 bf16-value passes), rotary on q and
# k (x*cos + rotate_half(x)*sin: ~6 passes), SiLU(gate) x up (~5 passes over the MLP width), two
# residual adds (3 passes each). Launch counts: the kernels each op takes eagerly.
NORM_PASSES, ROPE_PASSES, ACT_PASSES, RESIDUAL_PASSES = (8, 2), (6, 2), (5, 3), (3, 3)
NORM_LAUNCHES, ROPE_LAUNCHES, ACT_LAUNCHES = (7, 1), (8, 1), (3, 1)
GELU_PASSES, GELU_LAUNCHES = (2, 2), (1, 1)  # a non-gated MLP's GELU: one kernel, read + write


def layer_forward_ops(dims: ModelDims, batch: int, q_len: int, kv_len: int | None = None, *,
                      weight_bytes: float = 2, attn_kernel: str = "flash", fused: bool = False,
                      kv_bytes: float | None = None, precision: str = "bf16") -> tuple[Op, ...]:
    """One decoder layer's forward for ``batch`` sequences of ``q_len`` new tokens attending to ``kv_len``
    positions (kv_len = q_len for training and prefill, the context for decode)."""
    kv_len = q_len if kv_len is None else kv_len
    t = batch * q_len
    k = 1 if fused else 0
    ops = [linear(n, t * mult, d_in, d_out, weight_bytes=weight_bytes, precision=precision)
           for n, d_in, d_out, mult in dims.linears()]
    if dims.experts and dims.experts_per_token:  # routed experts: only the experts the tokens reach are read
        routed = t * dims.experts_per_token
        reached = min(dims.experts, routed)
        ops = [o for o in ops if o.name not in ("gate_proj", "up_proj", "down_proj")]
        for n, d_in, d_out, _ in dims.linears():
            if n in ("gate_proj", "up_proj", "down_proj"):
                ops.append(Op(n, "gemm", 2.0 * routed * d_in * d_out,
                              reached * d_in * d_out * weight_bytes + routed * (d_in + d_out) * 2, "gemm",
                              precision, m=max(1, min(routed // reached, d_in, d_out)), launches=reached))
    act_passes, act_launches = (ACT_PASSES, ACT_LAUNCHES) if dims.gated_mlp else (GELU_PASSES, GELU_LAUNCHES)
    ops += [attention("attention", batch, q_len, kv_len, dims.heads, dims.kv_heads, dims.head_dim,
                      kernel=attn_kernel, window=dims.sliding_window, kv_bytes=kv_bytes),
            elementwise("norms", 2 * t * dims.hidden, NORM_PASSES[k], fused=fused, launches=2 * NORM_LAUNCHES[k]),
            *([elementwise("rotary", t * (dims.q_dim + dims.kv_dim), ROPE_PASSES[k], fused=fused,
                           launches=ROPE_LAUNCHES[k])] if dims.rotary else []),
            elementwise("act", t * dims.intermediate * max(1, dims.experts_per_token), act_passes[k], fused=fused,
                        launches=act_launches[k]),
            elementwise("residual", 2 * t * dims.hidden, RESIDUAL_PASSES[k], fused=fused, launches=2)]
    return tuple(ops)


def head_ops(dims: ModelDims, tokens: int, *, logits_tokens: int | None = None, weight_bytes: float = 2,
             fused: bool = False, loss: bool = False, precision: str = "bf16") -> tuple[Op, ...]:
    """Embedding lookup, final norm, the LM head on ``logits_tokens`` (all tokens in training, one per
    sequence in serving) and, for training, the cross-entropy over the vocabulary in fp32 (eager: upcast,
    log-softmax, gather: ~4 fp32 passes; fused/chunked (Liger, Unsloth): ~1)."""
    lt = tokens if logits_tokens is None else logits_tokens
    ops = [Op("embedding", "embedding", 0.0, tokens * dims.hidden * 2 * 2, "embedding"),
           elementwise("final_norm", tokens * dims.hidden, NORM_PASSES[1 if fused else 0], fused=fused),
           linear("lm_head", lt, dims.hidden, dims.vocab, weight_bytes=weight_bytes, precision=precision)]
    if loss:
        ops.append(elementwise("cross_entropy", lt * dims.vocab, 1 if fused else 4, fused=fused, elem_bytes=4,
                               launches=1 if fused else 5))
    return tuple(ops)


def prefill_ops(dims: ModelDims, batch: int, prompt_len: int, *, weight_bytes: float = 2,
                attn_kernel: str = "flash", fused: bool = True, precision: str = "bf16") -> tuple[Op, ...]:
    """A serving prefill step: ``batch`` prompts of ``prompt_len`` tokens, logits for the last token each."""
    layer = layer_forward_ops(dims, batch, prompt_len, weight_bytes=weight_bytes, attn_kernel=attn_kernel,
                              fused=fused, precision=precision)
    return tuple(o.times(dims.layers) for o in layer) + head_ops(
        dims, batch * prompt_len, logits_tokens=batch, weight_bytes=weight_bytes, fused=fused, precision=precision)


def decode_ops(dims: ModelDims, batch: int, context_len: int, *, weight_bytes: float = 2, kv_bytes: float = 2,
               fused: bool = True, precision: str = "bf16") -> tuple[Op, ...]:
    """A serving decode step: one new token for each of ``batch`` sequences with ``context_len`` cached
    positions (memory-bound: the weights and the KV cache are read once per step)."""
    layer = layer_forward_ops(dims, batch, 1, context_len, weight_bytes=weight_bytes, attn_kernel="flash",
                              fused=fused, kv_bytes=kv_bytes, precision=precision)
    return tuple(o.times(dims.layers) for o in layer) + head_ops(
        dims, batch, logits_tokens=batch, weight_bytes=weight_bytes, fused=fused, precision=precision)
