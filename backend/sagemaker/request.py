"""The whole SageMaker training request as one frozen value, built from plain numbers.

``build_training_request`` is pure: the plan's SageMaker choice (instance type and count,
hours, price), the account's role and bucket, and the run options go in; a
``TrainingRequest`` comes out. ``--dry-run`` prints it, ``launch`` turns it into a
``ModelTrainer`` call, and the tests assert on it. Secrets appear here by name only.

The run settings travel in one place: plan.json beside the entry script (``container_settings``
builds them with the container's paths). The job's hyperparameters only point at that file.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from backend import execute
from planner.plan import RunSettings, Strategy

from .errors import SageMakerError

# SageMaker's limit for MaxRuntimeInSeconds and MaxWaitTimeInSeconds: 28 days.
MAX_RUNTIME_S = 28 * 24 * 3600
RUNTIME_MARGIN = 1.5          # max runtime = estimate x 1.5 + 30 min (start-up, model download, saves)
RUNTIME_OVERHEAD_S = 1800
MIN_RUNTIME_S = 3600
DEFAULT_RUNTIME_S = 24 * 3600  # when the plan has no time estimate (no --tokens / data set size)
SPOT_WAIT_FACTOR = 2           # spot: wait up to twice the runtime for capacity and restarts
# Environment variables forwarded to the job when set locally. Their values go to the job's
# Environment only: never to hyperparameters, the plan file, the dry-run output or logs.
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN")
# Where the container puts things (SageMaker's fixed layout).
CHANNEL = "train"
DATA_DIR = f"/opt/ml/input/data/{CHANNEL}"
MODEL_DIR = "/opt/ml/model"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
ENTRY_SCRIPT = "backend/train.py"  # the local backend's entry script, same file
PLAN_FILE = "plan.json"
REQUIREMENTS_FILE = "requirements.txt"
# The entry script's only flag: every run setting is in plan.json (issue 15: one carrier).
HYPERPARAMETERS = {"plan": PLAN_FILE}


@dataclass(frozen=True)
class SageMakerChoice:
    """The plan's SageMaker machine: what pricing recommended (or the cheapest SageMaker fit)."""

    instance_type: str
    instance_count: int
    gpus_per_instance: int
    usd_per_hour: float | None     # per machine; with spot the managed-spot estimate (None: no price known)
    job_hours: float | None
    job_usd: float | None          # all instances, whole job
    strategy: Strategy | None = None  # pricing's strategy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainingRequest:
    """Everything a launch sends to SageMaker (secrets by name only)."""

    job_name: str
    base_job_name: str
    region: str
    role_arn: str
    image_uri: str
    instance_type: str
    instance_count: int
    gpus_per_instance: int
    volume_size_gb: int
    distributed: str | None          # "torchrun" when the plan uses several GPUs or machines
    processes_per_node: int
    spot: bool
    max_runtime_s: int
    max_wait_s: int | None
    entry_script: str
    requirements: str
    hyperparameters: Mapping[str, str]
    environment: Mapping[str, str]   # plain settings only
    secret_env: tuple[str, ...]      # names of variables forwarded from the local environment
    dataset: str                     # what the user gave: a local path or an s3:// URI
    dataset_s3_uri: str              # where the job reads it (a local data set is uploaded here)
    output_s3_uri: str
    checkpoint_s3_uri: str
    tags: tuple[tuple[str, str], ...]
    usd_per_hour: float | None       # per machine: the training price, or with spot the managed-spot estimate
    estimated_hours: float | None
    estimated_usd: float | None
    max_usd: float | None            # the cost if the job runs until max runtime
    max_cost: float | None
    notes: tuple[str, ...] = field(default=())
    training: RunSettings | None = None  # what plan.json's "training" carries (not repeated in to_dict)

    @property
    def needs_upload(self) -> bool:
        return not self.dataset.startswith("s3://")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("training")
        d["hyperparameters"] = dict(self.hyperparameters)
        d["environment"] = {**self.environment,
                            **{name: "<set from the local environment; not shown>" for name in self.secret_env}}
        d["tags"] = [{"Key": k, "Value": v} for k, v in self.tags]
        d["secret_env"] = list(self.secret_env)
        d["notes"] = list(self.notes)
        return d


def _is_sagemaker(c: Any) -> bool:
    return c.platform == "sagemaker"


