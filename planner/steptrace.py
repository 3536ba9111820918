"""The sequence of large allocations and frees of a run, tensor by tensor, for the allocator
replay (planner/allocator.py): loading, then three training steps (forward layer by layer, the
loss, the backward from the top layer down, the optimizer step, ``zero_grad(set_to_none=True)``)
or one prefill.

The sizes come from the same inventories as the peak estimate (planner/activations.py,
planner/weights.py); what this adds is their order and lifetime, which decides how many cached
segments the caching allocator ends up holding. Per-layer tensors are grouped where PyTorch
would allocate them in one go; tensors below 1 MiB go to the small pool and barely matter.
"""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib.resources import files

from .allocator import Trace
from .job import Job
from .params import ParamCounts, linear_shapes
from .spec import ModelSpec
from .weights import lora_targets, weight_bytes

MIB = 1024**2
CUBLAS_WORKSPACE = 32 * MIB
STEPS = 2  # reserved stops growing after the second step (segments cached in step 1 shape step 2)


def _param_elements(spec: ModelSpec) -> tuple[list[int], list[int]]:
    """(decoder-layer linear weights, everything else) element counts, in registration order."""
    h, v = spec.hidden_size, spec.vocab_size
    lin = [i * o for _ in range(spec.num_hidden_layers) for _, i, o in linear_shapes(spec)]
    other = [v * h] + [h] * (2 * spec.num_hidden_layers + 1) + ([] if spec.tie_word_embeddings else [v * h])
    return lin, other


def _load(t: Trace, spec: ModelSpec, params: ParamCounts, job: Job) -> list[int]:
    lin, other = _param_elements(spec)
    keys = []
    if job.precision in ("int4", "int8"):
        w = weight_bytes(spec, params, job.precision, upcast_unquantized=job.kbit_upcast)
        per = w.quantized / max(sum(lin), 1)
        first = [t.alloc(2 * other[0])]  # the embedding, in registration order
        for n in lin:  # each 16-bit tensor lands on the GPU, is quantized there, and is released (Params4bit.to)
            tmp = t.alloc(2 * n)
            keys.append(t.alloc(int(n * per)))
            t.free(tmp)
        rest = first + [t.alloc(2 * n) for n in other[1:]]
        if not job.kbit_upcast:
            return keys + rest
        for k, n in zip(rest, other):  # prepare_model_for_kbit_training: param.data = param.data.float()
            keys.append(t.alloc(4 * n))
            t.free(k)
        return keys
    b = 4 if job.precision == "fp32" else 2
    keys = [t.alloc(b * n) for n in other[:1] + lin + other[1:]]
    if b == 2:
        # Assumption: loading a 16-bit model leaves one embedding-sized block cached. The prefill
        # calibration rows hold exactly one embedding matrix (vocab x hidden x 2 B) of reserved
        # memory beyond what their prefill explains; the LoRA rows are consistent with it (their
        # first logits reuse it). Its origin in transformers' loading is not pinned down.
        t.free(t.alloc(b * other[0]))
    return keys


def _trainable(spec: ModelSpec, params: ParamCounts, job: Job) -> list[int]:
    """Element counts of the trainable tensors."""
    if job.kind.trains_base:
        lin, other = _param_elements(spec)
        return other[:1] + lin + other[1:]
    if job.kind.lora:
        per = [n for _, i, o in lora_targets(spec, job) for n in (job.lora_r * i, job.lora_r * o)]
        return per * spec.num_hidden_layers
    if job.kind.prompt:
        return [job.num_virtual_tokens * spec.hidden_size]
    return []


@lru_cache(maxsize=1)
def _templates() -> dict:
    return json.loads(files("planner").joinpath("data/step_ops.json").read_text())


def _recipe_name(job: Job) -> str:
    base = str(job.mode) if job.kind.lora or job.kind.trains_base else "lora"  # prompt tuning: frozen bf16 base
    if job.pure_bf16_qlora:
        base = "lora"  # bf16 activations and adapters like LoRA's; the 4-bit dequantization is replayed per layer
    return base + ("-ckpt" if job.gradient_checkpointing else "")


def _blocks(events: list) -> list[tuple[str, int | None, list]]:
    """Split a recorded run at its markers: (kind, recorded layer or None, events)."""
    out: list[tuple[str, int | None, list]] = [("P", None, [])]
    for e in events:
        if e[0] in ("F", "f", "B"):
            out.append(({"F": "F", "f": "g", "B": "B"}[e[0]], e[1], []))
        elif e[0] in ("L", "E"):
            out.append((e[0], None, []))
        else:
            out[-1][2].append(e)
    return out


