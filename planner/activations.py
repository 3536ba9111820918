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
    eager = job.attention == "eager" or spec.model_type == "gemma2"
    gqa = spec.num_key_value_heads < spec.num_attention_heads
    # fp32 q/k/v: flash is out; the memory-efficient kernel takes fp32 but not enable_gqa, so GQA
    # models fall back to the math kernel.
    fp32_sdpa = "math" if gqa else "efficient"
    if job.mode == "qlora":
        return Recipe(residual=4, compute=4, attention="eager" if eager else fp32_sdpa, lora=True, base_trainable=False)
    if job.mode == "full":
        mixed = job.precision == "fp32" and c == 2
        r = 4 if job.precision == "fp32" else 2
        return Recipe(residual=r, compute=c if mixed else r, attention="eager" if eager else "flash",
                      lora=False, base_trainable=True)
    b = 4 if job.precision == "fp32" else 2
    attn = "eager" if eager else ("flash" if b == 2 else fp32_sdpa)
    return Recipe(residual=b, compute=b, attention=attn, lora=job.mode == "lora", base_trainable=False)


def _norms_per_layer(spec: ModelSpec) -> int:
    return 4 if spec.model_type in ("gemma2", "gemma3_text") else 2


def qk_norm_width(spec: ModelSpec) -> int:
    """Features per token that q/k RMSNorms see (0 where there are none).

    Qwen3, Qwen3-MoE and Gemma 3 normalise each head of q and k (``q_norm``/``k_norm`` over
    head_dim), OLMo-2 the whole q and k projections; either way the norms read q_dim + kv_dim
    values per token and, like every RMSNorm, save their fp32 upcast input for backward."""
    return spec.q_dim + spec.kv_dim if spec.model_type in ("qwen3", "qwen3_moe", "gemma3_text", "olmo2") else 0


def moe_widths(spec: ModelSpec) -> tuple[int, int]:
    """(intermediate features a token passes through in routed experts, in shared experts/dense MLP).

    A routed token visits top-k of E experts (``num_experts_per_tok``), each ``moe_intermediate_size``
    wide; DeepSeek adds ``n_shared_experts`` x moe_intermediate_size and Llama 4 one shared expert of
    intermediate_size that every token passes (modeling_deepseek_v3.DeepseekV3MoE, modeling_llama4.Llama4TextMoe)."""
    if not spec.is_moe:
        return 0, spec.intermediate_size
    routed = spec.num_experts_per_tok * spec.moe_intermediate_size
    if spec.model_type in ("deepseek_v2", "deepseek_v3"):
        return routed, spec.moe_intermediate_size * int(spec.get("n_shared_experts") or 0)
    if spec.model_type == "llama4_text":
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
    softcap = c * nh * seq if spec.model_type == "gemma2" else 0
    del window  # the scores are seq x seq even where a sliding mask applies
    cast_back = c if c != 4 else 0  # softmax(dtype=fp32).to(q.dtype) is a no-op for fp32 q
    return c * 3 * q + (4 + cast_back) * nh * seq + softcap


def layer_saved(spec: ModelSpec, job: Job, seq: int) -> int:
    """Bytes per token that one decoder layer saves for backward (no checkpointing)."""
    rec = recipe(spec, job)
    h, q, i, r, c = spec.hidden_size, spec.q_dim, spec.intermediate_size, rec.residual, rec.compute
    # RMSNorm upcasts to fp32 and saves that input; with a trainable weight it also saves its output.
    norms = _norms_per_layer(spec) * (4 * h + (r * h if rec.base_trainable else 0))
    qk = qk_norm_width(spec)
    norms += 4 * qk + (c * qk if rec.base_trainable else 0)
    attn = attention_saved(spec, rec, seq)
    fused = spec.model_type == "phi3"
    # MLP: act(gate) saves gate; gate*up saves act and up (phi3: the fused gate_up output is kept whole).
    mlp = 3 * c * i
    if spec.is_moe:
        routed, shared = moe_widths(spec)
        mlp = moe_saved(spec, c) if spec.model_type != "llama4_text" else 3 * c * (routed + shared)
    linears = 0
    if rec.base_trainable:
        # each linear saves its input. Under autocast (fp32 residual, bf16 compute) q, k, v and gate/up
        # each cast their own bf16 copy of the norm output; without autocast they share one tensor.
        autocast = rec.residual != rec.compute
        n_in_h = (3 if autocast and not fused else 1) + (2 if autocast and not fused else 1)
        linears = c * (n_in_h * h + q + (sum(moe_widths(spec)) if spec.is_moe else i))
    if rec.lora:
        linears = lora_saved(spec, job, rec)
    return norms + attn + mlp + linears


