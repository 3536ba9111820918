"""Launch configuration for a multi-GPU plan: an accelerate config (FSDP, DeepSpeed ZeRO-3 or
plain DDP) and the exact ``accelerate launch`` command. Pure: values in, a frozen LaunchConfig out.

Settings follow the engines' own guides:
- FSDP full sharding with the transformer-layer wrap policy (accelerate FSDP guide,
  https://huggingface.co/docs/accelerate/usage_guides/fsdp);
- FSDP-QLoRA: ``fsdp_cpu_ram_efficient_loading: true``, ``fsdp_use_orig_params: false``,
  ``fsdp_sync_module_states: true`` and ``bnb_4bit_quant_storage`` equal to the compute dtype so
  FSDP can shard the packed 4-bit weights (PEFT "Use PEFT QLoRA and FSDP" guide,
  peft/docs/source/accelerate/fsdp.md; bitsandbytes docs/source/fsdp_qlora.md);
- LoRA under FSDP: ``use_orig_params: false`` to realise the memory savings (same PEFT guide);
- DeepSpeed ZeRO-3 with ``"auto"`` values the HF Trainer fills in, optional CPU offload of
  parameters and optimizer states (transformers "DeepSpeed" guide, ZeRO-3 example config).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping

from planner.errors import PlannerError
from planner.plan import Strategy

# The strategies a training launch knows: planner.plan.Strategy, the one vocabulary.
SINGLE, DDP, FSDP, FSDP_QLORA, ZERO3 = (Strategy.SINGLE_GPU, Strategy.DATA_PARALLEL, Strategy.FSDP,
                                        Strategy.FSDP_QLORA, Strategy.ZERO3)
STRATEGIES = (SINGLE, DDP, FSDP, FSDP_QLORA, ZERO3)
ENGINES = ("fsdp", "deepspeed")

# transformers names each architecture's decoder block <Prefix>DecoderLayer and lists it in
# ``_no_split_modules`` (checked against transformers in tests/distributed/test_config.py).
DECODER_LAYER_PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "mixtral": "Mixtral",
                        "gemma2": "Gemma2", "phi3": "Phi3"}

ENTRY_MODULE = "backend.train"
DEFAULT_PORT = 29500
ACCELERATE_FILE = "accelerate.yaml"
DEEPSPEED_FILE = "ds_zero3.json"


@dataclass(frozen=True)
class LaunchConfig:
    """Files to write (name -> text) and the argv that launches the plan with them.

    ``command`` uses ``{dir}`` where the folder holding the files goes, and ``$MACHINE_RANK`` /
    ``$MAIN_PROCESS_IP`` on multi-machine plans (set on each machine).
    """

    strategy: Strategy
    engine: str | None
    num_processes: int
    num_machines: int
    files: tuple[tuple[str, str], ...]
    command: tuple[str, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines

    def rendered_files(self, dir: str) -> list[tuple[str, str]]:
        """The files with ``{dir}`` replaced by the folder they are written to."""
        return [(name, text.replace("{dir}", dir)) for name, text in self.files]

    def argv(self, dir: str) -> list[str]:
        return [a.replace("{dir}", dir) for a in self.command]

    def shell_command(self, dir: str) -> str:
        """The command as one shell line; $VARS stay expandable, everything else is quoted."""
        return " ".join(f'"{a}"' if a.startswith("$") else shlex.quote(a) for a in self.argv(dir))

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "engine": self.engine, "num_processes": self.num_processes,
                "num_machines": self.num_machines, "processes_per_machine": self.processes_per_machine,
                "files": [name for name, _ in self.files], "command": list(self.command),
                "metadata": dict(self.metadata), "notes": list(self.notes)}


def launchable(name: str | Strategy) -> Strategy:
    """The training strategy ``name`` (exactly one of Strategy's values); PlannerError otherwise."""
    strategy = Strategy.of(name)
    if strategy is Strategy.TENSOR_PARALLEL:
        raise PlannerError(f"strategy '{name}' serves a model for inference; --emit-config launches training jobs")
    return strategy


def decoder_layer_class(model_type: str) -> str | None:
    """The transformer block FSDP wraps one unit at a time, or None for an unknown architecture
    (accelerate then wraps the model's own ``_no_split_modules``)."""
    prefix = DECODER_LAYER_PREFIX.get(model_type)
    return f"{prefix}DecoderLayer" if prefix else None


def _yaml(data: Mapping[str, Any], indent: int = 0) -> str:
    """Block-style YAML for the flat/one-level mappings accelerate configs are (no PyYAML needed)."""
    lines = []
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key}:")
            lines.append(_yaml(value, indent + 2).rstrip("\n"))
        elif isinstance(value, bool):
            lines.append(f"{pad}{key}: {'true' if value else 'false'}")
        elif value is None:
            lines.append(f"{pad}{key}: null")
        elif isinstance(value, (int, float)):
            lines.append(f"{pad}{key}: {value}")
        else:
            lines.append(f"{pad}{key}: {json.dumps(str(value))}")
    return "\n".join(lines) + "\n"


