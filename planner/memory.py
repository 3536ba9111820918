"""Peak GPU memory of one job: the phases of a step, each a sum of named terms; the peak is the
largest phase.

A training step's candidates for the peak (torch.cuda.max_memory_allocated over a step):
- ``loss forward``: logits, their fp32 copy and log_softmax output, on top of saved activations;
- ``loss backward``: the log_softmax backward (12 B x vocab per token) on top of saved activations;
- ``top-layer backward``: with checkpointing, the recomputed layer's activations plus gradient
  buffers, on top of every layer's checkpointed input;
- ``optimizer step``: weights + gradients + states + the foreach AdamW temporary (one
  parameter-sized ``sqrt(exp_avg_sq)``; torch/optim/adamw.py ``_multi_tensor_adamw``).
Inference: the prefill of the last layer's MLP with the whole KV cache written.

Fixed terms: PyTorch allocates one cuBLAS workspace per (thread, stream) through its caching
allocator (32 MiB on Hopper, ``CUBLAS_WORKSPACE_CONFIG`` default ``:4096:8``); training uses
two threads (forward and autograd). These figures match the H100 calibration rows (docs/accuracy.md).
"""
from __future__ import annotations

from functools import lru_cache

from . import activations as act
from . import replays, steptrace
from .allocator import AllocatorReplay, replay
from .breakdown import DeferredEstimate, MemoryTerm
from .config_checks import quantized_checkpoint_note
from .job import Job
from .params import ParamCounts, layer_layouts
from .seed import seed_rule
from .spec import ModelSpec
from .weights import (
    adapter_slot_bytes,
    all_linear_problem,
    quantizable_params,
    trainable_params,
    weight_bytes,
)

MIB = 1024**2
CUBLAS_WORKSPACE = 32 * MIB
CUDA_CONTEXT = 512 * MIB          # typical CUDA 12/13 context with lazy module loading (nvidia-smi)
# Device memory outside PyTorch's pool that the run itself adds (kernel images loaded lazily,
# cuBLAS/cuBLASLt handles, bitsandbytes): device_used - peak_reserved on the H100 calibration
# rows (torch 2.11 + CUDA 13, lazy loading): 168 MiB for a prefill, 224-240 MiB for a training
# step (backward and optimizer kernels). Measured figures, not a fit: every row has one of the two.
OUT_OF_POOL = {"inference": 168 * MIB, "training": 240 * MIB}
# The replay's stated accuracy (docs/accuracy.md: never more than 3% under the measured reserved
# on the calibration rows); total_bytes carries it so that it never falls below device_used.
RESERVED_TOLERANCE = 0.03
SRC_CAL = "shared/calibration (H100)"


