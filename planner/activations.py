"""Activation memory: what autograd keeps per token, per layer, in each training recipe, and
what the prefill of an inference holds at its peak.

Every figure is bytes per token (multiply by batch x sequence). The inventory follows the
tensors that PyTorch autograd saves for the ops in transformers' decoder layers
(``modeling_llama.py`` and relatives) under each recipe; ``docs/memory-model.md`` derives each
line. The three recipes differ in dtypes:

- ``lora`` / ``prompt-tuning``: bf16 frozen base, fp32 adapters (PEFT autocasts them), residual
  stream bf16, attention through SDPA's flash kernel (bf16, causal, no mask).
- ``qlora``: ``prepare_model_for_kbit_training`` makes embeddings and norms fp32, so the residual
  stream is fp32; bitsandbytes casts each 4-bit layer's output back to its fp32 input dtype, so
  q/k/v are fp32 and SDPA falls back to its math kernel (flash needs 16-bit), which materialises
  the attention probabilities (4 B x heads x seq per token).
- ``full``: fp32 master weights, forward under bf16 autocast; the embedding output (fp32) keeps
  the residual stream fp32, linears save a bf16 copy of their input and of their weight.
"""
from __future__ import annotations

from dataclasses import dataclass

from .job import Job
from .spec import ModelSpec
from .params import is_moe_layer
from .weights import lora_targets


@dataclass(frozen=True)
class Recipe:
    """Dtypes (bytes) that decide activation sizes."""

    residual: int       # residual stream / norm outputs
    compute: int        # linear outputs, attention inputs
    attention: str      # "flash" (no seq x seq tensor), "math" (fp32 probabilities saved), "eager"
    lora: bool
    base_trainable: bool


def recipe(spec: ModelSpec, job: Job) -> Recipe:
    c = 4 if job.compute_dtype == "fp32" else 2
    # Gemma 2 prefers eager; gpt-oss has no SDPA path (its attention sinks: _supports_sdpa = False)
    eager = job.attention == "eager" or spec.traits.eager_attention
    gqa = spec.num_key_value_heads < spec.num_attention_heads
    # fp32 q/k/v: flash is out; the memory-efficient kernel takes fp32 but not enable_gqa, so GQA
    # models fall back to the math kernel.
    fp32_sdpa = "math" if gqa else "efficient"
    if job.kbit_upcast:
        return Recipe(residual=4, compute=4, attention="eager" if eager else fp32_sdpa, lora=True, base_trainable=False)
    if job.kind.quantized_base:  # pure bf16 (FSDP-QLoRA): a 4-bit base whose everything else is 16-bit
        return Recipe(residual=2, compute=2, attention="eager" if eager else "flash", lora=True, base_trainable=False)
    if job.kind.trains_base:
        mixed = job.precision == "fp32" and c == 2
        r = 4 if job.precision == "fp32" else 2
        return Recipe(residual=r, compute=c if mixed else r, attention="eager" if eager else "flash",
                      lora=False, base_trainable=True)
    b = 4 if job.precision == "fp32" else 2
    attn = "eager" if eager else ("flash" if b == 2 else fp32_sdpa)
    return Recipe(residual=b, compute=b, attention=attn, lora=job.kind.lora and not job.kind.quantized_base, base_trainable=False)


def _norms_per_layer(spec: ModelSpec) -> int:
    return 4 if spec.traits.sandwich_norms else 2


def qk_norm_width(spec: ModelSpec) -> int:
    """Features per token that q/k RMSNorms see (0 where there are none).

    Qwen3, Qwen3-MoE and Gemma 3 normalise each head of q and k (``q_norm``/``k_norm`` over
    head_dim), OLMo-2 the whole q and k projections; either way the norms read q_dim + kv_dim
    values per token and, like every RMSNorm, save their fp32 upcast input for backward."""
    if spec.traits.qk_norm == "l2_rope":
        # Llama4TextL2Norm on q and k of the RoPE layers only (use_qk_norm; no_rope_layers marks NoPE
        # layers with 0, by default every no_rope_layer_interval-th): averaged over the layers
        if spec.get("use_qk_norm") is False:
            return 0
        L = spec.num_hidden_layers
        flags = spec.get("no_rope_layers") or [int((n + 1) % int(spec.get("no_rope_layer_interval") or 4) != 0)
                                                for n in range(L)]
        return (spec.q_dim + spec.kv_dim) * sum(1 for f in flags[:L] if f) // L
    return spec.q_dim + spec.kv_dim if spec.traits.qk_norm else 0