def moe_saved(spec: ModelSpec, c: int) -> int:
    """Bytes per token that an MoE layer saves for backward under transformers 5's grouped_mm
    experts kernel (integrations/moe.py; seen on real PEFT steps, tests/planner/test_mechanisms_cpu.py).

    Per routed slot (k per token): the gathered input and the gate_up output (saved by the grouped
    matmul and, as a view, by act(gate)), act(gate) and the product, the down output (saved by the
    routing-weight multiply): c x (2h + 4i); the sort permutation, the gather index and the inverse
    permutation (int64 each) and the slot's weight. Per token: the router's fp32 softmax and the
    top-k ids. DeepSeek's shared experts save what a dense MLP saves (3 intermediate tensors).
    """
    k, h, i, experts = spec.num_experts_per_tok, spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts
    _, shared = moe_widths(spec)
    return k * (c * (2 * h + 4 * i) + 24 + c) + 4 * experts + 8 * k + 3 * c * shared


def lora_expert_weights(spec: ModelSpec, job: Job) -> int:
    """Bytes per MoE layer that LoRA on fused experts keeps for backward (0 without it).

    PEFT's ParamWrapper (peft/tuners/lora/layer.py) parametrizes the 3D expert weights: each forward
    casts the factors to the weight dtype and folds them in with one ``baddbmm``, so the merged
    gate_up and down stacks (E x 3 x h x i) and the cast factors (ranks 2r and r) are new tensors
    that the grouped matmul saves; the router (a parameter, not an ``nn.Linear``) gets W + BA the
    same way. Seen on real PEFT steps on tiny Qwen3-MoE and Mixtral (tests/planner/test_mechanisms_cpu.py).
    """
    if not (spec.is_moe and job.mode in ("lora", "qlora")):
        return 0
    names = {n for n, _, _ in lora_targets(spec, job)}
    h, i, experts, r = spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts, job.lora_r
    # QLoRA: prepare_model_for_kbit_training upcasts the non-quantized expert stacks to fp32
    w = 4 if job.mode == "qlora" or job.precision == "fp32" else 2
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


def lora_saved(spec: ModelSpec, job: Job, rec: Recipe) -> int:
    """Bytes per token that PEFT LoRA modules save: lora_A keeps its fp32 input.

    With dropout, each module's dropout output (4 B) and mask (1 B) are its own. Without dropout
    lora_A saves the fp32 cast of the input: a fresh copy per module when the input is 16-bit, the
    input itself (shared by q/k/v, and by gate/up) when it already is fp32 (QLoRA's residual stream).
    """
    # LoRA on fused experts (PEFT ParamWrapper) sees routed tokens only; not modelled here (docs/memory-model.md)
    targets = tuple(t for t in lora_targets(spec, job) if not t[0].startswith("experts.") and t[0] != "gate")
    if job.lora_dropout > 0:
        return sum(5 * n_in for _, n_in, _ in targets)
    if rec.residual != 4:
        return sum(4 * n_in for _, n_in, _ in targets)
    seen: dict[str, int] = {}
    for name, n_in, _ in targets:
        seen[_SHARED_INPUT.get(name, name)] = 4 * n_in
    return sum(seen.values())


