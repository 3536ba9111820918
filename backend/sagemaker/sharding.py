"""FSDP settings for a SageMaker job whose plan shards the model over several GPUs.

SageMaker's Torchrun starts one entry-script process per GPU; on its own that is data
parallelism (a full replica per GPU). For the plan's ``fsdp`` / ``fsdp-qlora`` strategies the
processes must shard instead. ``accelerate launch`` does that by turning its config file into
``ACCELERATE_USE_FSDP`` / ``FSDP_*`` environment variables that the Trainer's Accelerator reads;
this module builds the same config (backend/distributed, the --emit-config code) and asks
accelerate's own launcher code for those variables, which then go into the job's environment.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from planner.plan import Machine

from .errors import SageMakerError

# Variables the launcher sets per process or per machine: torchrun sets those on SageMaker.
_PER_PROCESS = ("ACCELERATE_DYNAMO_",)


def launch_settings(est: Any, machine: Machine) -> tuple[dict[str, str], dict[str, Any]]:
    """(environment, plan.json ``distributed`` block) for the chosen SageMaker machine.

    Empty environment for one GPU and plain data parallelism (torchrun alone is right there).
    """
    from backend.distributed.config import DDP, FSDP, FSDP_QLORA, SINGLE, ZERO3
    from backend.distributed.launch import plan_launch

    cfg = plan_launch(est, machine)
    block = dict(cfg.metadata)
    if cfg.strategy in (SINGLE, DDP):
        return {}, block
    if cfg.strategy == ZERO3 or cfg.engine != "fsdp":
        raise SageMakerError(f"the plan's strategy {cfg.strategy} ({cfg.engine}) is not launched on SageMaker; "
                             "plans with FSDP are (run `plan ... --emit-config DIR` for DeepSpeed)")
    assert cfg.strategy in (FSDP, FSDP_QLORA)
    from accelerate.commands.launch import launch_command_parser
    from accelerate.utils import prepare_multi_gpu_env

    from backend.compat import validate_launch_command

    with tempfile.TemporaryDirectory(prefix="plan-fsdp-") as tmp:
        for name, text in cfg.rendered_files(tmp):
            Path(tmp, name).write_text(text)
        config = Path(tmp, cfg.files[0][0])
        args = launch_command_parser().parse_args(["--config_file", str(config), "train.py"])
        args, _defaults, _mp = validate_launch_command(args)
        env = prepare_multi_gpu_env(args)
    keep = {k: str(v) for k, v in env.items()
            if (k.startswith("FSDP_") or k.startswith("ACCELERATE_")) and not k.startswith(_PER_PROCESS)}
    return keep, block
