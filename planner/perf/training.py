"""A training step's ops per method, its time on one GPU, and tokens/s over several GPUs.

Per decoder layer and micro-batch of B sequences of S tokens (T = B x S), on one GPU:
* forward: planner.perf.ops.layer_forward_ops (GEMMs, attention by kernel, eager or fused elementwise ops);
* backward: every linear's input-gradient GEMM (frozen or not: the gradient must flow to earlier
  layers), the weight-gradient GEMM only where the weight trains (``full``; LoRA/QLoRA/prompt tuning
  freeze the base: Hu et al. 2021, LoRA, sec. 4.1), attention backward (2.5x forward FLOPs, FlashAttention-2
  sec. 3.2), elementwise backward (twice the forward traffic);
* LoRA adapters on each targeted linear: forward X A then (X A) B, backward two input- and two
  weight-gradient GEMMs, the dropout on X and, eagerly, the scaling and the add onto the base output
  (PEFT's lora.Linear.forward: result + lora_B(lora_A(dropout(x))) * scaling);
* QLoRA: every forward, backward and recomputed forward dequantizes each 4-bit weight to bf16 first
  (bitsandbytes MatMul4Bit: dequantize_4bit then a bf16 GEMM, also in backward): read 0.5 B + absmax,
  write 2 B per parameter, a memory-bound cost per step that does not shrink with fewer tokens;
* gradient checkpointing: the layer forward runs twice (Chen et al. 2016; Korthikanti et al. 2022); with
  ``recompute`` < 1 only that fraction of the layers is checkpointed (torchtitan's selective layer AC,
  ``selective_ac_option = '2'``: every second layer, so 0.5);
* fp32 master weights with bf16 autocast (``full`` at fp32): each weight is cast to bf16 per forward;
* the optimizer step: one memory-bound pass over the trainable parameters, gradients and states
  (AdamW fp32: 28 bytes per parameter; 8-bit states: 16; SGD: 12).
The embedding, final norm, LM head and cross-entropy over the vocabulary come from ops.head_ops.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

from ..errors import PlannerError
from ..hardware import Gpu
from .comm import CommTime, comm_time
from .ops import ModelDims, Op, attention, elementwise, head_ops, layer_forward_ops, linear
from .roofline import step_time

OPTIMIZER_BYTES = {"adamw": 28, "adamw-8bit": 16, "paged-adamw-8bit": 16, "sgd": 12}
NF4_BYTES = 0.5 + 4 / 64  # packed 4-bit weights + one fp32 absmax per 64 (bitsandbytes blocksize 64)


@dataclass(frozen=True)
class Method:
    """How the step runs: what trains, the kernels, and what is recomputed."""

    mode: str  # full | lora | qlora | prompt-tuning
    checkpointing: bool = True
    recompute: float = 1.0  # fraction of layers checkpointed (re-run in backward) when checkpointing
    lora_r: int = 16
    lora_targets: str = "all-linear"
    lora_dropout: bool = True
    attn_kernel: str = "flash"  # flash | math
    fused: bool = False  # torch.compile / Liger / Unsloth kernels
    optimizer: str = "adamw"
    master_fp32: bool = False  # fp32 weights with bf16 autocast (full fine-tuning at --precision fp32)
    precision: str = "bf16"  # compute precision of the GEMMs: bf16 | fp16 | fp8
    num_virtual_tokens: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def method_of_job(job: Any, *, fused: bool = False) -> Method:
    """The Method a planner Job runs (planner/job.py), on the HF Trainer path."""
    return Method(mode=job.mode, checkpointing=bool(job.gradient_checkpointing), lora_r=job.lora_r,
                  lora_targets=job.lora_targets, lora_dropout=job.lora_dropout > 0,
                  attn_kernel="math" if job.attention == "eager" else "flash", fused=fused, optimizer=job.optimizer,
                  master_fp32=job.mode == "full" and job.precision == "fp32",
                  precision="fp16" if job.precision == "fp16" or job.compute_dtype == "fp16" else "bf16",
                  num_virtual_tokens=job.num_virtual_tokens)


def _targets(dims: ModelDims, targets: str) -> tuple[tuple[str, int, int, int], ...]:
    lin = tuple(x for x in dims.linears() if x[0] != "router")
    if targets in ("all-linear", "all"):
        return lin
    want = {t.strip() for t in targets.split(",") if t.strip()}
    return tuple(x for x in lin if x[0] in want)


def _backward(op: Op) -> Op:
    if op.kind == "elementwise":
        return replace(op, name=op.name + "_bwd", bytes=op.bytes * 2, flops=op.flops * 2)
    return replace(op, name=op.name + "_bwd")


@lru_cache(maxsize=64)
def training_step_ops(dims: ModelDims, batch: int, seq_len: int, method: Method) -> tuple[Op, ...]:
    """Ops of one micro-step (forward + backward) of ``batch`` sequences of ``seq_len`` on one GPU (module
    docstring), all layers, plus the optimizer step over the trainable parameters."""
    m = method
    if m.mode not in ("full", "lora", "qlora", "prompt-tuning"):
        raise PlannerError(f"no training step for mode '{m.mode}'")
    seq = seq_len + (m.num_virtual_tokens if m.mode == "prompt-tuning" else 0)
    t = batch * seq
    fwd = layer_forward_ops(dims, batch, seq, attn_kernel=m.attn_kernel, fused=m.fused, precision=m.precision)
    layer: list[Op] = list(fwd)
    for op in fwd:  # backward
        if op.kind == "attention":
            layer.append(attention("attention_bwd", batch, seq, seq, dims.heads, dims.kv_heads, dims.head_dim,
                                   kernel=m.attn_kernel, window=dims.sliding_window, backward=True))
        else:
            layer.append(_backward(op))
            if op.kind == "gemm" and m.mode == "full":  # weight gradient, written in fp32 under mixed precision
                layer.append(replace(op, name=op.name + "_wgrad", bytes=op.bytes + (op.flops / (2 * t)) * 2))
    rc = m.recompute if m.checkpointing else 0.0
    if rc:
        layer += [replace(o, name=o.name + "_recompute").times(rc) if rc != 1 else replace(o, name=o.name + "_recompute")
                  for o in fwd]
    params = sum(d_in * d_out * mult for _, d_in, d_out, mult in dims.linears()) if not dims.experts else \
        sum(d_in * d_out * (dims.experts if n in ("gate_proj", "up_proj", "down_proj") else 1)
            for n, d_in, d_out, _ in dims.linears())
    passes = 2 + rc
    if m.mode == "qlora":
        layer.append(Op("dequant_nf4", "dequant", params * 2 * passes, params * (NF4_BYTES + 2) * passes,
                        "dequant-bnb", launches=round(len(dims.linears()) * passes)))
    if m.master_fp32:
        layer.append(elementwise("autocast_weights", params, 3 * (1 + rc)))
    if m.mode in ("lora", "qlora"):
        r = m.lora_r
        for name, d_in, d_out, mult in _targets(dims, m.lora_targets):
            tt = t * mult
            a, b = linear(name + "_lora_A", tt, d_in, r), linear(name + "_lora_B", tt, r, d_out)
            reps = 1 + rc
            layer += [a.times(reps), b.times(reps), a, b,  # forward (+ recompute), input grads
                      replace(a, name=a.name + "_wgrad"), replace(b, name=b.name + "_wgrad")]
            if m.lora_dropout and not m.fused:
                layer.append(elementwise(name + "_lora_dropout", tt * d_in, 3 * reps + 2, launches=round(2 * reps + 1)))
            if not m.fused:  # result + lora_B(...) * scaling: a mul and an add over the output, and their grads
                layer.append(elementwise(name + "_lora_scale_add", tt * d_out, 5 * reps + 3, launches=round(2 * reps + 2)))
    ops = [o.times(dims.layers) for o in layer]
    head = head_ops(dims, t, weight_bytes=2, fused=m.fused, loss=True, precision=m.precision)
    ops += head
    ops += [_backward(o) for o in head if o.kind != "embedding"]
    if m.mode == "full":
        ops.append(replace(head[2], name="lm_head_wgrad"))
        ops.append(Op("embedding_grad", "embedding", 0.0, t * dims.hidden * 2 * 2, "embedding"))
    return tuple(ops)


def optimizer_op(trainable_params: int, optimizer: str) -> Op:
    """One optimizer step over ``trainable_params`` (OPTIMIZER_BYTES per parameter, memory-bound)."""
    return Op("optimizer_step", "optimizer", trainable_params * 4.0, trainable_params * OPTIMIZER_BYTES[optimizer],
              "optimizer", precision="bf16", launches=4)


@lru_cache(maxsize=256)
def _step(dims: ModelDims, batch: int, seq_len: int, method: Method, gpu: Gpu):
    """One GPU's step time, cached: a plan asks for the same (job, GPU) on many instance types."""
    return step_time(training_step_ops(dims, batch, seq_len, method), gpu)


