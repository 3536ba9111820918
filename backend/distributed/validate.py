"""Check a generated accelerate config the way ``accelerate launch`` reads it.

Three steps, all accelerate's own code: ``load_config_from_file`` (rejects unknown keys), the
launch command's argument merging (``_validate_launch_command``, what ``accelerate launch
--config_file`` runs first), then the environment the launcher would hand the processes, turned
into accelerate's plugin objects (``FullyShardedDataParallelPlugin`` / ``DeepSpeedPlugin``), which
validate every field. Imports accelerate: only used when writing or testing configs.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from planner.errors import PlannerError


@dataclass(frozen=True)
class CheckedConfig:
    """What accelerate read from the file."""

    path: str
    distributed_type: str
    num_processes: int
    num_machines: int
    mixed_precision: str
    plugin: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "distributed_type": self.distributed_type, "num_processes": self.num_processes,
                "num_machines": self.num_machines, "mixed_precision": self.mixed_precision,
                "plugin": self.plugin, "notes": list(self.notes)}


@contextmanager
def _environ(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _has_accelerator() -> bool:
    import torch
    return bool(torch.cuda.is_available())


def validate_config(path: str | os.PathLike[str]) -> CheckedConfig:
    """Load ``path`` with accelerate and build its plugin; PlannerError naming the problem."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    from backend.compat import validate_launch_command

    path = str(path)
    try:
        cluster = load_config_from_file(path)
        args = launch_command_parser().parse_args(["--config_file", path, "train.py"])
        args, defaults, mp_from_config = validate_launch_command(args)
        notes: list[str] = []
        plugin: dict[str, Any] = {}
        if args.use_fsdp:
            plugin, notes = _fsdp_plugin(args)
        elif args.use_deepspeed:
            plugin = _deepspeed_plugin(args, defaults, mp_from_config)
    except (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError) as exc:
        raise PlannerError(f"accelerate rejects {path}: {str(exc).splitlines()[0]}") from None
    return CheckedConfig(path=path, distributed_type=str(cluster.distributed_type.value),
                         num_processes=int(args.num_processes), num_machines=int(args.num_machines),
                         mixed_precision=str(args.mixed_precision), plugin=plugin, notes=tuple(notes))


def _fsdp_plugin(args) -> tuple[dict[str, Any], list[str]]:
    from accelerate.utils import FullyShardedDataParallelPlugin, prepare_multi_gpu_env

    env = prepare_multi_gpu_env(args)
    notes = []
    from_file = {k: env.get(k) == "true" for k in ("FSDP_SYNC_MODULE_STATES", "FSDP_CPU_RAM_EFFICIENT_LOADING")}
    if from_file["FSDP_SYNC_MODULE_STATES"] and not _has_accelerator():
        # accelerate resolves the GPU for sync_module_states when the plugin is built; without one,
        # check every other field and keep the config's own values for these two.
        env = {**env, "FSDP_SYNC_MODULE_STATES": "false", "FSDP_CPU_RAM_EFFICIENT_LOADING": "false"}
        notes.append("no GPU here: sync_module_states/cpu_ram_efficient_loading read from the file, not built")
    with _environ({k: str(v) for k, v in env.items()}):
        p = FullyShardedDataParallelPlugin()
    return {"fsdp_version": p.fsdp_version, "sharding_strategy": str(getattr(p.sharding_strategy, "name", p.sharding_strategy)),
            "transformer_cls_names_to_wrap": p.transformer_cls_names_to_wrap,
            "use_orig_params": p.use_orig_params, "state_dict_type": str(getattr(p.state_dict_type, "name", p.state_dict_type)),
            "cpu_offload": bool(getattr(p.cpu_offload, "offload_params", p.cpu_offload)),
            "cpu_ram_efficient_loading": from_file["FSDP_CPU_RAM_EFFICIENT_LOADING"] or bool(p.cpu_ram_efficient_loading),
            "sync_module_states": from_file["FSDP_SYNC_MODULE_STATES"] or bool(p.sync_module_states)}, notes


def _deepspeed_plugin(args, defaults, mp_from_config: bool) -> dict[str, Any]:
    from accelerate.utils import DeepSpeedPlugin, prepare_deepspeed_cmd_env

    # As accelerate's launch_command does before handing over to the DeepSpeed launcher.
    fields = list(defaults.deepspeed_config.keys()) if defaults else []
    if mp_from_config:
        fields.append("mixed_precision")
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)
    _cmd, env = prepare_deepspeed_cmd_env(args)
    with _environ({k: str(v) for k, v in env.items()}):
        p = DeepSpeedPlugin()
    z = p.deepspeed_config["zero_optimization"]
    return {"zero_stage": p.zero_stage, "offload_param_device": p.offload_param_device,
            "offload_optimizer_device": p.offload_optimizer_device, "zero3_init_flag": p.zero3_init_flag,
            "gather_16bit_weights_on_model_save": z.get("stage3_gather_16bit_weights_on_model_save")}

