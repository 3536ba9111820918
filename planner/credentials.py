"""Credentials never ride in a value we write (issue 19).

plan.json goes to S3 and into the run folder, its ``training`` block into run.json and MLflow's
params: a user-given value there that carries a credential (``https://user:PASSWORD@host``, or
the value of a secret variable of the environment) would be stored in plain text. Such values are
refused where the run settings are made, naming the variable, never the value; text we only show
(an error, a URI already in use) goes through ``mask``.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
# Environment variables whose values are secrets: HF_TOKEN, MLFLOW_TRACKING_PASSWORD, WANDB_API_KEY,
# AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, ...
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_KEY|CREDENTIAL", re.I)
MIN_SECRET_CHARS = 8  # shorter values (FOO_TOKEN=1) would match innocent text


def secret_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment's secrets: name -> value, for names that say they hold one."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= MIN_SECRET_CHARS}


def credential_problem(value: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why ``value`` must not be written, or None."""
    if _USERINFO.search(value):
        return "carries credentials in a URI (scheme://user:password@host)"
    for name, secret in secret_env(environ).items():
        if secret in value:
            return f"contains the value of the environment variable {name}"
    return None


def mask(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with URI credentials and environment secrets replaced by ***."""
    text = _USERINFO.sub("***@", str(text))
    for secret in sorted(secret_env(environ).values(), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