def _alignment(a: list, b: list) -> dict[int, int]:
    """Map alloc positions of block ``a`` onto block ``b`` (layer 0 differs slightly from the others)."""
    sa = [tuple(e[2:]) for e in a if e[0] == "+"]
    sb = [tuple(e[2:]) for e in b if e[0] == "+"]
    m: dict[int, int] = {}
    for blk in difflib.SequenceMatcher(a=sa, b=sb, autojunk=False).get_matching_blocks():
        for k in range(blk.size):
            m[blk.a + k] = blk.b + k
    return m


@lru_cache(maxsize=None)
def _parsed(name: str):
    """A recorded recipe split into blocks, with the layer-0/layer-1 alignments and each
    recorded tensor's origin (kind, recorded layer, position in its block, block index)."""
    blocks = _blocks(_templates()["recipes"][name]["events"])
    top = max(k for _, k, _ in blocks if k is not None)
    by = {(kind, k): ev for kind, k, ev in blocks if k is not None}
    align = {kind: (_alignment(by[(kind, 0)], by[(kind, 1)]), _alignment(by[(kind, 1)], by[(kind, 0)]))
             for kind in ("F", "g", "B") if (kind, 0) in by and (kind, 1) in by}
    origin: dict[int, tuple] = {}
    for bi, (kind, k, ev) in enumerate(blocks):
        pos = 0
        for e in ev:
            if e[0] == "+":
                origin[e[1]] = (kind, k, pos, bi)
                pos += 1
    return blocks, align, origin, top


@lru_cache(maxsize=None)
def _compiled(name: str) -> list[tuple[str, int | None, list[tuple]]]:
    """Each block of a recorded recipe as ops whose keys are resolved once: ("+", coef, unit) and
    either ("c", kind, block, pos) for a tensor of a block outside the layers, or ("l", kind,
    recorded layer, pos when it lands on real layer 0, pos when on another layer)."""
    blocks, align, origin, top = _parsed(name)
    out = []
    for kind, k, ev in blocks:
        ops: list[tuple] = []
        for e in ev:
            if e[0] == "+":
                ops.append(("+", e[2], e[3]))
                continue
            o = origin.get(e[1])
            if o is None:
                continue
            okind, ok, pos, obi = o
            if ok is None:
                ops.append(("c", okind, obi, pos))
                continue
            amap = align.get(okind)
            if ok == 0:
                on0, on1 = pos, (amap[0].get(pos) if amap else None)
            else:
                on0, on1 = (amap[1].get(pos) if amap else None), pos
            ops.append(("l", okind, ok, on0, on1))
        out.append((kind, k, ops))
    return out


def _replay_template(t: Trace, name: str, spec: ModelSpec, job: Job, tok: int, seq: int, step: int,
                     per_layer_end=None, on_block=None) -> None:
    """Emit one recorded run (forward, loss, backward) unrolled to the model's layer count: the
    recorded layer 0 is layer 0, recorded layer 1 stands for every middle layer, the recorded top
    layer for the top one (their allocations are matched by sequence alignment, ``_alignment``)."""
    top = _parsed(name)[3]
    dims = {"h": spec.hidden_size, "i": spec.intermediate_size * max(1, spec.num_experts_per_tok or 1),
            "kv": spec.kv_dim, "q": spec.q_dim, "V": spec.vocab_size, "a": spec.num_attention_heads * seq}
    L = spec.num_hidden_layers
    events = t.events
    live: dict[tuple, int] = {}

    def emit(ops: list[tuple], shift, kind: str, own) -> None:
        """``shift``: real layer of a recorded layer (an int offset, or a function for the tail);
        ``own``: the real layer this block is emitted for, or its block index outside the layers."""
        pos = 0
        for op in ops:
            tag = op[0]
            if tag == "+":
                t._next += 1
                events.append(("alloc", t._next, max(int(op[1] * dims[op[2]] * tok), 1)))
                live[(step, kind, own, pos)] = t._next
                pos += 1
                continue
            if tag == "c":
                kk = (step, op[1], op[2], op[3])
            else:
                r = shift(op[2]) if callable(shift) else op[2] + shift
                if not 0 <= r < L:
                    continue
                p = op[3] if r == 0 else op[4]
                if p is None:
                    continue
                kk = (step, op[1], r, p)
            key = live.pop(kk, None)
            if key is not None:
                events.append(("free", key, 0))

    def tail_map(m: int) -> int:  # blocks after the forward: the recorded top layers are the real top layers
        return L - 1 - (top - m) if m > 0 else 0

    for bi, (kind, k, ops) in enumerate(_compiled(name)):
        if k is None:
            if on_block is not None:
                on_block(kind, None)
            emit(ops, tail_map, kind, bi)
            continue
        if kind == "g" and k == top:
            reals = [L - 1]
        elif kind == "g":
            reals = [0] if k == 0 else list(range(1, L - 1))
        elif kind == "F":
            if k == 0:
                reals = [0]
            elif k == 1:
                reals = [1] if L > 2 else []
            else:
                reals = list(range(2, L)) if L > 2 else [L - 1]
        else:  # backward runs top down: recorded top = real top, 1 = the middle layers, 0 = layer 0
            reals = [L - 1] if k == top else ([0] if k == 0 else list(range(L - 2, 0, -1)))
        for j in reals:
            if on_block is not None:
                on_block(kind, j)
            emit(ops, j - k, kind, j)
            if kind == "B" and per_layer_end is not None:
                per_layer_end(j)