def sagemaker_candidate(costs: Any) -> Any:
    """The SageMaker candidate of a pricing result (``pricing.costs.PlanCosts``, typed).

    The recommendation when it is a SageMaker instance, else the cheapest SageMaker candidate
    that fits; a clear error when the plan has none.
    """
    if costs is None:
        raise SageMakerError("the plan has no prices, so no SageMaker instance was chosen; run without "
                             "--no-pricing and with --platform sagemaker (or any)")
    rec = costs.recommendation
    if rec is not None and _is_sagemaker(rec) and rec.fits:
        return rec
    options = [c for c in costs.candidates if _is_sagemaker(c) and c.fits]
    limited = [c for c in costs.candidates if _is_sagemaker(c) and ("over --max-cost" in c.reason
                                                                     or "over --max-hours" in c.reason)]
    if not options and limited:  # pricing applied --max-cost / --max-hours (start-up included)
        c = limited[0]
        raise SageMakerError(f"no SageMaker instance is within the limits: {c.instance_type} {c.reason}")
    if not options:
        raise SageMakerError("no SageMaker instance fits this plan; try --platform sagemaker with more "
                             "--max-gpus, a smaller --seq-len/--batch-size, or --mode qlora")
    return min(options, key=lambda c: (math.inf if c.job_usd is None else c.job_usd,
                                       math.inf if c.usd_per_hour is None else c.usd_per_hour))


def sagemaker_choice(costs: Any) -> SageMakerChoice:
    """The plan's SageMaker machine as plain numbers (see ``sagemaker_candidate``)."""
    c = sagemaker_candidate(costs)
    count = c.machines
    per_machine = c.usd_per_hour_per_machine
    if per_machine is None and c.usd_per_hour is not None:
        per_machine = c.usd_per_hour / count  # pricing's usd_per_hour is for all machines
    return SageMakerChoice(instance_type=c.instance_type, instance_count=count, gpus_per_instance=c.gpus_per_machine,
                           usd_per_hour=per_machine, job_hours=c.job_hours, job_usd=c.job_usd,
                           strategy=None if c.strategy is None else Strategy.of(c.strategy))


def max_runtime_seconds(job_hours: float | None) -> int:
    """The job's time limit: the estimate with a margin (x1.5 + 30 min), 1 h to 28 days."""
    if job_hours is None:
        return DEFAULT_RUNTIME_S
    seconds = job_hours * 3600 * RUNTIME_MARGIN + RUNTIME_OVERHEAD_S
    return int(min(MAX_RUNTIME_S, max(MIN_RUNTIME_S, math.ceil(seconds / 60) * 60)))


def volume_size_gb(params: int, mode: str) -> int:
    """EBS volume: the bf16 base weights (downloaded once) plus local checkpoints, with room.

    A full fine-tune's checkpoint holds weights and AdamW's two fp32 moments (~6x the bf16
    weights); adapter checkpoints are small. 20% headroom + 30 GB for the image cache and data.
    """
    weights_gb = params * 2 / 1e9
    factor = 2 + (6 if mode == "full" else 0)  # base weights + their copy in a checkpoint (+ optimizer)
    return max(50, int(math.ceil(weights_gb * factor * 1.2 + 30)))


def slug(text: str, limit: int) -> str:
    """A SageMaker name part: the last path segment, lower case, letters, digits and '-' only."""
    return execute.slug(text.split("/")[-1].lower(), limit, keep="", default="model")


def job_names(model_name: str, mode: str, stamp: str) -> tuple[str, str]:
    """(base_job_name, job_name): ``plan-<model>-<mode>`` and the same with the launch time.

    The SDK appends ``-<YYYYmmddHHMMSS>`` to the base name; job names are at most 63 characters.
    """
    base = f"plan-{slug(model_name, 40 - len(mode))}-{mode}"
    return base, f"{base}-{stamp}"[:63]


def container_settings(model: str, *, max_steps: int | None = None, epochs: float | None = None,
                       learning_rate: float | None = None, save_steps: int | None = None,
                       experiment: str | None = None) -> RunSettings:
    """The run settings of a SageMaker job: SageMaker's fixed paths, the run options given, and
    ``register`` off (the adapter store is local: ``plan jobs fetch`` registers)."""
    knobs = {"max_steps": max_steps, "epochs": epochs, "learning_rate": learning_rate, "save_steps": save_steps,
             "experiment": experiment}
    return RunSettings(model=model, dataset=DATA_DIR, output_dir=MODEL_DIR, checkpoint_dir=CHECKPOINT_DIR,
                       register=False, **{k: v for k, v in knobs.items() if v is not None})


def check_no_secrets(hyperparameters: Mapping[str, str], secret_values: Mapping[str, str]) -> None:
    """Refuse hyperparameters that carry a secret (they are stored in plain text by SageMaker)."""
    for key, value in hyperparameters.items():
        if re.search(r"token|secret|password|api[-_]?key", key, re.I):
            raise SageMakerError(f"hyperparameter '{key}' looks like a secret; pass it through the environment")
        for name, secret in secret_values.items():
            if secret and secret in value:
                raise SageMakerError(f"hyperparameter '{key}' contains the value of {name}; secrets go to the "
                                     "job environment only")


