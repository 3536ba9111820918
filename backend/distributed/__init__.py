"""Beyond one GPU: launch configuration for multi-GPU and multi-machine plans (issue #7).

``build_launch_config`` (pure, config.py) turns a strategy, process and machine counts, the
architecture and the mode into accelerate/DeepSpeed files and the ``accelerate launch`` command;
``emit`` (launch.py) writes them for ``plan ... --emit-config DIR``; ``launch_local`` runs them
here; ``validate.validate_config`` loads a written config with accelerate. docs/distributed.md.
"""
from __future__ import annotations

from .config import STRATEGIES, LaunchConfig, build_launch_config, decoder_layer_class, launchable
from .launch import Emitted, emit, launch_local, plan_launch, recommended_machine, run_on_local_gpus, write_launch

__all__ = ["STRATEGIES", "Emitted", "LaunchConfig", "build_launch_config", "decoder_layer_class", "launchable",
           "emit", "launch_local", "plan_launch", "recommended_machine", "run_on_local_gpus", "write_launch"]
