"""Following a launched job: list, status, wait, and fetching its adapter into the local store.

Status comes from the v3 SDK's ``sagemaker.core.resources.TrainingJob``; the list uses one
boto3 ``ListTrainingJobs`` call (the SDK's ``get_all`` describes every job, one call each).
``fetch`` downloads ``model.tar.gz``, finds the adapter and ``run.json`` in it and registers
the adapter in ``backend.store.AdapterStore`` under its base model.
"""
from __future__ import annotations

import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import run_record
from .errors import SageMakerError, aws_errors

TERMINAL = ("Completed", "Failed", "Stopped")
NAME_PREFIX = "plan-"


@dataclass(frozen=True)
class JobInfo:
    """One training job as SageMaker describes it (the fields a user follows)."""

    name: str
    status: str
    secondary_status: str = ""
    instance_type: str = ""
    instance_count: int = 0
    spot: bool = False
    created: str = ""
    ended: str = ""
    billable_seconds: int | None = None
    failure_reason: str = ""
    model_artifacts: str = ""
    checkpoint_s3_uri: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class FetchResult:
    job_name: str
    adapter_name: str
    adapter_path: str
    base_model: str
    run: dict[str, Any]
    artifact_uri: str

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _session(session: Any, region: str | None) -> Any:
    if session is not None:
        return session
    from .aws import boto_session
    return boto_session(region)


def _str(value: Any) -> str:
    return "" if value is None or type(value).__name__ == "Unassigned" else str(value)


def _tags(session: Any, arn: str) -> dict[str, str]:
    if not arn:
        return {}
    with aws_errors("reading the job's tags"):
        tags = session.client("sagemaker").list_tags(ResourceArn=arn).get("Tags", [])
    return {t["Key"]: t["Value"] for t in tags}


def job_status(name: str, *, session: Any = None, region: str | None = None) -> JobInfo:
    """Describe one training job (sagemaker.core ``TrainingJob.get``)."""
    from botocore.exceptions import ClientError
    from sagemaker.core.resources import TrainingJob

    session = _session(session, region)
    with aws_errors(f"reading training job {name}"):
        try:
            job = TrainingJob.get(training_job_name=name, session=session, region=session.region_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
                raise SageMakerError(f"training job '{name}' not found in {session.region_name}; "
                                     "`plan jobs list` shows the planner's jobs") from None
            raise
    rc, ckpt, arts = job.resource_config, job.checkpoint_config, job.model_artifacts
    metrics = {m.metric_name: float(m.value) for m in (job.final_metric_data_list or [])
               if type(m).__name__ != "Unassigned"} if isinstance(job.final_metric_data_list, list) else {}
    return JobInfo(
        name=name, status=_str(job.training_job_status), secondary_status=_str(job.secondary_status),
        instance_type=_str(getattr(rc, "instance_type", "")), instance_count=int(getattr(rc, "instance_count", 0) or 0),
        spot=bool(job.enable_managed_spot_training is True), created=_str(job.creation_time),
        ended=_str(job.training_end_time),
        billable_seconds=job.billable_time_in_seconds if isinstance(job.billable_time_in_seconds, int) else None,
        failure_reason=_str(job.failure_reason), model_artifacts=_str(getattr(arts, "s3_model_artifacts", "")),
        checkpoint_s3_uri=_str(getattr(ckpt, "s3_uri", "")), metrics=metrics,
        tags=_tags(session, _str(job.training_job_arn)))


def list_jobs(*, session: Any = None, region: str | None = None, name_contains: str = NAME_PREFIX,
              status: str | None = None, max_results: int = 20) -> tuple[JobInfo, ...]:
    """The newest training jobs whose name contains ``name_contains`` (the planner's, by default)."""
    session = _session(session, region)
    args: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending",
                            "PaginationConfig": {"MaxItems": max_results}}
    if name_contains:
        args["NameContains"] = name_contains
    if status:
        args["StatusEquals"] = status
    with aws_errors("listing training jobs"):
        pages = session.client("sagemaker").get_paginator("list_training_jobs").paginate(**args)
        found = [j for page in pages for j in page["TrainingJobSummaries"]]
    return tuple(JobInfo(name=j["TrainingJobName"], status=j["TrainingJobStatus"],
                         secondary_status=j.get("SecondaryStatus", ""), created=str(j.get("CreationTime", "")),
                         ended=str(j.get("TrainingEndTime", ""))) for j in found)