def _mixed_precision(compute_dtype: str, strategy: str, use_cpu: bool) -> str:
    if use_cpu or strategy == FSDP_QLORA:
        # FSDP-QLoRA: weights are stored in the compute dtype already (pure bf16, PEFT guide's config).
        return "no"
    return {"bf16": "bf16", "fp16": "fp16"}.get(compute_dtype, "no")


def _fsdp_section(strategy: str, mode: str, model_type: str, offload: bool) -> tuple[dict[str, Any], list[str]]:
    notes = []
    layer = decoder_layer_class(model_type)
    peft = mode in ("lora", "qlora", "prompt-tuning")
    section: dict[str, Any] = {
        "fsdp_version": 1,
        "fsdp_sharding_strategy": "FULL_SHARD",
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
    }
    if layer:
        section["fsdp_transformer_layer_cls_to_wrap"] = layer
    else:
        notes.append(f"unknown architecture '{model_type}': FSDP wraps the model's _no_split_modules")
    section.update({
        "fsdp_backward_prefetch": "BACKWARD_PRE",
        "fsdp_forward_prefetch": False,
        "fsdp_offload_params": bool(offload),
        # Adapters are small: gather them whole so the saved adapter loads with from_pretrained.
        # A full model is saved sharded; `accelerate merge-weights` consolidates it (docs/distributed.md).
        "fsdp_state_dict_type": "FULL_STATE_DICT" if peft else "SHARDED_STATE_DICT",
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_sync_module_states": True,  # required by cpu_ram_efficient_loading
        "fsdp_use_orig_params": not peft,
        "fsdp_activation_checkpointing": False,  # the entry script checkpoints (gradient_checkpointing)
    })
    return section, notes


def _deepspeed_json(offload: bool) -> dict[str, Any]:
    def device(on: bool) -> dict[str, Any]:
        return {"device": "cpu", "pin_memory": True} if on else {"device": "none"}
    return {
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": {
            "stage": 3,
            "offload_optimizer": device(offload),
            "offload_param": device(offload),
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
        },
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