def mla_norm_width(spec: ModelSpec) -> int:
    """Features per token that multi-head latent attention's own RMSNorms see (0 elsewhere):
    ``q_a_layernorm`` over the compressed query (q_lora_rank; absent in V2-Lite) and
    ``kv_a_layernorm`` over the compressed KV (kv_lora_rank), each saving its fp32 upcast input
    (modeling_deepseek_v3.DeepseekV3Attention; seen on real PEFT steps)."""
    if not spec.traits.mla:
        return 0
    return int(spec.get("q_lora_rank") or 0) + int(spec.get("kv_lora_rank") or 0)


def moe_widths(spec: ModelSpec) -> tuple[int, int]:
    """(intermediate features a token passes through in routed experts, in shared experts/dense MLP).

    A routed token visits top-k of E experts (``num_experts_per_tok``), each ``moe_intermediate_size``
    wide; DeepSeek adds ``n_shared_experts`` x moe_intermediate_size and Llama 4 one shared expert of
    intermediate_size that every token passes (modeling_deepseek_v3.DeepseekV3MoE, modeling_llama4.Llama4TextMoe)."""
    if not spec.is_moe:
        return 0, spec.intermediate_size
    routed = spec.num_experts_per_tok * spec.moe_intermediate_size
    if spec.traits.shared_experts == "n_shared":
        return routed, spec.moe_intermediate_size * int(spec.get("n_shared_experts") or 0)
    if spec.traits.shared_experts == "one":
        return routed, spec.intermediate_size
    return routed, 0


def attention_saved(spec: ModelSpec, rec: Recipe, seq: int) -> int:
    """Bytes per token saved by the attention kernel for backward (post-rotary q, k, v onward)."""
    q, kv, nh, c = spec.q_dim, spec.kv_dim, spec.num_attention_heads, rec.compute
    if rec.attention in ("flash", "efficient"):
        # q, k, v (GQA native), output, log-sum-exp in fp32 (PyTorch flash / mem-efficient backward).
        return c * (2 * q + 2 * kv) + 4 * nh
    window = min(seq, spec.sliding_window) if spec.sliding_window else seq
    if rec.attention == "math":
        # math kernel with enable_gqa repeats k and v: saves q*s, (k*s)^T, v, probabilities (fp32 input => fp32).
        return c * 3 * q + c * nh * seq
    # eager (modeling_llama.eager_attention_forward): q, repeated k, v; softmax in fp32 (saved)
    # and its cast back (saved by the matmul); gemma2's logit soft-capping saves a tanh output.
    if spec.traits.attention_sinks:
        # the softmax runs in the logits' own dtype over seq + 1 (the sink) and saves its output, which
        # the matmul with v saves again as a view; the max subtracted first saves its int64 indices
        # (modeling_gpt_oss.eager_attention_forward; seen on real PEFT steps)
        return c * 3 * q + c * nh * (seq + 1) + 8 * nh
    softcap = c * nh * seq if spec.traits.softcap else 0
    del window  # the scores are seq x seq even where a sliding mask applies
    cast_back = c if c != 4 else 0  # softmax(dtype=fp32).to(q.dtype) is a no-op for fp32 q
    return c * 3 * q + (4 + cast_back) * nh * seq + softcap


