"""AWS failures turned into one-line planner errors that say what to fix.

botocore raises a zoo of exceptions (NoRegionError, NoCredentialsError, ClientError with a
code); the CLI must show one sentence for the ones a user causes. ``aws_errors()`` wraps a
block of AWS calls and translates those; anything else keeps its traceback (a bug).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from planner.errors import PlannerError


class SageMakerError(PlannerError):
    """A SageMaker or AWS problem the user can fix (set-up, names, limits)."""


NO_REGION = ("no AWS region configured; pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION")
NO_CREDENTIALS = ("no AWS credentials found; run `aws configure` or `aws sso login`, or set "
                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")

# ClientError codes whose message from AWS is already the whole story for the user.
_USER_CODES = {
    "AccessDenied": "access denied",
    "AccessDeniedException": "access denied",
    "UnrecognizedClientException": "AWS rejected the credentials",
    "InvalidClientTokenId": "AWS rejected the credentials",
    "ExpiredToken": "the AWS session token has expired; log in again",
    "ExpiredTokenException": "the AWS session token has expired; log in again",
    "ValidationException": "SageMaker rejected the request",
    "ResourceLimitExceeded": "SageMaker quota reached (ask for an increase in Service Quotas)",
    "ResourceNotFound": "not found",
    "ResourceInUse": "already exists or is in use",
    "NoSuchBucket": "bucket not found",
    "NoSuchEntity": "IAM entity not found",
    "ThrottlingException": "AWS throttled the request; try again in a minute",
}


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Translate the AWS exceptions a user can cause, raised while ``doing``, into SageMakerError."""
    from botocore.exceptions import (ClientError, EndpointConnectionError, NoCredentialsError,
                                     NoRegionError, ParamValidationError, PartialCredentialsError)
    try:
        yield
    except ParamValidationError as exc:  # a name the user gave that the API's schema refuses (empty, too long)
        raise SageMakerError(f"{doing}: {' '.join(str(exc).split())}") from None
    except NoRegionError:
        raise SageMakerError(NO_REGION) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise SageMakerError(NO_CREDENTIALS) from None
    except EndpointConnectionError as exc:
        raise SageMakerError(f"{doing}: cannot reach AWS ({exc})") from None
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = err.get("Code", "")
        if code in _USER_CODES or code.endswith(("NotFound", "AccessDenied")):
            message = " ".join(str(err.get("Message") or "").split())
            label = _USER_CODES.get(code, code)
            raise SageMakerError(f"{doing}: {label}: {message}".rstrip(": ")) from None
        raise