def build_launch_config(strategy: str, num_processes: int, num_machines: int, model_type: str, mode: str, *,
                        compute_dtype: str = "bf16", engine: str | None = None, offload: bool = False,
                        use_cpu: bool = False, entry_args: tuple[str, ...] = (), main_process_port: int = DEFAULT_PORT,
                        metadata: Mapping[str, Any] | None = None) -> LaunchConfig:
    """The accelerate (and DeepSpeed) config and launch argv for ``strategy`` on ``num_processes``
    GPUs spread evenly over ``num_machines`` machines.

    ``engine`` picks FSDP or DeepSpeed for sharded strategies (default: the strategy's own, FSDP
    for 'fsdp'/'fsdp-qlora', DeepSpeed for 'zero3'). ``entry_args`` are the entry script's
    arguments; ``use_cpu`` makes a gloo/CPU config (tests, and machines without GPUs).
    """
    strategy = launchable(strategy)
    for name, value in (("number of processes", num_processes), ("number of machines", num_machines)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PlannerError(f"{name} must be a positive integer, got {value!r}")
    if num_processes % num_machines:
        raise PlannerError(f"{num_processes} processes do not spread evenly over {num_machines} machines")
    if mode == "inference":
        raise PlannerError("inference plans are served, not launched; --emit-config is for training modes")
    if strategy == SINGLE and num_processes > 1:
        strategy = DDP  # a plan that fits one GPU, run on several, is plain data parallelism
    if strategy in (FSDP, FSDP_QLORA) and mode == "qlora":
        strategy = FSDP_QLORA
    if engine is None:
        engine = "deepspeed" if strategy == ZERO3 else "fsdp" if strategy in (FSDP, FSDP_QLORA) else None
    elif engine not in ENGINES:
        raise PlannerError(f"unknown engine '{engine}'; choose fsdp or deepspeed")
    elif strategy in (SINGLE, DDP):
        engine = None  # nothing to shard
    if engine == "fsdp" and strategy == ZERO3:
        strategy = FSDP_QLORA if mode == "qlora" else FSDP
    if engine == "deepspeed":
        strategy = ZERO3

    notes: list[str] = []
    distributed_type = {None: "MULTI_GPU" if num_processes > 1 else "NO", "fsdp": "FSDP",
                        "deepspeed": "DEEPSPEED"}[engine]
    cfg: dict[str, Any] = {"compute_environment": "LOCAL_MACHINE", "debug": False,
                           "distributed_type": distributed_type,
                           "mixed_precision": _mixed_precision(compute_dtype, strategy, use_cpu)}
    files: list[tuple[str, str]] = []
    if engine == "fsdp":
        cfg["fsdp_config"], more = _fsdp_section(strategy, mode, model_type, offload)
        notes += more
        if use_cpu:  # accelerate looks up the GPU for sync_module_states when it builds the plugin
            cfg["fsdp_config"].update(fsdp_cpu_ram_efficient_loading=False, fsdp_sync_module_states=False)
            notes.append("CPU run: accelerate 1.x turns FSDP on only for GPU-like devices, so the CPU processes "
                         "run data-parallel (gloo); sync_module_states/cpu_ram_efficient_loading off (they need a GPU)")
    elif engine == "deepspeed":
        files.append((DEEPSPEED_FILE, json.dumps(_deepspeed_json(offload), indent=2) + "\n"))
        cfg["deepspeed_config"] = {"deepspeed_config_file": "{dir}/" + DEEPSPEED_FILE,
                                   "zero3_init_flag": True}  # shard weights while loading (zero.Init)
        # The JSON's "auto" precision follows the trainer; accelerate refuses both places set.
        del cfg["mixed_precision"]
    cfg.update({"machine_rank": 0, "num_machines": num_machines, "num_processes": num_processes,
                "main_training_function": "main", "rdzv_backend": "static",
                "same_network": True, "use_cpu": use_cpu})
    if num_machines > 1:
        cfg["main_process_port"] = main_process_port

    quant_storage = None
    if mode == "qlora" and engine is not None:
        quant_storage = {"bf16": "bfloat16", "fp16": "float32", "fp32": "float32"}[compute_dtype]
        notes.append(f"QLoRA sharded: load with bnb_4bit_quant_storage={quant_storage} and dtype={quant_storage} "
                     "(PEFT FSDP-QLoRA guide; fp16 needs float32 storage)")
    if offload:
        notes.append("CPU offload: parameters (and, under DeepSpeed, optimizer states) live in CPU RAM; "
                     "GPU memory falls, step time rises")

    command = ["accelerate", "launch", "--config_file", "{dir}/" + ACCELERATE_FILE]
    if num_machines > 1:
        command += ["--machine_rank", "$MACHINE_RANK", "--main_process_ip", "$MAIN_PROCESS_IP",
                    "--main_process_port", str(main_process_port)]
    command += ["-m", ENTRY_MODULE, *entry_args]

    meta = {"strategy": strategy, "engine": engine, "num_processes": num_processes, "num_machines": num_machines,
            "processes_per_machine": num_processes // num_machines, "model_type": model_type, "mode": mode,
            "fsdp_transformer_layer_cls_to_wrap": decoder_layer_class(model_type) if engine == "fsdp" else None,
            "bnb_4bit_quant_storage": quant_storage, "offload": bool(offload), "use_cpu": use_cpu,
            **dict(metadata or {})}
    text = "# Generated by `plan --emit-config` (backend/distributed); see docs/distributed.md\n" + _yaml(cfg)
    files.insert(0, (ACCELERATE_FILE, text))
    return LaunchConfig(strategy=strategy, engine=engine, num_processes=num_processes, num_machines=num_machines,
                        files=tuple(files), command=tuple(command), metadata=meta, notes=tuple(notes))