def layer_saved(spec: ModelSpec, job: Job, seq: int, idx: int | None = None) -> int:
    """Bytes per token that decoder layer ``idx`` saves for backward (no checkpointing; default: a
    routed layer where the model has any). Dense layers of an MoE model (DeepSeek's first layers,
    Llama 4's interleaved ones, Qwen3-MoE's ``mlp_only_layers``) save a dense MLP's tensors."""
    rec = recipe(spec, job)
    h, q, i, r, c = spec.hidden_size, spec.q_dim, spec.intermediate_size, rec.residual, rec.compute
    routed_layer = spec.is_moe and (idx is None or is_moe_layer(spec, idx))
    if spec.is_moe and not routed_layer and spec.traits.all_experts:
        i = int(spec.get("intermediate_size_mlp") or i)
    # RMSNorm upcasts to fp32 and saves that input; with a trainable weight it also saves its output.
    norms = _norms_per_layer(spec) * (4 * h + (r * h if rec.base_trainable else 0))
    qk = qk_norm_width(spec) + mla_norm_width(spec)
    norms += 4 * qk + (c * qk if rec.base_trainable else 0)
    attn = attention_saved(spec, rec, seq)
    fused = spec.traits.fused_projections
    # MLP: act(gate) saves gate; gate*up saves act and up (phi3: the fused gate_up output is kept whole).
    mlp = 3 * c * i
    if routed_layer:
        mlp = llama4_mlp_saved(spec, job, c) if spec.traits.all_experts else moe_saved(spec, job, c)
    linears = 0
    if rec.base_trainable:
        # each linear saves its input. Under autocast (fp32 residual, bf16 compute) q, k, v and gate/up
        # each cast their own bf16 copy of the norm output; without autocast they share one tensor.
        autocast = rec.residual != rec.compute
        n_in_h = (3 if autocast and not fused else 1) + (2 if autocast and not fused else 1)
        linears = c * (n_in_h * h + q + (sum(moe_widths(spec)) if routed_layer else i))
    if rec.lora:
        linears = lora_saved(spec, job, rec, idx)
    return norms + attn + mlp + linears


def moe_saved(spec: ModelSpec, job: Job, c: int) -> int:
    """Bytes per token that an MoE layer saves for backward under transformers 5's grouped_mm
    experts kernel (integrations/moe.py; seen on real PEFT steps, tests/planner/test_mechanisms_cpu.py).

    Per routed slot (k per token): the gate_up output (saved, as views, by act(gate) and the
    product), act(gate), and the down output (saved by the routing-weight multiply): c x (h + 3i).
    When the expert weights take gradients (full fine-tuning, or LoRA on the fused experts) the
    grouped matmuls also save their inputs: the gathered hidden state and the product (c x (h + i)).
    gpt-oss's clamped SwiGLU (``GptOssExperts._apply_gate``) saves the clamped gate, its sigmoid, the
    GLU and up + 1 instead of act(gate) (4i rather than i). Per slot also the sort permutation, the
    gather index and the inverse permutation (int64 each) and the slot's weight; per token the
    router's fp32 softmax and the top-k ids. DeepSeek's shared experts save what a dense MLP saves
    (3 intermediate tensors), and its fp32 router saves an fp32 copy of its input.
    """
    k, h, i, experts = spec.num_experts_per_tok, spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts
    _, shared = moe_widths(spec)
    gate = 4 * i if spec.traits.clamped_swiglu else i
    per_slot = c * (h + 2 * i + gate) + (c * (h + i) if experts_trainable(spec, job) else 0)
    # DeepSeek's router multiplies an fp32 copy of the hidden state (DeepseekV3TopkRouter), saved
    # when its weight takes gradients (full fine-tuning, or LoRA on ``gate``)
    router = 4 * h if spec.traits.fp32_router and router_trainable(spec, job) else 0
    return k * (per_slot + 24 + c) + 4 * experts + 8 * k + 3 * c * shared + router


def router_trainable(spec: ModelSpec, job: Job) -> bool:
    """Whether the MoE router's weight takes gradients (full fine-tuning, or LoRA on ``gate``)."""
    if job.kind.trains_base:
        return True
    return job.kind.lora and any(n == "gate" for n, _, _ in lora_targets(spec, job))


def llama4_mlp_saved(spec: ModelSpec, job: Job, c: int) -> int:
    """Bytes per token that a Llama 4 MoE layer saves for backward.

    Every token passes every expert (see ``llama4_moe_prefill``): per expert the scaled input copy
    (saved by the score multiply), the gate_up output and act(gate), c x (h + 3i), plus the inputs
    of the two bmm when the experts take gradients, c x (h + i); the shared expert saves what a
    dense MLP saves (3 x intermediate_size)."""
    experts, h, i = spec.num_local_experts, spec.hidden_size, spec.intermediate_size
    return experts * c * (h + 3 * i + ((h + i) if experts_trainable(spec, job) else 0)) + 3 * c * i