class _StepHooks:
    """What a training step allocates that is not per-token, at its moment in the recorded step:
    torch.autocast's bf16 weight copies (cached until the forward's autocast region ends; backward
    keeps those its matmuls saved), QLoRA's dequantized weight in each layer's backward, and each
    layer's gradients in full fine-tuning."""

    def __init__(self, t: Trace, spec: ModelSpec, job: Job, lin_per_layer: list[int], pb: int):
        self.t, self.spec, self.job, self.lin, self.pb = t, spec, job, lin_per_layer, pb
        self.autocast = job.kind.trains_base and job.precision == "fp32" and job.compute_dtype != "fp32"
        self.ckpt = job.gradient_checkpointing
        self.grads: list[int] = []
        self.copies: dict[object, list[int]] = {}

    def on_block(self, kind: str, j: int | None) -> None:
        t, L = self.t, self.spec.num_hidden_layers
        if not self.autocast:
            return
        if kind == "F" and j is not None:
            self.copies[j] = [t.alloc(2 * n) for n in self.lin]
        elif kind == "g" and j == L - 1:
            self.copies["head"] = [t.alloc(2 * self.spec.vocab_size * self.spec.hidden_size)]
        elif kind == "L" and self.ckpt:  # leaving autocast: recomputation casts again later
            for j2 in range(L):
                t.free(*self.copies.pop(j2, []))

    def layer_done(self, j: int) -> None:
        t = self.t
        if self.job.kind.quantized_base:
            t.free(t.alloc(2 * max(self.lin)))
        if self.autocast:
            t.free(*self.copies.pop("head", []))
            t.free(*(self.copies.pop(j, []) if not self.ckpt else [t.alloc(2 * n) for n in self.lin]))
        if self.job.kind.trains_base:
            self.grads.extend(t.alloc(self.pb * n) for n in self.lin)


def _layers_and_loss(t: Trace, spec: ModelSpec, job: Job, tok: int, seq: int, step: int,
                     lin_per_layer: list[int], pb: int) -> list[int]:
    hooks = _StepHooks(t, spec, job, lin_per_layer, pb)
    _replay_template(t, _recipe_name(job), spec, job, tok, seq, step, hooks.layer_done, hooks.on_block)
    return hooks.grads


def training_trace(spec: ModelSpec, params: ParamCounts, job: Job, state_bytes: int, temp_bytes: int) -> Trace:
    """Loading, then three steps of the recorded recipe, plus what is not per-token: gradients
    (allocated as each layer's backward finishes), optimizer states (first step), the foreach
    AdamW temporary, the cuBLAS workspaces and QLoRA's dequantization buffer."""
    t = Trace()
    _load(t, spec, params, job)
    train = _trainable(spec, params, job)
    pb = job.kind.trainable_param_bytes(job.precision)  # fp32 states even for the pure-bf16 recipe (as replayed since issue 10)
    if not job.kind.trains_base:
        for n in train:
            t.alloc(4 * n)
    t.reset_peak()
    n_train = max(sum(train), 1)
    seq = job.tokens_per_sequence
    tok = job.batch_size * seq
    lin_per_layer = [a * b for _, a, b in linear_shapes(spec)]
    states: list[int] = []
    t.alloc(CUBLAS_WORKSPACE)
    t.alloc(CUBLAS_WORKSPACE)
    for step in range(STEPS):
        grads = _layers_and_loss(t, spec, job, tok, seq, step, lin_per_layer, pb)
        if job.kind.trains_base:
            grads += [t.alloc(pb * spec.vocab_size * spec.hidden_size)]
        else:
            grads += [t.alloc(pb * n) for n in train]
        if state_bytes and not states:
            per = state_bytes / n_train / 2
            for n in train:
                states += [t.alloc(int(per * n)), t.alloc(int(per * n))]
        if temp_bytes:
            per = temp_bytes / n_train
            tmp = [t.alloc(int(per * n)) for n in train]
            t.free(*tmp)
        t.free(*grads)
    return t


