"""Plan inputs for the SageMaker tests: a real memory estimate and pricing results written by hand.

The pricing result holds real ``pricing.choose.Candidate`` objects (recommendation + candidates)
and ``to_dict()`` like ``PlanCosts``; each one below says why it is there.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from planner.estimate import estimate
from pricing.choose import Candidate

MODEL = "qwen2.5-0.5b"


@dataclass(frozen=True)
class Costs:
    recommendation: Candidate | None
    candidates: tuple[Candidate, ...]

    def __init__(self, data: dict[str, Any]):
        object.__setattr__(self, "recommendation", data["recommendation"])
        object.__setattr__(self, "candidates", tuple(data["candidates"]))

    def to_dict(self) -> dict[str, Any]:
        return {"recommendation": self.recommendation.to_dict() if self.recommendation else None,
                "candidates": [c.to_dict() for c in self.candidates]}


def sm_row(instance_type: str, gpus: int, usd_per_machine: float | None, hours: float | None = 2.0,
           machines: int = 1, strategy: str | None = None, **extra: Any) -> Candidate:
    """A pricing.choose.Candidate (usd_per_hour: all machines)."""
    total = None if usd_per_machine is None else usd_per_machine * machines
    row = {"instance_type": instance_type, "platform": "sagemaker", "region": "us-east-1", "usage": "training",
           "gpus_per_machine": gpus, "fits": True, "reason": "fits", "machines": machines,
           "gpu_count": gpus * machines, "strategy": strategy or ("single-gpu" if gpus * machines == 1 else "fsdp"),
           "usd_per_hour_per_machine": usd_per_machine, "usd_per_hour": total, "job_hours": hours,
           "job_usd": None if hours is None or total is None else round(hours * total, 2)}
    row.update(extra)
    return Candidate(gpu_model="test GPU", gpu_memory_gib=None, **row)


# One A10G, $1.515/h (SMK-A price of ml.g5.2xlarge), 2 h: $3.03 estimated.
ONE_GPU = Costs({"recommendation": sm_row("ml.g5.2xlarge", 1, 1.515),
                 "candidates": [sm_row("ml.g5.2xlarge", 1, 1.515)]})
# Four A10Gs on one machine, a replica on each: Torchrun with 4 processes, plain data parallelism.
FOUR_GPU = Costs({"recommendation": sm_row("ml.g5.12xlarge", 4, 7.09, strategy="data-parallel"),
                  "candidates": [sm_row("ml.g5.12xlarge", 4, 7.09, strategy="data-parallel")]})
# Two machines of 8 GPUs, the model sharded (FSDP): Torchrun on 2 nodes + accelerate's FSDP settings.
TWO_NODES = Costs({"recommendation": sm_row("ml.p4d.24xlarge", 8, 25.25, machines=2),
                   "candidates": [sm_row("ml.p4d.24xlarge", 8, 25.25, machines=2)]})
# EC2 is cheaper and recommended; the SageMaker fit must be picked from the candidates,
# and the SageMaker row that does not fit must be skipped although it is cheaper.
EC2_ROW = replace(sm_row("g5.2xlarge", 1, 1.212), platform="ec2", usage="on-demand")
EC2_FIRST = Costs({"recommendation": EC2_ROW,
                   "candidates": [EC2_ROW,
                                  sm_row("ml.g4dn.xlarge", 1, 0.736, fits=False),
                                  sm_row("ml.g5.2xlarge", 1, 1.515)]})
# Only EC2 machines: no SageMaker candidate at all.
EC2_ONLY = Costs({"recommendation": EC2_ROW, "candidates": [EC2_ROW]})
# A SageMaker machine without a known price.
UNPRICED = Costs({"recommendation": sm_row("ml.g5.2xlarge", 1, None), "candidates": [sm_row("ml.g5.2xlarge", 1, None)]})


@dataclass
class Opts:
    """The fields of backend.execute.ExecuteOptions that the SageMaker backend reads."""

    dataset: str | None = None
    role: str | None = None
    bucket: str | None = None
    region: str | None = "us-east-1"
    spot: bool = False
    max_cost: float | None = None
    dry_run: bool = False
    yes: bool = True
    wait: bool = False
    as_json: bool = True
    max_steps: int | None = 5
    epochs: float | None = 1.0
    learning_rate: float | None = 2e-4
    save_steps: int | None = None
    experiment: str | None = None
    backend: str = "sagemaker"
    force: bool = False
    output_dir: Path | None = None
    emit_config: Path | None = None
    execute: bool = True
    extra: dict = field(default_factory=dict)


def qlora_estimate():
    return estimate(MODEL, mode="qlora")