def experts_trainable(spec: ModelSpec, job: Job) -> bool:
    """Whether the fused expert weights take gradients: full fine-tuning, or LoRA on them (PEFT's
    ParamWrapper, where ``weights.lora_targets`` lists ``experts.*``)."""
    if job.kind.trains_base:
        return True
    if not job.kind.lora:
        return False
    return any(n.startswith("experts.") for n, _, _ in lora_targets(spec, job))


def lora_expert_weights(spec: ModelSpec, job: Job) -> int:
    """Bytes per MoE layer that LoRA on fused experts keeps for backward (0 without it).

    PEFT's ParamWrapper (peft/tuners/lora/layer.py) parametrizes the 3D expert weights: each forward
    casts the factors to the weight dtype and folds them in with one ``baddbmm``, so the merged
    gate_up and down stacks (E x 3 x h x i) and the cast factors (ranks 2r and r) are new tensors
    that the grouped matmul saves; the router (a parameter, not an ``nn.Linear``) gets W + BA the
    same way. Seen on real PEFT steps on tiny Qwen3-MoE and Mixtral (tests/planner/test_mechanisms_cpu.py).
    """
    if not (spec.is_moe and job.kind.lora):
        return 0
    names = {n for n, _, _ in lora_targets(spec, job)}
    h, i, experts, r = spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts, job.lora_r
    # QLoRA: prepare_model_for_kbit_training upcasts the non-quantized expert stacks to fp32
    w = 4 if job.kbit_upcast or job.precision == "fp32" else 2
    total = 0
    if "experts.gate_up_proj" in names:
        total += w * experts * (2 * i * h + 2 * r * (h + 2 * i))
    if "experts.down_proj" in names:
        total += w * experts * (h * i + r * (i + h))
    if "gate" in names:
        total += w * experts * h
    return total


# Linears fed by the same tensor (PEFT without dropout saves that one tensor once when it is fp32).
_SHARED_INPUT = {"q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "qkv_proj": "attn_in",
                 "gate_proj": "mlp_in", "up_proj": "mlp_in", "gate_up_proj": "mlp_in", "w1": "mlp_in", "w3": "mlp_in"}


def lora_saved(spec: ModelSpec, job: Job, rec: Recipe, idx: int | None = None) -> int:
    """Bytes per token that PEFT LoRA modules save: lora_A keeps its fp32 input.

    With dropout, each module's dropout output (4 B) and mask (1 B) are its own. Without dropout
    lora_A saves the fp32 cast of the input: a fresh copy per module when the input is 16-bit, the
    input itself (shared by q/k/v, and by gate/up) when it already is fp32 (QLoRA's residual stream).
    Pure-bf16 QLoRA's adapters are bf16 themselves: no cast, lora_A saves the bf16 input (shared the
    same way), or with dropout each module's bf16 dropout output and its mask (3 B).
    """
    # LoRA on fused experts (PEFT ParamWrapper) sees routed tokens only; not modelled here (docs/memory-model.md)
    targets = tuple(t for t in lora_targets(spec, job, idx) if not t[0].startswith("experts.") and t[0] != "gate")
    adapter = 2 if job.pure_bf16_qlora else 4
    if job.lora_dropout > 0:
        return sum((adapter + 1) * n_in for _, n_in, _ in targets)
    if rec.residual != adapter:
        return sum(4 * n_in for _, n_in, _ in targets)
    seen: dict[str, int] = {}
    for name, n_in, _ in targets:
        seen[_SHARED_INPUT.get(name, name)] = adapter * n_in
    return sum(seen.values())


def released_before_peak(spec: ModelSpec, job: Job) -> int:
    """Bytes per token of the recomputed layer already freed when its backward peaks.

    Without dropout the peak comes after lora_A's backward has released the down projection's
    fp32 input; with dropout the dropout backward itself is the peak and that input is still alive
    (both seen on real PEFT steps, tests/planner/test_mechanisms_cpu.py)."""
    if not job.kind.lora or job.lora_dropout > 0:
        return 0
    adapter = 2 if job.pure_bf16_qlora else 4
    return sum(adapter * n_in for name, n_in, _ in lora_targets(spec, job) if name in ("down_proj", "w2"))