def released_before_peak(spec: ModelSpec, job: Job) -> int:
    """Bytes per token of the recomputed layer already freed when its backward peaks.

    Without dropout the peak comes after lora_A's backward has released the down projection's
    fp32 input; with dropout the dropout backward itself is the peak and that input is still alive
    (both seen on real PEFT steps, tests/planner/test_mechanisms_cpu.py)."""
    if job.mode not in ("lora", "qlora") or job.lora_dropout > 0:
        return 0
    return sum(4 * n_in for name, n_in, _ in lora_targets(spec, job) if name in ("down_proj", "w2"))


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
    if job.mode == "qlora":
        return residual + (8 * i if job.lora_dropout > 0 else 12 * i)
    lora_path = 8 * i if rec.lora else 0
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
    head_dtype = 4 if (job.mode == "qlora" or job.precision == "fp32" and job.mode != "full") else rec.compute
    fwd = (head_dtype if head_dtype != 4 else 0) * v + 4 * v + 4 * v
    bwd = 12 * v
    if spec.model_type == "gemma2":  # final logit soft-capping: tanh output saved for backward
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
    mlp = (4 if spec.model_type == "phi3" else 3) * c * i
    if spec.is_moe:
        mlp = moe_prefill(spec, c) if spec.model_type != "llama4_text" else 3 * c * sum(moe_widths(spec))
    hidden = (5 if spec.model_type in ("gemma2", "gemma3_text") else 4) * c * h
    # SDPA skips the causal mask (is_causal) but not the sliding one: a boolean batch x seq x seq mask
    # (masking_utils.sdpa_mask) lives through the forward once the prompt outgrows the window.
    eager = job.attention == "eager" or spec.model_type in ("gemma2", "gpt_oss")
    window = spec.sliding_window
    mask = job.seq_len if window and job.seq_len > window and any(sliding_layer_flags(spec)) and not eager else 0
    return hidden + mlp + mask


def moe_prefill(spec: ModelSpec, c: int) -> int:
    """Bytes per token live at the peak of an MoE layer's prefill under transformers 5's default
    experts kernel (``integrations/moe.py: grouped_mm_experts_forward``; seen on real prefills,
    tests/planner/test_mechanisms_cpu.py).

    Each token becomes k routed slots (k = num_experts_per_tok). Per slot the kernel holds its
    gathered input (h) and, at the gate, the gate_up output (2i), act(gate) and the product (i each);
    gpt-oss's clamped SwiGLU (``GptOssExperts._apply_gate``) keeps clamped gate and up, the GLU,
    up + 1 and the product instead (5i). Later the down output, its router-weighted copy and that
    copy put back in token order (3h) sit beside the gathered input: the peak is the larger of
    h + 4i (7i) and 4h per slot. Routing adds the sort's ids and permutation (int64), the histogram
    input (fp32), the inverse permutation and the slot weights (32 B a slot with fp32 weights) and,
    per token, the router logits (E x c) and the top-k ids and weights (12 B each). DeepSeek's shared
    experts run after the routed ones, beside their output (modeling_deepseek_v3.DeepseekV3MoE).
    """
    k, h, i, experts = spec.num_experts_per_tok, spec.hidden_size, spec.moe_intermediate_size, spec.num_local_experts
    gate = 7 if spec.model_type == "gpt_oss" else 4
    routed = k * c * max(4 * h, h + gate * i) + 32 * k + experts * c + 12 * k
    _, shared = moe_widths(spec)
    return max(routed, c * h + 3 * c * shared)


def eager_prefill_attention(spec: ModelSpec, job: Job, seq: int) -> int:
    """Bytes per token live at the softmax of eager attention during the prefill (0 for SDPA).

    Three hidden-size tensors, q and the repeated k and v, the 16-bit masked scores, their fp32
    copy for ``softmax(dtype=float32)`` and its output, and the causal masks (``batch x seq x seq``
    each; Gemma-2 keeps a sliding and a full one). Seen on real prefills (tests/planner/test_mechanisms_cpu.py).
    """
    if not (job.attention == "eager" or spec.model_type == "gemma2"):
        return 0
    c = 4 if job.precision == "fp32" else 2
    masks = 2 if spec.model_type == "gemma2" else 1
    return 3 * c * spec.hidden_size + 3 * c * spec.q_dim + (c + 8) * spec.num_attention_heads * seq + masks * c * seq


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
    if spec.model_type in ("deepseek_v2", "deepseek_v3"):
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
    if spec.model_type in ("gemma2", "gpt_oss"):  # sliding on even layers (configuration_gpt_oss.py)
        return [(i + 1) % 2 == 1 for i in range(L)]
    if spec.model_type == "gemma3_text":  # configuration_gemma3.py: sliding unless (i + 1) % pattern == 0
        pattern = int(spec.get("sliding_window_pattern") or 6)
        return [bool((i + 1) % pattern) for i in range(L)]
    return [True] * L
