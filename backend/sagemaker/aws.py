"""The AWS session and the S3 plumbing a launch needs: region, credentials, bucket, uploads.

One place builds the boto3 session (``boto_session``), so the checks for region and
credentials happen before anything is sent, and the error says how to fix them.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from .errors import NO_CREDENTIALS, NO_REGION, SageMakerError, aws_errors

_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def boto_session(region: str | None) -> Any:
    """A boto3 session for ``region`` (or the configured default), with credentials checked."""
    from pricing.refresh import bounded_session  # bounded connect/read timeouts and retries (issue 13)

    from botocore.exceptions import InvalidRegionError
    from botocore.utils import validate_region_name

    if region is not None and not region.strip():
        raise SageMakerError("--region is empty; pass an AWS region name (e.g. us-east-1)")
    session = bounded_session(region)
    if not session.region_name:
        raise SageMakerError(NO_REGION)
    try:  # botocore's own check, done here so a malformed name is one line, not a traceback
        validate_region_name(session.region_name)
        if session.region_name != session.region_name.strip():  # its regex's `$` lets a final newline by
            raise InvalidRegionError(region_name=session.region_name)
    except InvalidRegionError:
        shown = " ".join(session.region_name.split())[:40]
        raise SageMakerError(f"'{shown}' is not an AWS region name (e.g. us-east-1): fix --region or "
                             "AWS_DEFAULT_REGION") from None
    if session.get_credentials() is None:
        raise SageMakerError(NO_CREDENTIALS)
    return session


def account_id(session: Any) -> str:
    with aws_errors("reading the AWS account"):
        return session.client("sts").get_caller_identity()["Account"]


def check_role(role: str | None) -> str:
    """The execution role ARN, or a clear error when it is missing or malformed."""
    role = role or os.environ.get("SAGEMAKER_ROLE_ARN")
    if not role:
        raise SageMakerError("SageMaker needs an execution role: pass --role arn:aws:iam::ACCOUNT:role/NAME "
                             "(or set SAGEMAKER_ROLE_ARN); docs/sagemaker.md says how to create one")
    if not _ROLE_ARN.match(role):
        raise SageMakerError(f"'{role}' is not an IAM role ARN; expected arn:aws:iam::ACCOUNT:role/NAME")
    return role


def resolve_bucket(session: Any, bucket: str | None, *, create_default: bool) -> str:
    """The bucket to use: ``bucket`` if given (it must exist), else ``sagemaker-REGION-ACCOUNT``.

    The default bucket is created when missing (as the SageMaker SDK does) if ``create_default``
    (a dry run only names it); a bucket named by the user is never created behind their back.
    """
    from botocore.exceptions import ClientError

    if bucket:
        bucket = bucket.removeprefix("s3://").strip("/")
        if not _BUCKET.match(bucket):
            raise SageMakerError(f"'{bucket}' is not a valid S3 bucket name")
    name = bucket or f"sagemaker-{session.region_name}-{account_id(session)}"
    s3 = session.client("s3")
    with aws_errors(f"checking bucket {name}"):
        try:
            s3.head_bucket(Bucket=name)
            return name
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise
    if bucket:
        raise SageMakerError(f"bucket '{name}' not found; create it (`aws s3 mb s3://{name} --region "
                             f"{session.region_name}`) or pass another --bucket")
    if not create_default:
        return name  # a dry run: the launch creates it
    with aws_errors(f"creating bucket {name}"):
        args: dict[str, Any] = {"Bucket": name}
        if session.region_name != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": session.region_name}
        s3.create_bucket(**args)
    return name


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise SageMakerError(f"'{uri}' is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise SageMakerError(f"'{uri}' names no bucket")
    return bucket, key


def local_files(path: Path) -> list[Path]:
    """The files of a data set: the file itself, or every file under a folder (sorted)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        if files:
            return files
        raise SageMakerError(f"data set folder {path} is empty")
    raise SageMakerError(f"data set {path} not found; give a local file or folder, or an s3:// URI")


def content_digest(path: Path) -> str:
    """A short sha256 of a file or folder's contents (names and bytes), for content-addressed keys."""
    h = hashlib.sha256()
    root = path if path.is_dir() else path.parent
    for f in local_files(path):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def upload_path(session: Any, path: Path, s3_uri: str) -> list[str]:
    """Upload a file (to ``s3_uri/<name>``) or a folder's files (under ``s3_uri/``); return the keys."""
    bucket, prefix = split_s3_uri(s3_uri)
    s3 = session.client("s3")
    root = path if path.is_dir() else path.parent
    keys = []
    with aws_errors(f"uploading {path} to {s3_uri}"):
        for f in local_files(path):
            key = f"{prefix.rstrip('/')}/{f.relative_to(root).as_posix()}"
            s3.upload_file(str(f), bucket, key)
            keys.append(key)
    return keys


def check_s3_input(session: Any, uri: str) -> None:
    """Raise unless something exists at ``uri`` (an object or a prefix)."""
    bucket, key = split_s3_uri(uri)
    with aws_errors(f"reading {uri}"):
        found = session.client("s3").list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    if not found.get("KeyCount"):
        raise SageMakerError(f"nothing found at {uri}; check the data set URI")