def layer_input(spec: ModelSpec, job: Job) -> int:
    """Bytes per token of a layer's input: what non-reentrant checkpointing keeps per layer."""
    return recipe(spec, job).residual * spec.hidden_size


def final_norm_saved(spec: ModelSpec, job: Job) -> int:
    rec = recipe(spec, job)
    h = spec.hidden_size
    extra = rec.residual * h if rec.base_trainable else 0
    # full + autocast: lm_head saves its bf16 input copy
    head_in = rec.compute * h if rec.base_trainable else 0
    return 4 * h + extra + head_in


def backward_transient(spec: ModelSpec, job: Job) -> int:
    """Bytes per token of gradient buffers alive at the worst moment of one layer's backward:
    the down projection, where the residual gradient (twice: the incoming one and the one kept
    for the skip connection) and the gradients of the MLP product coexist with the layer's saved
    tensors. Counted on real PEFT steps (tests/planner/test_mechanisms_cpu.py):
    - lora (bf16 base): base-path gradient (16-bit) + fp32 adapter-path gradients (8 B x I);
    - qlora without dropout: the 4-bit backward's gradient cast to fp32, the adapter-path gradient
      and their sum (3 x 4 B x I), after the adapter's saved input is released; with dropout the
      peak comes earlier, at the first matmul of the down projection's backward (2 x 4 B x I).
    """
    rec = recipe(spec, job)
    h, i = spec.hidden_size, spec.intermediate_size
    residual = 2 * rec.residual * h
    if job.kbit_upcast:
        return residual + (8 * i if job.lora_dropout > 0 else 12 * i)
    lora_path = (4 if job.pure_bf16_qlora else 8) * i if rec.lora else 0  # two adapter-path gradients
    return residual + rec.compute * i + lora_path


def recompute_overlap(spec: ModelSpec, job: Job) -> int:
    """Bytes per token of the recomputed layer that are the checkpointed input itself: with an
    fp32 residual stream the input RMSNorm's saved fp32 input is that tensor (no upcast copy)."""
    return 4 * spec.hidden_size if recipe(spec, job).residual == 4 else 0


def logits_bytes(spec: ModelSpec, job: Job) -> tuple[int, int]:
    """(forward, backward) bytes per token of the logits and cross-entropy loss.

    transformers' ForCausalLMLoss upcasts logits to fp32 and calls cross_entropy
    (log_softmax, saved in fp32, then nll_loss). Forward peak: 16-bit logits + fp32 copy +
    log_softmax output. Backward peak (log_softmax backward): saved output + incoming gradient +
    gradient of the input, all fp32 = 12 x vocab bytes.
    """
    v = spec.vocab_size
    rec = recipe(spec, job)
    head_dtype = 4 if (job.kbit_upcast or job.precision == "fp32" and not job.kind.trains_base) \
        else rec.compute
    fwd = (head_dtype if head_dtype != 4 else 0) * v + 4 * v + 4 * v
    bwd = 12 * v
    if spec.traits.softcap:  # final logit soft-capping: tanh output saved for backward
        fwd += head_dtype * v
        bwd += head_dtype * v
    return fwd, bwd


def prefill_peak(spec: ModelSpec, job: Job) -> int:
    """Bytes per token live at the prefill peak (the last layer's MLP) under ``torch.no_grad``.

    The embedding output (held by the model's forward), the layer input (held by the caller),
    the residual and the normed input (4 hidden vectors), plus three intermediate-size tensors
    (llama: act(gate), up, act*up; phi3's fused gate_up adds one more).
    """
    c = 4 if job.precision == "fp32" else 2
    h, i = spec.hidden_size, spec.intermediate_size
    mlp = (4 if spec.traits.fused_projections else 3) * c * i
    if spec.is_moe:
        mlp = llama4_moe_prefill(spec, c) if spec.traits.all_experts else moe_prefill(spec, c)
    # Gemma's extra norms, and Llama 4's decoder layer, which keeps the attention output in its own
    # variable (``attention_states``) through the MLP, hold a fifth hidden vector
    hidden = (5 if spec.traits.holds_attention_output else 4) * c * h
    # SDPA skips the causal mask (is_causal) but not the sliding one: a boolean batch x seq x seq mask
    # (masking_utils.sdpa_mask) lives through the forward once the prompt outgrows the window.
    eager = job.attention == "eager" or spec.traits.eager_attention
    window = spec.sliding_window
    if spec.traits.chunked_attention:
        # chunked attention on the RoPE layers is a boolean mask as well (masking_utils.chunked_causal_mask)
        window = spec.get("attention_chunk_size")
    mask = job.seq_len if window and job.seq_len > window and any(sliding_layer_flags(spec)) and not eager else 0
    if eager:
        mask = eager_held_attention(spec, job, c)
    return hidden + mlp + mask


