"""The job being planned: mode, precision, shapes, PEFT and optimizer settings, validated."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import PlannerError

MODES = ("inference", "full", "lora", "qlora", "prompt-tuning")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
# Bytes per stored parameter at each precision (4-bit packs two parameters per byte).
BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw-8bit", "sgd")
ATTENTION = ("sdpa", "eager")
# caching: PyTorch's default CUDA caching allocator; expandable: PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
ALLOCATORS = ("caching", "expandable")

# The standard Hugging Face recipe for each mode (docs/memory-model.md, "Defaults").
DEFAULT_PRECISION = {"inference": "bf16", "full": "fp32", "lora": "bf16", "qlora": "int4",
                     "prompt-tuning": "bf16"}
# Which weight precisions make sense for each mode.
ALLOWED_PRECISION = {
    "inference": ("fp32", "bf16", "fp16", "int8", "int4"),
    "full": ("fp32", "bf16", "fp16"),
    "lora": ("fp32", "bf16", "fp16"),
    "qlora": ("int4", "int8"),
    "prompt-tuning": ("fp32", "bf16", "fp16"),
}


@dataclass(frozen=True)
class Job:
    """What to run. ``precision`` is the storage precision of the base weights.

    ``full`` with fp32 means fp32 master weights and a bf16 autocast forward (mixed precision);
    with bf16 it means pure bf16 training.
    """

    mode: str = "qlora"
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
        if self.precision is None:
            object.__setattr__(self, "precision", DEFAULT_PRECISION[self.mode])
        if self.precision not in PRECISIONS:
            raise PlannerError(f"unknown precision '{self.precision}'; choose one of {', '.join(PRECISIONS)}")
        if self.precision not in ALLOWED_PRECISION[self.mode]:
            raise PlannerError(f"--mode {self.mode} does not work with --precision {self.precision} "
                               f"(use {' or '.join(ALLOWED_PRECISION[self.mode])})")
        if self.gradient_checkpointing is None:
            object.__setattr__(self, "gradient_checkpointing", self.mode != "inference")
        for name in ("seq_len", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise PlannerError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.mode in ("lora", "qlora"):
            if self.lora_r <= 0:
                raise PlannerError(f"LoRA rank must be positive, got {self.lora_r}")
            if self.lora_alpha <= 0:
                raise PlannerError(f"LoRA alpha must be positive, got {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise PlannerError(f"LoRA dropout must be in [0, 1), got {self.lora_dropout}")
        if self.mode == "prompt-tuning" and self.num_virtual_tokens <= 0:
            raise PlannerError(f"number of virtual tokens must be positive, got {self.num_virtual_tokens}")
        if self.optimizer not in OPTIMIZERS:
            raise PlannerError(f"unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
        if self.attention not in ATTENTION:
            raise PlannerError(f"unknown attention implementation '{self.attention}'; choose sdpa or eager")
        if self.compute_dtype not in ("bf16", "fp16", "fp32"):
            raise PlannerError(f"compute dtype must be bf16, fp16 or fp32, got '{self.compute_dtype}'")
        if self.adapters < 0:
            raise PlannerError(f"number of adapters must be >= 0, got {self.adapters}")
        if self.adapters and self.mode != "inference":
            raise PlannerError("--adapters plans a multi-adapter inference endpoint; use it with --mode inference")
        if self.allocator not in ALLOCATORS:
            raise PlannerError(f"unknown allocator '{self.allocator}'; choose caching (PyTorch's default) or "
                               "expandable (PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)")
        if not isinstance(self.kbit_prep, bool):
            raise PlannerError(f"kbit_prep must be true or false, got {self.kbit_prep!r}")
        if not self.kbit_prep and self.mode != "qlora":
            raise PlannerError("kbit_prep=False (the pure-bf16 FSDP-QLoRA recipe) applies to --mode qlora only")
        if self.max_lora_rank is not None and self.max_lora_rank <= 0:
            raise PlannerError(f"max LoRA rank must be positive, got {self.max_lora_rank}")

    @property
    def is_training(self) -> bool:
        return self.mode != "inference"

    @property
    def pure_bf16_qlora(self) -> bool:
        """QLoRA without prepare_model_for_kbit_training: every non-4-bit tensor stays 16-bit."""
        return self.mode == "qlora" and not self.kbit_prep

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
        return asdict(self)