def _optimizer(job: Job, n_trainable: int, param_bytes: int) -> tuple[int, int, str]:
    """(state bytes, step temporary bytes, formula)."""
    if job.optimizer == "sgd":
        return 0, 0, "plain SGD keeps no state"
    if job.optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        # bitsandbytes blockwise 8-bit: two uint8 states + one fp32 absmax per 256-value block each
        states = 2 * (n_trainable + n_trainable // 256 * 4)
        if job.optimizer == "paged-adamw-8bit":
            return 0, 0, "paged 8-bit states live in CUDA unified memory, outside PyTorch's allocator"
        return states, 0, "2 x (1 B + 4 B/256) per trainable param (bitsandbytes 8-bit blockwise)"
    return (2 * n_trainable * param_bytes, n_trainable * param_bytes,
            f"exp_avg + exp_avg_sq in the param dtype: 2 x {param_bytes} B x {n_trainable:,}")


def replay_args(spec: ModelSpec, params: ParamCounts, job: Job, terms) -> tuple[Job, int, tuple[int, int]]:
    """What the allocator trace of ``job`` is built from besides the model: the job without the
    fields the trace does not read, the bytes inference allocates up front (adapters,
    dequantization buffers) and the optimizer's (state, step temporary) bytes."""
    if not job.kind.trains:
        extra = sum(t.bytes for t in terms if t.name in ("LoRA adapters", "dequantization buffer"))
        return _trace_job(job), extra, (0, 0)
    n_train = trainable_params(spec, params, job)
    # (as replayed since issue 10: fp32-sized states even for the pure-bf16 recipe's bf16 adapters)
    states = _optimizer(job, n_train, job.kind.trainable_param_bytes(job.precision))[:2]
    return _trace_job(job), 0, states


def _trace_job(job: Job) -> Job:
    """The job with the fields the allocator trace does not read set to their defaults, so that
    jobs that differ only there (LoRA alpha and dropout, attention kernel, optimizer beyond its
    state bytes, adapters beyond their bytes) share one replay."""
    base = Job(mode=job.mode, precision=job.precision)
    return job.with_(lora_alpha=base.lora_alpha, lora_dropout=base.lora_dropout, attention=base.attention,
                     optimizer=base.optimizer, adapters=0, max_lora_rank=None)


def build_estimate(spec: ModelSpec, params: ParamCounts, job: Job) -> DeferredEstimate:
    if not job.kind.trains:
        terms, phase, notes = _inference(spec, params, job)
        phases = ((phase, tuple(terms)),)
    else:
        terms, phase, notes, phases = _training(spec, params, job)
    terms = tuple(t for t in terms if t.bytes > 0)
    phases = tuple((name, tuple(t for t in ts if t.bytes > 0)) for name, ts in phases)
    peak = sum(t.bytes for t in terms)
    out_of_pool = OUT_OF_POOL["training" if job.kind.trains else "inference"]
    args = replay_args(spec, params, job, terms)

    def reserved_figures() -> dict[str, int]:
        replay = _replay(spec, params, *args)
        # The replayed trace (recorded on a tiny model, CPU kernels) and the term inventory (checked
        # against GPU peaks) can disagree on the allocated peak; the inventory wins, and the cached
        # surplus the replay found is kept on top of it. Never below the peak.
        reserved = max(peak, peak + replay.reserved_bytes - replay.peak_allocated_bytes)
        tolerance = int(reserved * RESERVED_TOLERANCE)
        return {"reserved_bytes": reserved, "allocator_slack_bytes": reserved - peak, "tolerance_bytes": tolerance,
                "total_bytes": reserved + out_of_pool + tolerance}

    n_train = trainable_params(spec, params, job)
    quantized = quantized_checkpoint_note(spec.config)  # issue 19: never silent about it
    if quantized:
        notes = notes + (quantized,)
    if spec.is_moe:
        notes = notes + ("MoE: transformers 5 stores experts as fused 3D parameters; bitsandbytes leaves them "
                         "(and the router) in 16-bit, and PEFT's all-linear wraps them for Mixtral, Qwen3-MoE and "
                         "DeepSeek but not gpt-oss or Llama 4; LoRA on experts counts their merged copies, and "
                         "saved activations are counted per layer layout (dense and routed)",)
        problem = all_linear_problem(spec, job)
        if problem:
            notes = notes + (problem,)
        if job.kind.lora and job.lora_dropout > 0 and job.target_modules is None \
                and spec.traits.peft_wraps_experts:
            notes = notes + ("PEFT refuses lora_dropout != 0 on fused experts (lora.ParamWrapper): this run needs "
                             "--lora-dropout 0 or --lora-targets naming the attention/dense linears",)
    return DeferredEstimate(compute=reserved_figures, model=spec, params=params, job=job, trainable_params=n_train,
                            terms=terms, peak_allocated_bytes=peak, out_of_pool_bytes=out_of_pool,
                            allocator=job.allocator, cuda_context_bytes=CUDA_CONTEXT, phase=phase,
                            seed_rule=seed_rule(params, job, n_train), notes=notes, phases=phases)


@lru_cache(maxsize=256)
def _replay(spec: ModelSpec, params: ParamCounts, job: Job, extra_bytes: int, states: tuple[int, int]) -> AllocatorReplay:
    """Replay the run's allocations through the caching allocator model (planner/allocator.py),
    once per distinct trace in a process (the --gpu searches and suggestions ask again)."""
    stored = replays.lookup(steptrace.trace_inputs(spec, params, job, extra_bytes, states))
    if stored is not None:
        return AllocatorReplay(job.allocator, *stored)
    return live_replay(spec, params, job, extra_bytes, states)


def live_replay(spec: ModelSpec, params: ParamCounts, job: Job, extra_bytes: int,
                states: tuple[int, int]) -> AllocatorReplay:
    if not job.kind.trains:
        trace = steptrace.inference_trace(spec, params, job, extra_bytes)
    else:
        trace = steptrace.training_trace(spec, params, job, *states)
    return replay(trace.events, job.allocator)


def _inference(spec: ModelSpec, params: ParamCounts, job: Job):
    tokens = job.batch_size * job.seq_len
    w = weight_bytes(spec, params, job.precision)
    c = 4 if job.precision == "fp32" else 2
    terms = [MemoryTerm("weights", w.total, "weights", w.formula, "params.py; bitsandbytes")]
    if job.adapters:
        slot = adapter_slot_bytes(spec, job)
        terms.append(MemoryTerm("LoRA adapters", job.adapters * slot, "weights",
                                f"{job.adapters} adapters x rank {job.max_lora_rank or job.lora_r} x sum(in+out) x 2 B",
                                "PEFT LoRA shapes; vLLM --max-loras slots"))
    kv = job.batch_size * act.kv_cache_bytes(spec, job.seq_len, c)
    terms.append(MemoryTerm("KV cache", kv, "kv_cache",
                            f"2 x {spec.num_hidden_layers} layers x {spec.kv_dim} (kv heads x head_dim) x {c} B "
                            f"x {tokens:,} tokens" + (f" (sliding window {spec.sliding_window})" if spec.sliding_window else ""),
                            "transformers DynamicCache"))
    per_tok = act.prefill_peak(spec, job)
    eager = act.eager_prefill_attention(spec, job, job.seq_len)
    if eager > per_tok:  # eager attention's seq x seq scores outgrow the MLP's intermediates
        terms.append(MemoryTerm("prefill activations (eager attention)", eager * tokens, "activations",
                                f"{eager:,} B/token (scores in 16-bit and fp32, softmax, causal masks)",
                                "eager_attention_forward under no_grad"))
    else:
        terms.append(MemoryTerm("prefill activations", per_tok * tokens, "activations",
                                f"{per_tok:,} B/token (4 hidden + 3 intermediate tensors of the last layer's MLP)",
                                "modeling_llama.py under no_grad; " + SRC_CAL))
    if w.quantized and job.precision == "int8":
        # LLM.int8 multiplies int8 codes (cuBLASLt) instead of dequantizing the weight: its buffers
        # scale with the tokens (steptrace.int8_matmul lists them; the replay places them per linear)
        per, (_, fi, fo) = max((steptrace.int8_matmul_peak(i, o), (n, i, o)) for n, i, o in act_linears(spec))
        terms.append(MemoryTerm("int8 matmul buffers", per * tokens, "activations",
                                f"{per:,} B/token x {tokens:,} tokens: the largest linear's ({fi:,} -> {fo:,}) fp16 input, "
                                "|A|, outlier mask, int8 codes, int32 product and its dequantized output",
                                "bitsandbytes 0.50.2 MatMul8bitLt.forward, int8_vectorwise_quant, int8_mm_dequant"))
    elif w.quantized:
        biggest = max(i * o for _, i, o in act_linears(spec))
        terms.append(MemoryTerm("dequantization buffer", biggest * 2, "activations",
                                "largest linear dequantized to bf16 for the matmul", "bitsandbytes matmul_4bit"))
    terms.append(MemoryTerm("logits (last token)", job.batch_size * spec.vocab_size * (c + 4), "logits",
                            "generate keeps only the last position's logits (logits_to_keep=1)", "transformers generate"))
    terms.append(MemoryTerm("cuBLAS workspace", CUBLAS_WORKSPACE, "workspace", "one 32 MiB workspace", "PyTorch CUDABlas"))
    phase = "prefill (last layer's attention)" if eager > per_tok else "prefill (last layer's MLP)"
    return terms, phase, ()


def _with_lora_experts(spec: ModelSpec, job: Job, held: MemoryTerm) -> MemoryTerm:
    """Add the LoRA-merged expert stacks of the MoE layers whose saved tensors are alive (all of
    them; with checkpointing the recomputed layer's, counted here once) to the held activations."""
    per_layer = act.lora_expert_weights(spec, job)
    if not per_layer:
        return held
    from .params import is_moe_layer
    n = 1 if job.gradient_checkpointing else sum(is_moe_layer(spec, i) for i in range(spec.num_hidden_layers))
    return MemoryTerm(held.name, held.bytes + n * per_layer, held.kind,
                      f"{held.formula} + {n} MoE layers x {per_layer:,} B of LoRA-merged expert weights",
                      held.source + "; peft ParamWrapper")


def act_linears(spec: ModelSpec):
    from .params import linear_shapes
    return linear_shapes(spec)


def _training(spec: ModelSpec, params: ParamCounts, job: Job):
    notes: list[str] = []
    L = spec.num_hidden_layers
    seq = job.tokens_per_sequence
    tokens = job.batch_size * seq
    ckpt = job.gradient_checkpointing
    n_train = trainable_params(spec, params, job)

    # --- persistent state
    base: list[MemoryTerm] = []
    if job.kind.quantized_base:
        w = weight_bytes(spec, params, job.precision, upcast_unquantized=job.kbit_prep)
        base.append(MemoryTerm("weights (quantized)", w.quantized, "weights", w.formula.split(";")[0], "bitsandbytes Params4bit"))
        # MoE: bitsandbytes leaves the fused 3D experts and the routers unquantized, and
        # prepare_model_for_kbit_training upcasts them to fp32 with the rest (seen on a real tiny Qwen3-MoE QLoRA step)
        kept = "embeddings, head, norms" + (", experts" if spec.is_moe else "") + (" in fp32" if job.kbit_prep else " in bf16")
        base.append(MemoryTerm(f"weights ({kept})", w.unquantized, "weights", w.formula.split(";")[1].strip(),
                               "peft.prepare_model_for_kbit_training" if job.kbit_prep
                               else "bnb_4bit_quant_storage=bf16, no kbit preparation (backend/recipes/fsdp_qlora.py)"))
    else:
        w = weight_bytes(spec, params, job.precision)
        base.append(MemoryTerm("weights", w.total, "weights", w.formula, "params.py"))
    param_bytes = job.trainable_param_bytes
    if not job.kind.trains_base:
        base.append(MemoryTerm("trainable parameters", n_train * param_bytes, "trainable",
                               f"{n_train:,} adapter params x {param_bytes} B ({'bf16' if param_bytes == 2 else 'fp32'})",
                               "PEFT autocast_adapter_dtype" if param_bytes == 4 else "backend/recipes/fsdp_qlora.py"))
    states, step_tmp, opt_formula = _optimizer(job, n_train, param_bytes)
    if job.optimizer == "paged-adamw-8bit":
        notes.append(opt_formula)
    opt = MemoryTerm("optimizer states", states, "optimizer", opt_formula, "torch.optim.AdamW / bitsandbytes")
    grads_all = MemoryTerm("gradients", n_train * param_bytes, "gradients",
                           f"{n_train:,} x {param_bytes} B", "autograd")
    work = MemoryTerm("cuBLAS workspaces", 2 * CUBLAS_WORKSPACE, "workspace",
                      "2 x 32 MiB (forward thread + autograd thread)", "PyTorch CUDABlas; " + SRC_CAL)

    # --- activations
    saved_layer = act.layer_saved(spec, job, seq)
    final = act.final_norm_saved(spec, job) * tokens
    if ckpt:
        held = MemoryTerm("checkpointed layer inputs", L * act.layer_input(spec, job) * tokens, "activations",
                          f"{L} layers x {act.layer_input(spec, job):,} B/token x {tokens:,} tokens",
                          "torch.utils.checkpoint (non-reentrant)")
    else:
        layouts = [(n, act.layer_saved(spec, job, seq, idx)) for idx, n in layer_layouts(spec)]
        per_tok = " + ".join(f"{n} layers x {b:,}" for n, b in layouts)
        held = MemoryTerm("saved activations (all layers)", sum(n * b for n, b in layouts) * tokens, "activations",
                          f"{per_tok} B/token x {tokens:,} tokens", "autograd saved tensors")
    final_t = MemoryTerm("final norm", final, "activations", "fp32 input of the final RMSNorm", "modeling_llama.py")
    held = _with_lora_experts(spec, job, held)
    lf, lb = act.logits_bytes(spec, job)
    autocast_w = 0
    if job.kind.trains_base and job.precision == "fp32" and job.compute_dtype != "fp32":
        n_lin, _ = quantizable_params(spec, params)
        head = spec.vocab_size * spec.hidden_size
        autocast_w = 2 * (n_lin + head)
    phases: list[tuple[str, list[MemoryTerm]]] = []

    fwd_extra = []
    if autocast_w:
        fwd_extra.append(MemoryTerm("autocast bf16 weight copies", autocast_w if ckpt else autocast_w, "weights",
                                    "bf16 copy of every linear weight, cached until autocast exits", "torch.autocast weight cache"))
    phases.append(("loss forward", base + [opt, held, final_t] + fwd_extra + [
        MemoryTerm("logits and loss", lf * tokens, "logits", f"{lf // spec.vocab_size} B x vocab {spec.vocab_size:,} x {tokens:,} tokens",
                   "transformers ForCausalLMLoss"), work]))

    bwd_extra = []
    if autocast_w:
        kept = 2 * spec.vocab_size * spec.hidden_size if ckpt else autocast_w
        bwd_extra.append(MemoryTerm("autocast bf16 weight copies", kept, "weights",
                                    "bf16 weights saved for backward" + (" (lm_head only: layers are recomputed)" if ckpt else ""),
                                    "torch.autocast"))
    phases.append(("loss backward", base + [opt, held, final_t] + bwd_extra + [
        MemoryTerm("logits and loss", lb * tokens, "logits",
                   f"12 B x vocab {spec.vocab_size:,} x {tokens:,} tokens (log_softmax backward, fp32)",
                   "torch cross_entropy; " + SRC_CAL), work]))

    transient = act.backward_transient(spec, job) * tokens
    top = [MemoryTerm("backward buffers", transient, "activations", "residual and MLP gradients of one layer", "autograd")]
    if job.kind.quantized_base:
        biggest = max(i * o for _, i, o in act_linears(spec))
        top.append(MemoryTerm("dequantization buffer", 2 * biggest, "activations",
                              "largest 4-bit linear dequantized to bf16 in its backward", "bitsandbytes MatMul4Bit"))
    if ckpt:
        kept = saved_layer - act.released_before_peak(spec, job) - act.recompute_overlap(spec, job)
        top.insert(0, MemoryTerm("recomputed layer", kept * tokens, "activations",
                                 f"{kept:,} B/token x {tokens:,} tokens (saved tensors still alive)",
                                 "torch.utils.checkpoint"))
    grads_top = 0
    if job.kind.trains_base:
        grads_top = (spec.vocab_size * spec.hidden_size + params.total // max(L, 1)) * param_bytes
        if autocast_w:
            top.append(MemoryTerm("autocast bf16 weight copies", 2 * params.total // max(L, 1) if ckpt else autocast_w,
                                  "weights", "bf16 weights of the layers still to backprop", "torch.autocast"))
    top.append(MemoryTerm("gradients (so far)", grads_top, "gradients", "embedding/head and top-layer gradients", "autograd"))
    phases.append(("top-layer backward", base + [opt, held] + top + [work]))

    phases.append(("optimizer step", base + [opt, grads_all,
                   MemoryTerm("optimizer step temporaries", step_tmp, "optimizer",
                              "foreach AdamW sqrt(exp_avg_sq): one param-sized buffer", "torch/optim/adamw.py"), work]))

    phase, terms = max(phases, key=lambda p: sum(t.bytes for t in p[1]))
    if not ckpt and job.kbit_upcast:
        notes.append("without gradient checkpointing QLoRA's fp32 q/k/v use SDPA's math kernel, which keeps "
                     "seq x seq attention probabilities per layer")
    return terms, phase, tuple(notes), tuple((name, tuple(ts)) for name, ts in phases)


def context_warning(spec: ModelSpec, job: Job) -> str | None:
    """One line when --seq-len goes beyond the model's trained context (``max_position_embeddings``):
    the estimate still holds for the memory, but the model was not trained for such positions."""
    ctx = spec.max_position_embeddings
    if ctx and job.seq_len > ctx:
        return (f"--seq-len {job.seq_len:,} is beyond {spec.name}'s context of {ctx:,} tokens "
                "(max_position_embeddings): quality past it is not what the model was trained for")
    return None