def inference_trace(spec: ModelSpec, params: ParamCounts, job: Job, extra_bytes: int) -> Trace:
    """Loading, then the recorded prefill under no_grad (each layer writes its K and V into the
    cache and frees its intermediates); ``extra_bytes`` (adapters, dequantization buffers) are
    allocated up front."""
    t = Trace()
    _load(t, spec, params, job)
    if extra_bytes:
        t.alloc(extra_bytes)
    t.reset_peak()
    c = 4 if job.precision == "fp32" else 2
    t.alloc(CUBLAS_WORKSPACE)
    tok = job.batch_size * job.seq_len
    on_block = None
    if job.precision == "int8":
        def on_block(kind: str, j: int | None) -> None:
            if kind == "F" and j is not None:
                for _, i, o in linear_shapes(spec):
                    int8_matmul(t, tok, i, o)
    _replay_template(t, "inference", spec, job, tok, job.seq_len, 0, on_block=on_block)
    t.alloc(job.batch_size * spec.vocab_size * (c + 4))
    return t


def int8_matmul(t: Trace, tok: int, fan_in: int, fan_out: int) -> None:
    """The temporaries of one LLM.int8 linear over ``tok`` tokens, in order (bitsandbytes 0.50.2
    autograd/_functions.py ``MatMul8bitLt.forward``; backends/cuda/ops.py ``int8_vectorwise_quant``,
    ``int8_linear_matmul``, ``int8_mm_dequant``; backends/default/ops.py ``int8_scaled_mm``): the
    input cast to fp16, its row scales and int8 codes, ``|A|`` and the outlier mask (threshold 6.0,
    transformers' ``llm_int8_threshold``), then the int32 product, its fp16 dequantization and the
    cast to the model's dtype. The bf16 output itself is the recorded linear output."""
    a16 = t.alloc(2 * tok * fan_in)
    stats, codes = t.alloc(4 * tok), t.alloc(tok * fan_in)
    absolute = t.alloc(2 * tok * fan_in)
    mask = t.alloc(tok * fan_in)
    t.free(absolute)
    t.free(mask, a16)
    i32 = t.alloc(4 * tok * fan_out)
    f16 = t.alloc(2 * tok * fan_out)
    out = t.alloc(2 * tok * fan_out)
    t.free(f16, i32, codes, stats, out)


def int8_matmul_peak(fan_in: int, fan_out: int) -> int:
    """Bytes per token at the high point of ``int8_matmul``: during the quantization (fp16 input,
    |A|, mask, codes, scales) or the product (codes, scales, int32, fp16 and cast output)."""
    return max(6 * fan_in, fan_in + 8 * fan_out) + 4


def trace_inputs(spec: ModelSpec, params: ParamCounts, job: Job, extra_bytes: int,
                 states: tuple[int, int]) -> tuple:
    """Every value the traces above read, as plain values: two jobs with equal inputs have the same
    trace and so the same replay (planner/replays.py keys its precomputed replays on them). Keep
    it in step with ``training_trace`` and ``inference_trace``."""
    quantized = (weight_bytes(spec, params, job.precision, upcast_unquantized=job.kbit_upcast)
                 .quantized if job.precision in ("int4", "int8") else 0)
    targets = lora_targets(spec, job) if job.kind.lora else ()
    return (spec.hidden_size, spec.intermediate_size, spec.num_experts_per_tok, spec.kv_dim, spec.q_dim,
            spec.num_attention_heads, spec.num_hidden_layers, spec.tie_word_embeddings, spec.vocab_size,
            linear_shapes(spec), quantized, targets, str(job.mode), job.precision, job.seq_len, job.batch_size,
            job.gradient_checkpointing, job.lora_r, job.num_virtual_tokens, job.kbit_prep, job.compute_dtype,
            job.allocator, extra_bytes, tuple(states), STEPS)
