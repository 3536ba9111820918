"""Bytes of the model's weights at a storage precision, and the parameters PEFT trains.

Sources:
- bitsandbytes ``Linear4bit`` / ``Params4bit``: NF4 packs two weights per byte; each block of 64
  weights has an absmax. With double quantization (``bnb_4bit_use_double_quant``) the absmax are
  themselves 8-bit with one fp32 absmax per 256 blocks (Dettmers et al. 2023, QLoRA, section 3).
- transformers' bitsandbytes integration leaves the output embedding (``lm_head``), the input
  embedding and the norms un-quantized; ``peft.prepare_model_for_kbit_training`` then casts every
  non-quantized fp16/bf16 parameter to fp32.
- LLM.int8 (``Linear8bitLt``): one int8 per weight plus an fp32 scale per output row (``SCB``).
- PEFT LoRA: a targeted Linear(in, out) gains A (r x in) and B (out x r); ``get_peft_model``
  keeps adapter weights in fp32 (``autocast_adapter_dtype=True``). Prompt tuning adds
  ``num_virtual_tokens x hidden_size`` (PromptEmbedding).
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import PlannerError
from .job import BYTES_PER_PARAM, Job
from .params import ParamCounts, decoder_linears, layer_layouts, linear_shapes, peft_all_linear
from .spec import ModelSpec

BYTES = {k: int(BYTES_PER_PARAM[k]) for k in ("fp32", "bf16", "fp16")}  # unquantized storage
NF4_BLOCK = 64
DQ_BLOCK = 256
# Per quantized tensor: the fp32 second-level code table (256 x 4 B) plus allocator rounding;
# fitted to within 0.05% of the calibration rows' weights_bytes.
PER_QUANT_TENSOR_BYTES = 2048


@dataclass(frozen=True)
class WeightBytes:
    quantized: int          # bytes of quantized linear weights incl. their constants
    unquantized: int        # bytes of everything else (embeddings, head, norms, biases)
    quantized_params: int   # logical parameter count stored in 4 or 8 bits
    formula: str

    @property
    def total(self) -> int:
        return self.quantized + self.unquantized


def quantizable_params(spec: ModelSpec, params: ParamCounts) -> tuple[int, int]:
    """(parameters in decoder-layer linear weights, number of such tensors).

    bitsandbytes replaces ``nn.Linear`` modules only: fused 3D expert parameters (transformers 5
    MoE) and routers stay in 16-bit (seen on real 4-bit loads, tests/planner/test_mechanisms_cpu.py)."""
    n, tensors, _ = decoder_linears(spec)
    return n, tensors


def weight_bytes(spec: ModelSpec, params: ParamCounts, precision: str, *, upcast_unquantized: bool = False,
                 double_quant: bool = True) -> WeightBytes:
    """Bytes the model's parameters occupy on the GPU right after loading (and after
    ``prepare_model_for_kbit_training`` when ``upcast_unquantized``)."""
    if precision in BYTES:
        b = BYTES[precision]
        return WeightBytes(0, params.total * b, 0, f"{params.total:,} params x {b} B ({precision})")
    n_q, n_tensors = quantizable_params(spec, params)
    rest = params.total - n_q
    rest_b = 4 if upcast_unquantized else 2
    if precision == "int4":
        if double_quant:
            q = n_q // 2 + n_q // NF4_BLOCK + n_q // (NF4_BLOCK * DQ_BLOCK) * 4 + n_tensors * PER_QUANT_TENSOR_BYTES
            how = "n/2 (NF4) + n/64 (8-bit absmax) + n/16384 x 4 (fp32 absmax of absmax)"
        else:
            q = n_q // 2 + n_q // NF4_BLOCK * 4 + n_tensors * PER_QUANT_TENSOR_BYTES
            how = "n/2 (NF4) + n/64 x 4 (fp32 absmax)"
    elif precision == "int8":
        rows = decoder_linears(spec)[2]
        q = n_q + rows * 4
        how = "n x 1 (int8) + 4 B per output row (fp32 scale)"
    else:
        raise PlannerError(f"unknown precision '{precision}'")
    formula = (f"{n_q:,} quantized linear params: {how}; {rest:,} other params x {rest_b} B"
               + (" (fp32 after prepare_model_for_kbit_training)" if upcast_unquantized else " (bf16)"))
    return WeightBytes(q, rest * rest_b, n_q, formula)


def lora_targets(spec: ModelSpec, job: Job, idx: int | None = None) -> tuple[tuple[str, int, int], ...]:
    """The (name, in, out) linears of layer ``idx`` (default: a routed one, if any) that LoRA wraps."""
    shapes = peft_all_linear(spec, idx)
    wanted = job.target_modules
    if wanted is None:
        return shapes
    names = {n for i, _ in layer_layouts(spec) for n, _, _ in linear_shapes(spec, i)}
    unknown = [w for w in wanted if not any(_matches(n, w) for n in names)]
    if unknown:
        raise PlannerError(f"--lora-targets {','.join(unknown)} not in {spec.name}; "
                           f"its linear modules are {', '.join(sorted(names))}")
    return tuple(s for s in shapes if any(_matches(s[0], w) for w in wanted))


def _matches(name: str, wanted: str) -> bool:
    """PEFT's rule for a target_modules string: the module's name or its dotted suffix
    (peft.tuners.tuners_utils.check_target_module_exists), so ``gate_proj`` also targets Llama 4's
    ``shared_expert.gate_proj``. The fused experts' ``experts.*`` are parameters, not modules: a
    module name never reaches them by suffix (all-linear wraps them through ParamWrapper)."""
    return name == wanted or (name.endswith("." + wanted) and not name.startswith("experts."))


def trainable_params(spec: ModelSpec, params: ParamCounts, job: Job) -> int:
    """Parameters the optimizer updates, counted the way PEFT's print_trainable_parameters does."""
    if job.kind.trains_base:
        return params.total
    if job.kind.lora:
        return sum(n * job.lora_r * sum(i + o for _, i, o in lora_targets(spec, job, idx))
                   for idx, n in layer_layouts(spec))
    if job.kind.prompt:
        return job.num_virtual_tokens * spec.hidden_size
    return 0


def adapter_slot_bytes(spec: ModelSpec, job: Job) -> int:
    """One LoRA adapter of rank max_lora_rank in 16-bit, as a serving engine keeps it."""
    rank = job.max_lora_rank or job.lora_r
    return 2 * sum(n * rank * sum(i + o for _, i, o in lora_targets(spec, job, idx)) for idx, n in layer_layouts(spec))


# What a user passes instead of all-linear where PEFT's all-linear breaks the forward.
LLAMA4_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def all_linear_problem(spec: ModelSpec, job: Job) -> str | None:
    """Why PEFT's ``all-linear`` cannot train this model, with the fix (None when it can).

    Llama 4's router is an ``nn.Linear`` subclass whose forward returns (scores, logits); all-linear
    wraps it and PEFT's LoRA layer then reads ``.dtype`` of that tuple (AttributeError in peft 0.21,
    seen on a real step, tests/planner/test_mechanisms_cpu.py)."""
    if job.kind.lora and job.target_modules is None and spec.model_type == "llama4_text":
        return ("PEFT's all-linear wraps Llama 4's router, whose forward returns a tuple, and the LoRA forward "
                f"fails: pass --lora-targets {LLAMA4_TARGETS}")
    return None

