"""Real-time endpoints: deploy a registered adapter on the vLLM image, invoke it, delete it.

An endpoint is three SageMaker resources with one name: a Model (the package's container,
plus secrets such as HF_TOKEN taken from the local environment at deploy time), an endpoint
config (instance type and count) and the endpoint. ``delete`` removes all three; an endpoint
bills every hour it exists. boto3 throughout: ``sagemaker.serve`` needs a region at import
time and its ModelBuilder packages a container of its own, which this plain deploy does not need.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import SageMakerError, aws_errors
from .launch import secret_values

_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


@dataclass(frozen=True)
class EndpointInfo:
    name: str
    status: str
    instance_type: str = ""
    instance_count: int = 0
    model_package: str = ""
    created: str = ""
    failure_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise SageMakerError(f"invalid endpoint name {name!r}: letters, digits and '-', at most 63 characters")
    return name


def deploy(package: str, *, endpoint_name: str, role_arn: str, session: Any,
           instance_type: str = "ml.g5.2xlarge", instance_count: int = 1, wait: bool = False,
           poll_s: float = 30.0, timeout_s: float = 3600.0) -> EndpointInfo:
    """Create model, endpoint config and endpoint for a model package (ARN or name)."""
    from .aws import check_role
    from .registry import describe

    _check_name(endpoint_name)
    role_arn = check_role(role_arn)
    if instance_count < 1:
        raise SageMakerError(f"instance count must be at least 1, got {instance_count}")
    pkg = describe(package, session=session)
    if pkg.approval == "Rejected":
        raise SageMakerError(f"model package {pkg.arn} is Rejected; approve it before deploying")
    sm = session.client("sagemaker")
    env = {**pkg.environment, **secret_values()}
    with aws_errors(f"deploying {endpoint_name}"):
        sm.create_model(ModelName=endpoint_name, ExecutionRoleArn=role_arn,
                        PrimaryContainer={"Image": pkg.image, "ModelDataUrl": pkg.model_data_url, "Environment": env},
                        Tags=[{"Key": "plan:model-package", "Value": pkg.arn}])
        sm.create_endpoint_config(EndpointConfigName=endpoint_name, ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": endpoint_name, "InstanceType": instance_type,
            "InitialInstanceCount": instance_count,
            "ContainerStartupHealthCheckTimeoutInSeconds": 1800}])
        sm.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=endpoint_name,
                           Tags=[{"Key": "plan:model-package", "Value": pkg.arn}])
    info = status(endpoint_name, session=session)
    if wait and info.status in ("Creating", "Updating"):
        from botocore.exceptions import WaiterError

        delay = max(1, int(poll_s))
        try:  # boto3's waiter: InService succeeds, Failed stops it (then the status below says so)
            sm.get_waiter("endpoint_in_service").wait(
                EndpointName=endpoint_name, WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(timeout_s // delay))})
        except WaiterError:
            pass
        info = status(endpoint_name, session=session)
        if info.status in ("Creating", "Updating"):
            raise SageMakerError(f"endpoint {endpoint_name} still {info.status} after {timeout_s:.0f} s")
    return EndpointInfo(**{**info.to_dict(), "model_package": pkg.arn})


def status(endpoint_name: str, *, session: Any) -> EndpointInfo:
    from botocore.exceptions import ClientError

    sm = session.client("sagemaker")
    with aws_errors(f"reading endpoint {endpoint_name}"):
        try:
            d = sm.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ValidationException":
                raise SageMakerError(f"endpoint '{endpoint_name}' not found in {session.region_name}; "
                                     "`plan endpoints list` shows them") from None
            raise
        variants = sm.describe_endpoint_config(EndpointConfigName=d["EndpointConfigName"])["ProductionVariants"]
    v = variants[0] if variants else {}
    return EndpointInfo(name=endpoint_name, status=d.get("EndpointStatus", ""), instance_type=v.get("InstanceType", ""),
                        instance_count=int(v.get("InitialInstanceCount", 0)), created=str(d.get("CreationTime", "")),
                        failure_reason=d.get("FailureReason", ""))


def list_endpoints(*, session: Any, name_contains: str = "") -> tuple[EndpointInfo, ...]:
    args: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending"}
    if name_contains:
        args["NameContains"] = name_contains
    with aws_errors("listing endpoints"):
        pages = session.client("sagemaker").get_paginator("list_endpoints").paginate(**args)
        found = [e for page in pages for e in page["Endpoints"]]
    return tuple(EndpointInfo(name=e["EndpointName"], status=e["EndpointStatus"], created=str(e.get("CreationTime", "")))
                 for e in found)


def chat_request(prompt: str, adapter: str | None, max_tokens: int = 256) -> dict[str, Any]:
    """An OpenAI-style chat body for vLLM; ``model`` names the adapter to use."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    if adapter:
        body["model"] = adapter
    return body


def invoke(endpoint_name: str, body: dict[str, Any], *, session: Any) -> Any:
    """Send one JSON request to the endpoint; the decoded JSON answer (or text if not JSON)."""
    with aws_errors(f"invoking endpoint {endpoint_name}"):
        resp = session.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=_check_name(endpoint_name), ContentType="application/json", Accept="application/json",
            Body=json.dumps(body).encode())
        raw = resp["Body"].read().decode()
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def delete(endpoint_name: str, *, session: Any) -> list[str]:
    """Delete the endpoint, its config and its model (whichever exist); what was deleted."""
    from botocore.exceptions import ClientError

    sm = session.client("sagemaker")
    deleted = []
    calls = (("endpoint", sm.delete_endpoint, "EndpointName"),
             ("endpoint config", sm.delete_endpoint_config, "EndpointConfigName"),
             ("model", sm.delete_model, "ModelName"))
    with aws_errors(f"deleting endpoint {_check_name(endpoint_name)}"):
        for what, call, arg in calls:
            try:
                call(**{arg: endpoint_name})
                deleted.append(what)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("ValidationException", "ResourceNotFound"):
                    raise
    if not deleted:
        raise SageMakerError(f"nothing named '{endpoint_name}' to delete (no endpoint, config or model)")
    return deleted