def wait_for(name: str, *, session: Any = None, region: str | None = None, poll_s: float = 30.0,
             timeout_s: float | None = None, on_change: Callable[[JobInfo], None] | None = None) -> JobInfo:
    """Poll until the job is Completed, Failed or Stopped (or ``timeout_s`` passes: error).

    A loop, not boto3's ``training_job_completed_or_stopped`` waiter: the waiter cannot report
    each status change (``on_change``, what ``plan jobs wait`` prints) on the way."""
    session = _session(session, region)
    start, last = time.monotonic(), None
    while True:
        info = job_status(name, session=session)
        if on_change and (info.status, info.secondary_status) != last:
            on_change(info)
        last = (info.status, info.secondary_status)
        if info.status in TERMINAL:
            return info
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise SageMakerError(f"job {name} still {info.status} ({info.secondary_status}) after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _find_adapter(root: Path) -> Path:
    hits = sorted(p.parent for p in root.rglob("adapter_config.json"))
    if not hits:
        raise SageMakerError("the job's model.tar.gz holds no adapter (adapter_config.json); a full fine-tune's "
                             "weights are not put in the adapter store")
    return hits[0]


def fetch(name: str, adapter_name: str | None = None, *, session: Any = None, region: str | None = None,
          store_root: Path | None = None) -> FetchResult:
    """Download a finished job's artifacts and register its adapter (and run.json) in the local store."""
    from backend.store import AdapterStore

    from .aws import split_s3_uri

    session = _session(session, region)
    info = job_status(name, session=session)
    if info.status != "Completed":
        raise SageMakerError(f"job {name} is {info.status}, not Completed; nothing to fetch"
                             + (f" ({info.failure_reason})" if info.failure_reason else ""))
    if not info.model_artifacts:
        raise SageMakerError(f"job {name} has no model artifacts")
    bucket, key = split_s3_uri(info.model_artifacts)
    with tempfile.TemporaryDirectory(prefix="plan-fetch-") as tmp:
        archive = Path(tmp) / "model.tar.gz"
        with aws_errors(f"downloading {info.model_artifacts}"):
            session.client("s3").download_file(bucket, key, str(archive))
        out = Path(tmp) / "model"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(out, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SageMakerError(f"cannot unpack {info.model_artifacts}: {exc}") from None
        adapter = _find_adapter(out)
        run_file = next(iter(sorted(out.rglob("run.json"))), None)
        try:
            run = run_record.load_file(run_file) if run_file else {}
        except run_record.DamagedRecord as exc:
            raise SageMakerError(f"job {name}'s artifact holds a damaged run.json ({exc}); "
                                 "nothing was registered") from None
        run_base = run.get("base_model")
        base = info.tags.get("plan:model") or (run_base.get("name") if isinstance(run_base, dict) else run_base) or ""
        if not base:
            raise SageMakerError(f"cannot tell the base model of job {name} (no plan:model tag, no run.json)")
        record = AdapterStore(store_root).register(
            adapter_name or name, adapter, base_model=base,
            metadata={"source": "sagemaker", "job_name": name, "artifact_uri": info.model_artifacts,
                      "instance_type": info.instance_type, "instance_count": info.instance_count,
                      "spot": info.spot, "billable_seconds": info.billable_seconds,
                      "metrics": {**info.metrics, **(run.get("metrics") or {})}, "run": run})
    return FetchResult(job_name=name, adapter_name=record.name, adapter_path=str(record.path), base_model=base,
                       run=run, artifact_uri=info.model_artifacts)