def build_training_request(*, model_name: str, hf_id: str, mode: str, params: int, choice: SageMakerChoice,
                           region: str, role_arn: str, bucket: str, dataset: str, image_uri: str, stamp: str,
                           spot: bool = False, max_cost: float | None = None,
                           training: RunSettings | None = None,
                           secret_env: tuple[str, ...] = (), dataset_digest: str | None = None,
                           environment: Mapping[str, str] | None = None) -> TrainingRequest:
    """The full request for one training job, or a SageMakerError (cost over cap, bad input)."""
    if not dataset:
        raise SageMakerError("SageMaker training needs --dataset (a local JSONL/JSON/CSV/Parquet file or folder, "
                             "or an s3:// URI)")
    if choice.instance_count < 1 or choice.gpus_per_instance < 1:
        raise SageMakerError(f"bad instance count {choice.instance_count} x {choice.gpus_per_instance} GPUs")
    base, job_name = job_names(model_name, mode, stamp)
    root = f"s3://{bucket}/plan/{base}"
    if dataset.startswith("s3://"):
        dataset_s3_uri = dataset
    else:
        name = dataset.rstrip("/").split("/")[-1]
        dataset_s3_uri = f"{root}/datasets/{dataset_digest or 'local'}/{name}"
    runtime = max_runtime_seconds(choice.job_hours)
    max_wait = min(MAX_RUNTIME_S, runtime * SPOT_WAIT_FACTOR) if spot else None
    if max_wait is not None and max_wait < runtime:
        max_wait = runtime
    notes = []
    if choice.usd_per_hour is None:
        est_usd = max_usd = None
        notes.append(f"no price known for {choice.instance_type}: cost unknown")
    else:
        hourly_all = choice.usd_per_hour * choice.instance_count
        est_usd = choice.job_usd if choice.job_usd is not None else (
            choice.job_hours * hourly_all if choice.job_hours is not None else None)
        max_usd = round(runtime / 3600 * hourly_all, 2)
    if choice.job_hours is None:
        notes.append("the plan has no time estimate (give --tokens or --dataset); max runtime set to 24 h")
    if spot:
        notes.append("costs use the managed-spot estimate (pricing's EC2 spot discount applied to the SageMaker "
                     "training price; AWS publishes none); SageMaker bills the spot price actually used")
    if max_cost is not None:
        if max_cost <= 0:
            raise SageMakerError(f"--max-cost must be positive, got {max_cost}")
        if max_usd is None:
            raise SageMakerError(f"cannot check --max-cost: no price known for {choice.instance_type} in {region}; "
                                 "`plan prices refresh` updates the catalog")
        judged = est_usd if est_usd is not None else max_usd
        if judged > max_cost:
            what = "estimated cost" if est_usd is not None else "cost at the 24 h time limit"
            raise SageMakerError(f"{what} ${judged:,.2f} ({choice.instance_count} x {choice.instance_type} at "
                                 f"${choice.usd_per_hour:,.2f}/h) is over --max-cost ${max_cost:,.2f}; raise "
                                 "--max-cost, use --spot, or plan a smaller job")
        if max_usd > max_cost:
            notes.append(f"a job that runs to its time limit would cost ${max_usd:,.2f}, over --max-cost")
    distributed = "torchrun" if choice.instance_count * choice.gpus_per_instance > 1 else None
    tags = (("plan:model", hf_id), ("plan:model-name", model_name), ("plan:mode", mode),
            ("plan:instance", f"{choice.instance_count}x{choice.instance_type}"),
            ("plan:estimated-usd", "unknown" if est_usd is None else f"{est_usd:.2f}"),
            ("plan:created-by", "llm-finetune-planner"))
    return TrainingRequest(
        job_name=job_name, base_job_name=base, region=region, role_arn=role_arn, image_uri=image_uri,
        instance_type=choice.instance_type, instance_count=choice.instance_count,
        gpus_per_instance=choice.gpus_per_instance, volume_size_gb=volume_size_gb(params, mode),
        distributed=distributed, processes_per_node=choice.gpus_per_instance, spot=spot,
        max_runtime_s=runtime, max_wait_s=max_wait, entry_script=ENTRY_SCRIPT, requirements=REQUIREMENTS_FILE,
        hyperparameters=dict(HYPERPARAMETERS), training=training or container_settings(hf_id),
        environment={"PLAN_JOB_NAME": job_name, "HF_HUB_DISABLE_TELEMETRY": "1", **(environment or {})},
        secret_env=tuple(secret_env), dataset=dataset, dataset_s3_uri=dataset_s3_uri,
        output_s3_uri=f"{root}/output", checkpoint_s3_uri=f"{root}/checkpoints/{job_name}",
        tags=tags, usd_per_hour=choice.usd_per_hour, estimated_hours=choice.job_hours,
        estimated_usd=None if est_usd is None else round(est_usd, 2), max_usd=max_usd, max_cost=max_cost,
        notes=tuple(notes))
