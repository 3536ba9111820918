"""The model registry: one model package group per base model, one package per trained adapter.

A package records where the adapter is (the job's model.tar.gz), the serving container that
can run it (vLLM with LoRA on the base model), the run's metadata as customer metadata and its
metrics as a ModelQuality statistics file on S3. Uses boto3 ``create_model_package``:
sagemaker-core's ``ModelPackage.create`` raises KeyError for versioned packages (package
groups), and ``sagemaker.serve.ModelBuilder.register`` builds a container image first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import SageMakerError, aws_errors
from .request import slug

APPROVAL = ("Approved", "PendingManualApproval", "Rejected")


@dataclass(frozen=True)
class PackageInfo:
    arn: str
    group: str
    version: int | None
    status: str
    approval: str
    model_data_url: str
    image: str
    environment: dict[str, str]
    metadata: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def group_name(base_model: str) -> str:
    """``plan-<base model>``: the package group holding every adapter of one base model."""
    return f"plan-{slug(base_model, 55)}"


def serving_environment(base_model: str, adapter_name: str, max_lora_rank: int = 64) -> dict[str, str]:
    """vLLM settings for the SageMaker vLLM image: base model from the Hub, the adapter from /opt/ml/model.

    The image maps ``SM_VLLM_<FLAG>`` variables to ``vllm serve --<flag>``; a request picks the
    adapter through its ``model`` field. No token here: secrets are added at deploy time.
    """
    return {"SM_VLLM_MODEL": base_model, "SM_VLLM_ENABLE_LORA": "true",
            "SM_VLLM_LORA_MODULES": f"{adapter_name}=/opt/ml/model", "SM_VLLM_MAX_LORAS": "1",
            "SM_VLLM_MAX_LORA_RANK": str(max_lora_rank)}


def serving_image(region: str, instance_type: str = "ml.g5.2xlarge") -> str:
    """The Hugging Face vLLM serving image (sagemaker.core.image_uris, framework huggingface-vllm)."""
    from sagemaker.core import image_uris
    return image_uris.retrieve(framework="huggingface-vllm", version="0.29.0", region=region,
                               instance_type=instance_type, image_scope="inference")


def _ensure_group(sm: Any, group: str, base_model: str) -> None:
    from botocore.exceptions import ClientError
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
            raise
        sm.create_model_package_group(ModelPackageGroupName=group,
                                      ModelPackageGroupDescription=f"Adapters trained on {base_model} by plan",
                                      Tags=[{"Key": "plan:model", "Value": base_model}])


def register(*, base_model: str, adapter_name: str, model_data_url: str, session: Any,
             metadata: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
             approval: str = "PendingManualApproval", image: str | None = None) -> PackageInfo:
    """Register an adapter archive as a new version in its base model's package group."""
    from .aws import split_s3_uri

    if approval not in APPROVAL:
        raise SageMakerError(f"approval must be one of {', '.join(APPROVAL)}, got '{approval}'")
    bucket, key = split_s3_uri(model_data_url)
    sm = session.client("sagemaker")
    group = group_name(base_model)
    env = serving_environment(base_model, adapter_name)
    props = {k: str(v)[:256] for k, v in {"adapter": adapter_name, "base_model": base_model,
                                          **(metadata or {})}.items() if v is not None}
    args: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"{adapter_name}: adapter for {base_model}",
        "InferenceSpecification": {
            "Containers": [{"Image": image or serving_image(session.region_name), "ModelDataUrl": model_data_url,
                            "Environment": env}],
            "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
        "ModelApprovalStatus": approval,
        "CustomerMetadataProperties": props,
    }
    with aws_errors(f"registering {adapter_name} in package group {group}"):
        if metrics:
            metrics_key = f"{key.rsplit('/', 1)[0]}/metrics.json"
            session.client("s3").put_object(Bucket=bucket, Key=metrics_key, ContentType="application/json",
                                            Body=json.dumps(metrics, indent=2).encode())
            args["ModelMetrics"] = {"ModelQuality": {"Statistics": {
                "ContentType": "application/json", "S3Uri": f"s3://{bucket}/{metrics_key}"}}}
        _ensure_group(sm, group, base_model)
        arn = sm.create_model_package(**args)["ModelPackageArn"]
    return describe(arn, session=session)


def register_job(job_name: str, *, session: Any, adapter_name: str | None = None,
                 approval: str = "PendingManualApproval", image: str | None = None) -> PackageInfo:
    """Register a finished training job's adapter, with the job's tags and metrics as its metadata."""
    from .jobs import job_status

    info = job_status(job_name, session=session)
    if info.status != "Completed" or not info.model_artifacts:
        raise SageMakerError(f"job {job_name} is {info.status}; only a Completed job can be registered")
    base = info.tags.get("plan:model")
    if not base:
        raise SageMakerError(f"job {job_name} has no plan:model tag; was it launched by plan?")
    meta = {"job_name": job_name, "mode": info.tags.get("plan:mode"), "instance": info.tags.get("plan:instance"),
            "spot": info.spot, "billable_seconds": info.billable_seconds}
    return register(base_model=base, adapter_name=adapter_name or job_name, model_data_url=info.model_artifacts,
                    session=session, metadata=meta, metrics=info.metrics, approval=approval, image=image)


def describe(arn_or_name: str, *, session: Any) -> PackageInfo:
    with aws_errors(f"reading model package {arn_or_name}"):
        d = session.client("sagemaker").describe_model_package(ModelPackageName=arn_or_name)
    container = (d.get("InferenceSpecification", {}).get("Containers") or [{}])[0]
    return PackageInfo(arn=d["ModelPackageArn"], group=d.get("ModelPackageGroupName", ""),
                       version=d.get("ModelPackageVersion"), status=d.get("ModelPackageStatus", ""),
                       approval=d.get("ModelApprovalStatus", ""), model_data_url=container.get("ModelDataUrl", ""),
                       image=container.get("Image", ""), environment=dict(container.get("Environment") or {}),
                       metadata=dict(d.get("CustomerMetadataProperties") or {}))


def list_packages(base_model: str, *, session: Any) -> tuple[PackageInfo, ...]:
    """Every package in ``base_model``'s group, newest first."""
    with aws_errors(f"listing model packages of {base_model}"):
        found = session.client("sagemaker").list_model_packages(
            ModelPackageGroupName=group_name(base_model), SortBy="CreationTime", SortOrder="Descending")
    return tuple(describe(p["ModelPackageArn"], session=session) for p in found["ModelPackageSummaryList"])