def llama4_moe_prefill(spec: ModelSpec, c: int) -> int:
    """Bytes per token at the peak of a Llama 4 MLP under ``no_grad``: the larger of its MoE and
    its dense layers (``interleave_moe_layer_step``).

    transformers' Llama4TextMoe runs every token through every expert: ``hidden_states.repeat(E, 1)``
    scaled by the router's scores (zero for unchosen experts), then one ``bmm`` over all E experts
    (modeling_llama4.Llama4TextExperts). So it holds E copies of the scaled input (h), the gate_up
    output (2i), act(gate) and the product (i each) per token, not top-k: E x c x (h + 4i). A dense
    layer holds 3 x ``intermediate_size_mlp``. Seen on a real prefill (tests/planner/test_mechanisms_cpu.py)."""
    experts, h, i = spec.num_local_experts, spec.hidden_size, spec.intermediate_size
    moe = experts * c * (h + 4 * i)
    dense_width = int(spec.get("intermediate_size_mlp") or i)
    dense = 3 * c * dense_width if not all(is_moe_layer(spec, n) for n in range(spec.num_hidden_layers)) else 0
    return max(moe, dense)


def eager_held_attention(spec: ModelSpec, job: Job, c: int) -> int:
    """Bytes per token that eager attention leaves alive through the last layer's MLP: the decoder
    layer's ``hidden_states, _ = self.self_attn(...)`` keeps the returned attention weights in ``_``
    until the layer returns (batch x heads x seq, 16-bit; gpt-oss's are a view of the softmax over
    seq + 1 logits, the sink included: modeling_gpt_oss.eager_attention_forward), and the model's
    forward keeps its additive masks (batch x seq x seq each, 16-bit; Gemma 2 and gpt-oss build a
    full and a sliding one). Seen on a real gpt-oss prefill (tests/planner/test_mechanisms_cpu.py)."""
    seq = job.seq_len
    sinks = 1 if spec.traits.attention_sinks else 0
    masks = 2 if spec.traits.full_and_sliding_masks else 1
    return c * spec.num_attention_heads * (seq + sinks) + masks * c * seq


def moe_prefill(spec: ModelSpec, c: int) -> int:
    """Bytes per token live at the peak of an MoE layer's prefill under transformers 5's default
    experts kernel (``integrations/moe.py: grouped_mm_experts_forward``; seen on real prefills,
    tests/planner/test_mechanisms_cpu.py).

    Each token becomes k routed slots (k = num_experts_per_tok). Per slot the kernel holds its
    gathered input (h) and, at the gate, the gate_up output (2i), act(gate) and the product (i each);
    gpt-oss's clamped SwiGLU (``GptOssExperts._apply_gate``) keeps clamped gate and up, the GLU,
    up + 1 and the product instead (5i), and its expert biases are gathered per slot
    (``gate_up_proj_bias[expert_ids_g]``, 2i, alive through the gate; ``down_proj_bias[...]``, h).
    Later the down output, its router-weighted copy and that copy put back in token order (3h) sit
    beside the gathered input: the peak is the larger of h + 4i (gpt-oss: h + 9i) and 4h (5h) per slot;
    DeepSeek's fp32 routing weights make the weighted copy and its reordering fp32. Routing adds the sort's ids and permutation (int64), the histogram
    input (fp32), the inverse permutation and the slot weights (32 B a slot with fp32 weights) and,
    per token, the router logits (E x c) and the top-k ids and weights (12 B each). DeepSeek's shared
    experts run after the routed ones, beside their output (modeling_deepseek_v3.DeepseekV3MoE).
    """
    k, h, i, experts = spec.num_experts_per_tok, spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts
    bias = spec.traits.clamped_swiglu
    gate = 7 + 2 if bias else 4
    # DeepSeek routes in fp32 (DeepseekV3TopkRouter: F.linear on fp32 hidden and weight), so the
    # router-weighted down output and its reordered copy are fp32: 2h at c plus 2h at 4 B per slot
    w = 4 if spec.traits.fp32_router else c
    down = 2 * c * h + 2 * w * h + (c * h if bias else 0)
    routed = k * max(down, c * (h + gate * i)) + 32 * k + experts * w + 12 * k
    _, shared = moe_widths(spec)
    return max(routed, c * h + 3 * c * shared)


