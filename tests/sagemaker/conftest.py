"""A local AWS for the SageMaker tests: moto's server on 127.0.0.1, spoken to over real HTTP.

One ThreadedMotoServer per session (port 0: the OS picks a free port); before each test its
state is reset (POST /moto-api/reset), the environment points boto3 and the SageMaker SDK at
it (AWS_ENDPOINT_URL, dummy keys, region) and a bucket and an execution role are created.
SDK telemetry is switched off through a user config file, so no test tries the internet.
"""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("moto.server")
pytest.importorskip("sagemaker.train")

REGION = "us-east-1"
BUCKET = "plan-test-bucket"
ROLE_DOC = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                    "Principal": {"Service": "sagemaker.amazonaws.com"}}]}


@dataclass
class LocalAWS:
    endpoint: str
    region: str
    bucket: str
    role_arn: str
    session: Any

    def client(self, name: str) -> Any:
        return self.session.client(name)

    def keys(self, prefix: str = "") -> list[str]:
        out = self.client("s3").list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for o in out.get("Contents", [])]


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws(moto_endpoint, monkeypatch, tmp_path) -> LocalAWS:
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).read()
    config = tmp_path / "sagemaker-config.yaml"
    config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "MLFLOW_TRACKING_TOKEN", "AWS_PROFILE",
                 "SAGEMAKER_ROLE_ARN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "SAGEMAKER_VALIDATE_ROLE": "false",
           "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config), "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
           "PLAN_HOME": str(tmp_path / "plan-home")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    session = boto3.Session(region_name=REGION)
    session.client("s3").create_bucket(Bucket=BUCKET)
    role = session.client("iam").create_role(RoleName="plan-sagemaker", AssumeRolePolicyDocument=json.dumps(ROLE_DOC))
    return LocalAWS(endpoint=moto_endpoint, region=REGION, bucket=BUCKET, role_arn=role["Role"]["Arn"],
                    session=session)


@pytest.fixture
def sent(monkeypatch):
    """The bodies of the SageMaker API requests really sent over HTTP, by operation name.

    Sessions made by backend.sagemaker.aws.boto_session get a botocore ``before-send``
    listener that records each request body as serialized for the wire (moto does not echo
    every field back, e.g. a training job's Environment). Nothing is altered or mocked.
    """
    from backend.sagemaker import aws as aws_mod

    calls: dict[str, list[dict]] = {}
    real = aws_mod.boto_session

    def record(request, **_):
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if target.startswith("SageMaker."):
            calls.setdefault(target.split(".", 1)[1], []).append(json.loads(request.body or b"{}"))

    def recording_session(region):
        session = real(region)
        session.events.register("before-send.sagemaker", record)
        return session

    monkeypatch.setattr(aws_mod, "boto_session", recording_session)
    return calls


def write_dataset(path: Path, rows: int = 4) -> Path:
    path.write_text("".join(json.dumps({"text": f"the sky is blue {i}"}) + "\n" for i in range(rows)))
    return path
