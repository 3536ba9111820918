"""The plan: one typed, versioned document from ``plan MODEL ... --execute`` to the GPU.

Every launcher (backend/local.py, backend/distributed, backend/sagemaker) builds a ``Plan`` and
writes ``plan.to_json()`` as plan.json; backend/train.py reads it back with ``Plan.from_json``,
which checks it and fails with one line naming the field. It lives in the planner core (standard
library only) so every layer can use it; pricing's result objects stay in pricing and cross into
the plan as the plain ``Machine`` below.

plan.json keeps the estimate's own document (``MemoryEstimate.to_dict()``: model, memory, job...)
at the top level beside ``schema_version``, ``training`` (the run settings), ``machine`` and the
launch blocks, so a plan is still readable as the estimate it was made from.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any, Mapping

from .credentials import credential_problem
from .errors import PlannerError
from .job import Job

SCHEMA_VERSION = 1


class Strategy(str, Enum):
    """How a job spreads over GPUs: the names pricing/fit.py chooses between (tensor-parallel for
    inference only), plus ZeRO-3, the DeepSpeed alternative --emit-config writes beside a sharded
    plan. The one vocabulary: nothing maps other spellings onto these."""

    SINGLE_GPU = "single-gpu"
    DATA_PARALLEL = "data-parallel"
    FSDP = "fsdp"
    FSDP_QLORA = "fsdp-qlora"
    ZERO3 = "zero3"
    TENSOR_PARALLEL = "tensor-parallel"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def sharded(self) -> bool:
        return self in (Strategy.FSDP, Strategy.FSDP_QLORA, Strategy.ZERO3)

    @classmethod
    def of(cls, name: "str | Strategy | None") -> "Strategy":
        """The strategy named ``name`` exactly (None: one GPU); a one-line error for anything else."""
        if name is None:
            return cls.SINGLE_GPU
        try:
            return cls(name)
        except ValueError:
            raise PlannerError(f"unknown strategy '{name}'; known: {', '.join(s.value for s in cls)}") from None


@dataclass(frozen=True)
class Machine:
    """The machine the plan runs on, as pricing chose it (or the local GPUs)."""

    instance_type: str
    platform: str
    strategy: Strategy = Strategy.SINGLE_GPU
    gpu_count: int = 1  # over all machines
    machines: int = 1
    per_gpu_bytes: int | None = None

    @classmethod
    def of(cls, candidate: Any) -> "Machine":
        """From a pricing Candidate/Fit-like object (attributes, not a dict read back with synonyms)."""
        return cls(instance_type=str(candidate.instance_type), platform=str(candidate.platform),
                   strategy=Strategy.of(candidate.strategy), gpu_count=int(candidate.gpu_count or 1),
                   machines=int(candidate.machines or 1), per_gpu_bytes=candidate.per_gpu_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "strategy": self.strategy.value}


@dataclass(frozen=True)
class RunSettings:
    """The run settings (plan.json's ``training`` block): what the trainer needs beyond the job.

    The one definition: the CLI's execution flags fill it, every launcher writes it, train.py's
    flags override it.
    """

    model: str
    dataset: str | None  # None until given (--emit-config plans take it on the launch line)
    output_dir: str
    eval_dataset: str | None = None
    eval_fraction: float = 0.0
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float | None = None
    save_steps: int = 100
    logging_steps: int | None = None  # default: every min(10, save_steps) steps, and the last
    save_total_limit: int | None = 2
    experiment: str | None = None
    seed: int = 0
    register: bool = True
    adapter_name: str | None = None
    checkpoint_dir: str | None = None  # default OUTPUT/checkpoints; SageMaker: /opt/ml/checkpoints
    track: bool = True

    @classmethod
    def from_dict(cls, block: Mapping[str, Any], **overrides: Any) -> "RunSettings":
        """Checked settings; ``overrides`` (the trainer's flags) win where not None."""
        block = {k: v for k, v in dict(block).items() if v is not None}
        block.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise PlannerError(f"plan.json 'training' has unknown field(s) {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(known))}")
        for req in ("model", "dataset", "output_dir"):
            if not block.get(req):
                raise PlannerError(f"no {req.replace('_', ' ')} given: set training.{req} in the plan or pass "
                                   f"--{req.replace('_', '-')}")
        try:
            s = cls(**block)
        except TypeError as exc:
            raise PlannerError(f"plan.json 'training': {exc}") from None
        return s if s.logging_steps is not None else replace(s, logging_steps=min(10, s.save_steps))

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps <= 0:
            raise PlannerError(f"--max-steps must be positive, got {self.max_steps}")
        if self.save_steps <= 0 or (self.logging_steps is not None and self.logging_steps <= 0):
            raise PlannerError("--save-steps and logging steps must be positive")
        if self.learning_rate is not None and self.learning_rate <= 0:
            raise PlannerError(f"--learning-rate must be positive, got {self.learning_rate}")
        for name in ("experiment", "model", "dataset", "eval_dataset", "output_dir", "adapter_name", "checkpoint_dir"):
            value = getattr(self, name)
            problem = credential_problem(value) if isinstance(value, str) else None
            if problem:  # plan.json goes to S3, run.json and MLflow: a credential there is stored in clear
                raise PlannerError(f"--{name.replace('_', '-')} {problem}; nothing was written: give the value "
                                   "without it (credentials go in the environment, e.g. MLFLOW_TRACKING_PASSWORD)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """One job, its estimate, the machine and strategy, and the run settings."""

    job: Job
    training: RunSettings
    estimate: Mapping[str, Any]  # MemoryEstimate.to_dict(): model, memory, seed_rule, notes
    machine: Machine | None = None
    backend: str = "local"  # local | sagemaker | emit
    model_name: str | None = None  # what the user typed (an alias, Hub id or folder)
    distributed: Mapping[str, Any] | None = None  # backend/distributed's launch metadata
    request: Mapping[str, Any] | None = None  # SageMaker: the training request sent
    costs: Mapping[str, Any] | None = None  # pricing's result, for the record
    schema_version: int = SCHEMA_VERSION

    @property
    def strategy(self) -> Strategy:
        if self.distributed and self.distributed.get("strategy"):
            return Strategy.of(self.distributed["strategy"])
        return self.machine.strategy if self.machine else Strategy.SINGLE_GPU

    @property
    def hf_id(self) -> str | None:
        return (self.estimate.get("model") or {}).get("hf_id")

    @property
    def memory(self) -> Mapping[str, Any]:
        return self.estimate.get("memory") or {}

    def with_(self, **changes: Any) -> "Plan":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {**self.estimate, "schema_version": self.schema_version, "backend": self.backend,
                               "job": self.job.to_dict(), "training": self.training.to_dict(),
                               "machine": self.machine.to_dict() if self.machine else None}
        if self.model_name is not None:
            doc["model_name"] = self.model_name
        for name in ("distributed", "request", "costs"):
            if getattr(self, name) is not None:
                doc[name] = dict(getattr(self, name))
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, where: str = "plan.json", **overrides: Any) -> "Plan":
        """A checked plan; ``overrides`` replace run settings (train.py's flags). One-line errors."""
        if not isinstance(doc, Mapping) or "job" not in doc:
            raise PlannerError(f"{where} is not a plan (no 'job'); write one with `plan MODEL --mode M --execute`")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PlannerError(f"{where} has schema_version {version!r}; this trainer reads version {SCHEMA_VERSION}: "
                               "write the plan again with this version of `plan`")
        job_doc = doc["job"]
        if not isinstance(job_doc, Mapping):
            raise PlannerError(f"{where}: 'job' must be an object")
        known = {f.name for f in fields(Job)}
        unknown = sorted(set(job_doc) - known)
        if unknown:
            raise PlannerError(f"{where} 'job' has unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            job = Job(**job_doc)
        except TypeError as exc:
            raise PlannerError(f"{where} 'job': {exc}") from None
        machine = None
        if doc.get("machine"):
            m = dict(doc["machine"])
            try:
                machine = Machine(**{**m, "strategy": Strategy.of(m.get("strategy"))})
            except TypeError as exc:
                raise PlannerError(f"{where} 'machine': {exc}") from None
        if doc.get("distributed") and doc["distributed"].get("strategy"):
            Strategy.of(doc["distributed"]["strategy"])  # checked here, not at the first sharded step
        own = {"schema_version", "backend", "job", "training", "machine", "model_name", "distributed", "request",
               "costs"}
        return cls(job=job, training=RunSettings.from_dict(doc.get("training") or {}, **overrides),
                   estimate={k: v for k, v in doc.items() if k not in own}, machine=machine,
                   backend=str(doc.get("backend") or "local"), model_name=doc.get("model_name"),
                   distributed=doc.get("distributed"), request=doc.get("request"), costs=doc.get("costs"),
                   schema_version=version)

    @classmethod
    def from_json(cls, text: str, *, where: str = "plan.json", **overrides: Any) -> "Plan":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlannerError(f"{where} line {exc.lineno}: not valid JSON ({exc.msg})") from None
        return cls.from_dict(doc, where=where, **overrides)


def plan_for(est: Any, training: RunSettings, **extra: Any) -> Plan:
    """The plan of a MemoryEstimate (``est``) and run settings; ``extra`` fills the other fields."""
    return Plan(job=est.job, training=training, estimate=_estimate_doc(est), **extra)


def _estimate_doc(est: Any) -> dict[str, Any]:
    doc = est.to_dict()
    doc.pop("job", None)  # the Plan's own typed field
    return doc
