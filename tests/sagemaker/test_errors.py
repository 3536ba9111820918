"""Clear one-line errors for the set-up mistakes, through the real CLI boundary (exit 2, no traceback)."""
from __future__ import annotations

import json

import pytest

from tests.cli import run

from .conftest import write_dataset

BASE = ["qwen2.5-0.5b", "--mode", "qlora", "--platform", "sagemaker", "--execute", "--backend", "sagemaker",
        "--tokens", "50000000", "--yes", "--json"]


def plan(capsys, *args):
    return run(capsys, *BASE, *args)


@pytest.fixture
def data(tmp_path):
    return str(write_dataset(tmp_path / "train.jsonl"))


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_missing_role(aws, capsys, data):
    code, _, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket)
    assert code == 2 and "needs an execution role: pass --role" in one_error_line(err)


def test_malformed_role(aws, capsys, data):
    code, _, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket, "--role", "my-role")
    assert code == 2 and "is not an IAM role ARN" in one_error_line(err)


def test_bucket_not_found(aws, capsys, data):
    code, _, err = plan(capsys, "--dataset", data, "--bucket", "no-such-bucket", "--role", aws.role_arn)
    assert code == 2 and "bucket 'no-such-bucket' not found; create it (`aws s3 mb s3://no-such-bucket" in one_error_line(err)


def test_no_credentials(aws, capsys, data, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, _, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket, "--role", aws.role_arn)
    assert code == 2 and "no AWS credentials found" in one_error_line(err)


def test_no_region(aws, data, monkeypatch):
    # The CLI always passes --region (default us-east-1); the backend itself must still say it clearly.
    from backend.sagemaker.aws import boto_session
    from backend.sagemaker.errors import SageMakerError
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(SageMakerError, match="no AWS region configured; pass --region"):
        boto_session(None)


def test_plan_without_a_sagemaker_candidate(aws, capsys, data):
    code, _, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket, "--role", aws.role_arn,
                        "--platform", "ec2")
    assert code == 2 and "SageMaker" in one_error_line(err)


def test_cost_over_max_cost(aws, capsys, data):
    code, out, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket, "--role", aws.role_arn,
                          "--max-cost", "0.01")
    assert code == 2 and "over --max-cost $0.01" in one_error_line(err)
    assert aws.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.slow  # moto server round trips
def test_cli_dry_run_end_to_end(aws, capsys, data):
    code, out, err = plan(capsys, "--dataset", data, "--bucket", aws.bucket, "--role", aws.role_arn, "--dry-run")
    assert code == 0, err
    request = json.loads(out)["request"]
    assert request["instance_type"].startswith("ml.") and request["estimated_usd"] > 0
    assert aws.keys() == []