def eager_prefill_attention(spec: ModelSpec, job: Job, seq: int) -> int:
    """Bytes per token live at the softmax of eager attention during the prefill (0 for SDPA).

    Three hidden-size tensors, q and the repeated k and v, the 16-bit masked scores, their fp32
    copy for ``softmax(dtype=float32)`` and its output, and the causal masks (``batch x seq x seq``
    each; Gemma-2 keeps a sliding and a full one). Seen on real prefills (tests/planner/test_mechanisms_cpu.py).
    """
    if not (job.attention == "eager" or spec.traits.eager_attention):
        return 0
    c = 4 if job.precision == "fp32" else 2
    masks = 2 if spec.traits.full_and_sliding_masks else 1
    if spec.traits.attention_sinks:
        # the sinks join the logits (cat, seq + 1) and the max is subtracted in 16-bit before a 16-bit
        # softmax: the masked scores, the concatenation and the shifted logits live together
        # (modeling_gpt_oss.eager_attention_forward; seen on a real prefill)
        scores = 3 * c * spec.num_attention_heads * (seq + 1)
    else:
        scores = (c + 8) * spec.num_attention_heads * seq
    return 3 * c * spec.hidden_size + 3 * c * spec.q_dim + scores + masks * c * seq


def kv_cache_bytes(spec: ModelSpec, seq: int, dtype_bytes: int, *, prefill: bool = True) -> int:
    """Bytes of K and V for one sequence of ``seq`` tokens across all layers.

    At the prefill every layer holds the whole prompt: transformers' DynamicSlidingWindowLayer
    keeps ``full_key_states[:, :, -window + 1:]``, a view that keeps the full prompt's storage
    alive until the first decoded token replaces it (cache_utils.py; seen on real Gemma 3 and
    gpt-oss prefills, tests/planner/test_mechanisms_cpu.py). After that (``prefill=False``),
    sliding-window layers keep at most the window: all
    layers of Mistral and Phi-3 when a window is set, Gemma-2's and gpt-oss's alternate layers, five
    of every six in Gemma 3 (``layer_types``). DeepSeek's multi-head latent attention caches the
    compressed latent, ``kv_lora_rank + qk_rope_head_dim`` values per token and layer, not K and V
    (modeling_deepseek_v3: "cache read / write is performed while latent KV is still compressed").
    """
    per_layer_token = 2 * spec.kv_dim * dtype_bytes
    if spec.traits.mla:
        per_layer_token = (int(spec.get("kv_lora_rank")) + int(spec.get("qk_rope_head_dim"))) * dtype_bytes
    L = spec.num_hidden_layers
    if prefill or not spec.sliding_window or seq <= spec.sliding_window:
        return per_layer_token * L * seq
    sliding_layers = sum(sliding_layer_flags(spec))
    full_layers = L - sliding_layers
    return per_layer_token * (full_layers * seq + sliding_layers * spec.sliding_window)


def sliding_layer_flags(spec: ModelSpec) -> list[bool]:
    """Which layers attend within the sliding window: the config's ``layer_types`` where given,
    else each modeling file's default pattern."""
    L = spec.num_hidden_layers
    types = spec.config.get("layer_types")
    if types and len(types) == L:
        return [t == "sliding_attention" for t in types]
    if spec.traits.sliding_layout == "alternate":  # sliding on even layers (configuration_gpt_oss.py)
        return [(i + 1) % 2 == 1 for i in range(L)]
    if spec.traits.sliding_layout == "every_nth":  # configuration_gemma3.py: sliding unless (i + 1) % pattern == 0
        pattern = int(spec.get("sliding_window_pattern") or 6)
        return [bool((i + 1) % pattern) for i in range(L)]
    return [True] * L
