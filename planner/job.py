"""The job being planned: mode, precision, shapes, PEFT and optimizer settings, validated."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import PlannerError

class Mode(StrEnum):
    """What the job does, and what the memory model asks of it. A ``str`` (``Mode.QLORA ==
    "qlora"``), so plan files, JSON and the layers that still compare strings keep working.

    ``trains``: a training step (gradients, optimizer); ``trains_base``: every base weight is
    trainable (full fine-tuning); ``quantized_base``: the frozen base is loaded 4/8-bit by
    bitsandbytes; ``adapter``: what is trained beside a frozen base ("lora", "prompt" or None);
    ``precision``: the standard Hugging Face recipe's storage precision; ``precisions``: those
    that make sense (docs/memory-model.md, "Defaults")."""

    trains: bool
    trains_base: bool
    quantized_base: bool
    adapter: str | None
    precision: str
    precisions: tuple[str, ...]

    def __new__(cls, value: str, trains: bool, trains_base: bool, quantized_base: bool, adapter: str | None,
                precision: str, precisions: tuple[str, ...]) -> "Mode":
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.trains, obj.trains_base, obj.quantized_base, obj.adapter = trains, trains_base, quantized_base, adapter
        obj.precision, obj.precisions = precision, precisions
        return obj

    INFERENCE = ("inference", False, False, False, None, "bf16", ("fp32", "bf16", "fp16", "int8", "int4"))
    FULL = ("full", True, True, False, None, "fp32", ("fp32", "bf16", "fp16"))
    LORA = ("lora", True, False, False, "lora", "bf16", ("fp32", "bf16", "fp16"))
    QLORA = ("qlora", True, False, True, "lora", "int4", ("int4", "int8"))
    PROMPT_TUNING = ("prompt-tuning", True, False, False, "prompt", "bf16", ("fp32", "bf16", "fp16"))

    def __str__(self) -> str:
        return self.value

    @property
    def lora(self) -> bool:
        """LoRA adapters on the linears (LoRA and QLoRA)."""
        return self.adapter == "lora"

    @property
    def prompt(self) -> bool:
        """Trainable virtual tokens before the sequence (prompt tuning)."""
        return self.adapter == "prompt"

    def trainable_param_bytes(self, precision: str, kbit_prep: bool = True) -> int:
        """Bytes per trainable parameter (and per gradient and AdamW state element): the base's own
        dtype in full fine-tuning (fp32 master weights, or pure 16-bit); fp32 adapters otherwise
        (PEFT's autocast_adapter_dtype), except bf16 ones in the pure-bf16 FSDP-QLoRA recipe."""
        if self.trains_base:
            return 4 if precision == "fp32" else 2
        return 2 if self.quantized_base and not kbit_prep else 4


MODES = tuple(m.value for m in Mode)
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
# Bytes per stored parameter at each precision (4-bit packs two parameters per byte).
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd")
ATTENTION = ("sdpa", "eager")
# caching: PyTorch's default CUDA caching allocator; expandable: PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
ALLOCATORS = ("caching", "expandable")

# The standard Hugging Face recipe for each mode (docs/memory-model.md, "Defaults"), and the weight
# precisions that make sense for it: what the Mode members carry, by name.
DEFAULT_PRECISION = {m.value: m.precision for m in Mode}
ALLOWED_PRECISION = {m.value: m.precisions for m in Mode}


@dataclass(frozen=True)
class Job:
    """What to run. ``precision`` is the storage precision of the base weights.

    ``full`` with fp32 means fp32 master weights and a bf16 autocast forward (mixed precision);
    with bf16 it means pure bf16 training.
    """

    mode: Mode | str = Mode.QLORA
    precision: str | None = None
    seq_len: int = 2048
    batch_size: int = 1
    gradient_checkpointing: bool | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"
    num_virtual_tokens: int = 20
    optimizer: str = "adamw"
    attention: str = "sdpa"
    compute_dtype: str = "bf16"
    adapters: int = 0
    max_lora_rank: int | None = None
    allocator: str = "caching"
    # QLoRA only. True: ``prepare_model_for_kbit_training`` (fp32 embeddings, head, norms and residual
    # stream, fp32 adapters), the single-GPU recipe. False: the pure-bf16 recipe of FSDP-QLoRA
    # (``bnb_4bit_quant_storage=bf16``, nothing upcast, adapters in bf16; backend/recipes/fsdp_qlora.py).
    kbit_prep: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PlannerError(f"unknown mode '{self.mode}'; choose one of {', '.join(MODES)}")
        mode = Mode(self.mode)
        object.__setattr__(self, "mode", mode)
        if self.precision is None:
            object.__setattr__(self, "precision", mode.precision)
        if self.precision not in PRECISIONS:
            raise PlannerError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.precision not in mode.precisions:
            raise PlannerError(f"--mode {mode} does not work with --precision {self.precision} "
                               f"(use {' or '.join(mode.precisions)})")
        if self.gradient_checkpointing is None:
            object.__setattr__(self, "gradient_checkpointing", mode.trains)
        for name in ("seq_len", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PlannerError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if mode.lora:
            if self.lora_r <= 0:
                raise PlannerError(f"LoRA rank must be positive, got {self.lora_r}")
            if self.lora_alpha <= 0:
                raise PlannerError(f"LoRA alpha must be positive, got {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise PlannerError(f"LoRA dropout must be in [0, 1), got {self.lora_dropout}")
        if mode.prompt and self.num_virtual_tokens <= 0:
            raise PlannerError(f"number of virtual tokens must be positive, got {self.num_virtual_tokens}")
        if self.optimizer not in OPTIMIZERS:
            raise PlannerError(f"unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
        if self.attention not in ATTENTION:
            raise PlannerError(f"unknown attention implementation '{self.attention}'; choose sdpa or eager")
        if self.compute_dtype not in ("bf16", "fp16", "fp32"):
            raise PlannerError(f"compute dtype must be bf16, fp16 or fp32, got '{self.compute_dtype}'")
        if self.adapters < 0:
            raise PlannerError(f"number of adapters must be >= 0, got {self.adapters}")
        if self.adapters and mode.trains:
            raise PlannerError("--adapters plans a multi-adapter inference endpoint; use it with --mode inference")
        if self.allocator not in ALLOCATORS:
            raise PlannerError(f"unknown allocator '{self.allocator}'; choose caching (PyTorch's default) or "
                               "expandable (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)")
        if not isinstance(self.kbit_prep, bool):
            raise PlannerError(f"kbit_prep must be true or false, got {self.kbit_prep!r}")
        if not self.kbit_prep and not mode.quantized_base:
            raise PlannerError("kbit_prep=False (the pure-bf16 FSDP-QLoRA recipe) applies to --mode qlora only")
        if self.max_lora_rank is not None and self.max_lora_rank <= 0:
            raise PlannerError(f"max LoRA rank must be positive, got {self.max_lora_rank}")

    @property
    def kind(self) -> Mode:
        """``mode`` as the Mode it always is after validation (typed for the checker)."""
        return Mode(self.mode)

    @property
    def is_training(self) -> bool:
        return self.kind.trains

    @property
    def pure_bf16_qlora(self) -> bool:
        """QLoRA without prepare_model_for_kbit_training: every non-4-bit tensor stays 16-bit."""
        return self.kind.quantized_base and not self.kbit_prep

    @property
    def kbit_upcast(self) -> bool:
        """QLoRA with prepare_model_for_kbit_training: fp32 embeddings, head, norms, residual stream."""
        return self.kind.quantized_base and self.kbit_prep

    @property
    def trainable_param_bytes(self) -> int:
        return self.kind.trainable_param_bytes(self.precision, self.kbit_prep)

    @property
    def tokens_per_sequence(self) -> int:
        """Positions per sequence: ``seq_len`` plus prompt tuning's virtual tokens."""
        return self.seq_len + (self.num_virtual_tokens if self.kind.prompt else 0)

    @property
    def target_modules(self) -> tuple[str, ...] | None:
        """None means PEFT's 'all-linear' (every linear in the decoder layers, not lm_head)."""
        if self.lora_targets.strip() in ("all-linear", "all_linear", "all"):
            return None
        names = tuple(t.strip() for t in self.lora_targets.split(",") if t.strip())
        if not names:
            raise PlannerError("--lora-targets is empty; give all-linear or module names like q_proj,v_proj")
        return names

    def with_(self, **changes: Any) -> "Job":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mode": str(self.mode)}