@dataclass(frozen=True)
class TrainingSpeed:
    """Steady-state speed of a training job: one step's compute and communication and tokens/s overall."""

    tokens_per_second: float
    step_seconds: float
    compute_seconds: float
    comm_seconds: float
    exposed_comm_seconds: float
    tokens_per_step: int
    gpus: int
    link: str
    strategy: str
    by_kind: dict[str, float]
    basis: str
    comm: CommTime | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d


@lru_cache(maxsize=512)
def training_speed(dims: ModelDims, method: Method, gpu: Gpu, *, batch: int, seq_len: int, gpus: int = 1,
                   strategy: str = "single-gpu", link: str = "none", link_gb_s: float = float("inf"),
                   link_basis: str = "", total_params: int | None = None, trainable_params: int = 0,
                   grad_accum: int = 1, eff_table: dict | None = None) -> TrainingSpeed:
    """tokens/s of ``gpus`` GPUs each running micro-batches of ``batch`` x ``seq_len`` (cached: pure).

    Step time = compute + the communication the strategy cannot hide behind it (planner.perf.comm);
    the optimizer runs once per ``grad_accum`` micro-steps (and on 1/gpus of the parameters when sharded).
    """
    ops = training_step_ops(dims, batch, seq_len, method)
    st = step_time(ops, gpu, eff_table) if eff_table is not None else _step(dims, batch, seq_len, method, gpu)
    sharded = strategy in ("fsdp", "fsdp-qlora", "zero3")
    opt = step_time((optimizer_op(trainable_params // (gpus if sharded else 1), method.optimizer),), gpu, eff_table)
    compute = st.seconds + opt.seconds / grad_accum
    ct = comm_time(strategy, gpus=gpus, link_gb_s=link_gb_s, total_params=total_params or 0,
                   trainable_params=trainable_params, mode=method.mode, layers=dims.layers,
                   compute_seconds=compute, grad_accum=grad_accum)
    step = compute + ct.exposed_seconds
    tokens = batch * seq_len
    by_kind = dict(st.by_kind)
    by_kind["optimizer"] = by_kind.get("optimizer", 0.0) + opt.seconds / grad_accum
    by_kind["comm_exposed"] = ct.exposed_seconds
    basis = (f"roofline over {len(ops)} op groups on {gpu.gpu_model} ({'fused' if method.fused else 'eager'} kernels, "
             f"{method.attn_kernel} attention); {strategy} over {link}" + (f" ({link_basis})" if link_basis else ""))
    return TrainingSpeed(gpus * tokens / step, step, compute, ct.seconds, ct.exposed_seconds, tokens, gpus, link,
                         strategy, {k: round(v, 6) for k, v in by_kind.items()}, basis, ct)


@dataclass(frozen=True)
class DataSpeed:
    """tokens/s on real (variable-length) data: real tokens over the time of the steps that carry them."""

    tokens_per_second: float
    real_tokens: int
    padded_tokens: int  # tokens the GPUs process, padding included
    steps: int
    packing: bool

    @property
    def padding_fraction(self) -> float:
        return 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0


LENGTH_BUCKET = 64  # step times are looked up at the padded length rounded up to this (cached per bucket)


def dataset_speed(dims: ModelDims, method: Method, gpu: Gpu, *, lengths, seq_len: int, batch: int,
                  packing: bool = False, eos: bool = True) -> DataSpeed:
    """One GPU's speed over records of ``lengths`` tokens, as TRL/transformers batch them.

    Each record is truncated to ``seq_len`` (with its EOS token when ``eos``). Without packing, records go
    in order into batches of ``batch`` padded to the batch's longest (DataCollatorWithPadding's dynamic
    padding): a batch of short records is a short, underfed step and padding costs compute. With packing
    (TRL ``packing=True``) records are concatenated into rows of ``seq_len``: full-length steps, no padding
    (attention over the whole row is counted, the conservative side of padding-free flash varlen)."""
    lens = [min(seq_len, int(n) + (1 if eos else 0)) for n in lengths if int(n) > 0]
    real = sum(lens)
    if not lens:
        return DataSpeed(0.0, 0, 0, 0, packing)
    if packing:
        rows = -(-real // seq_len)
        steps = -(-rows // batch)
        t = _step(dims, batch, seq_len, method, gpu).seconds
        return DataSpeed(real / (steps * t), real, steps * batch * seq_len, steps, True)
    seconds, padded, steps = 0.0, 0, 0
    for i in range(0, len(lens), batch):
        chunk = lens[i:i + batch]
        longest = max(chunk)
        bucket = min(seq_len, -(-longest // LENGTH_BUCKET) * LENGTH_BUCKET)
        seconds += _step(dims, len(chunk), bucket, method, gpu).seconds * longest / bucket
        padded += len(chunk) * longest
        steps += 1
    return DataSpeed(real / seconds, real, padded, steps, False)
