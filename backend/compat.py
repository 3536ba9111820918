"""Every use of a dependency's private API, in one place, with the versions it is known to work on.

Each function below reaches into something a library does not promise to keep (a leading
underscore). When the installed version is outside the tested range, or the name is gone, the
caller gets one PlannerError naming the package, its version and the range to install, instead
of an AttributeError deep in a run. pyproject.toml bounds the same packages to these ranges.
"""
from __future__ import annotations

from importlib import metadata
from typing import Any

from planner.errors import PlannerError

# package -> (lowest tested, first untested major/minor): the pyproject.toml bounds.
TESTED = {
    "accelerate": ((1, 0), (2, 0)),
    "lm_eval": ((0, 4, 13), (0, 5)),
    "sagemaker": ((3, 27), (4, 0)),
    "datasets": ((3, 0), (6, 0)),
}


def _version(package: str) -> tuple[int, ...]:
    text = metadata.version(package)
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) if not piece.isdigit() else piece
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _spec(package: str) -> str:
    low, high = TESTED[package]
    return f"{package}>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"


def check_version(package: str, what: str) -> None:
    """PlannerError when ``package`` is outside the range ``what`` (a private API) was tested on."""
    low, high = TESTED[package]
    try:
        have = _version(package)
    except metadata.PackageNotFoundError:
        raise PlannerError(f"{what} needs {package}; pip install '{_spec(package)}'") from None
    if not low <= have < high:
        raise PlannerError(f"{what} uses a private part of {package}, tested on {_spec(package)}; this is "
                           f"{package} {metadata.version(package)}: pip install '{_spec(package)}'")


def _gone(package: str, name: str, what: str) -> PlannerError:
    return PlannerError(f"{package} {metadata.version(package)} no longer has {name}, which {what} uses; "
                        f"pip install '{_spec(package)}'")


def validate_launch_command(args: Any) -> tuple[Any, Any, Any]:
    """accelerate's own merge of a config file into launch arguments (what ``accelerate launch``
    does first); no public function does it. Returns (args, defaults, mixed precision from config)."""
    check_version("accelerate", "checking an accelerate config")
    try:
        from accelerate.commands.launch import _validate_launch_command
    except ImportError:
        raise _gone("accelerate", "accelerate.commands.launch._validate_launch_command",
                    "checking an accelerate config") from None
    return _validate_launch_command(args)


def load_lm_eval_yaml(path: Any) -> dict[str, Any]:
    """lm-eval's task YAML loader (follows ``include:`` and ``!function``), private since 0.4.13."""
    check_version("lm_eval", "reading a local lm-eval task")
    try:
        from lm_eval.tasks._yaml_loader import load_yaml
    except ImportError:
        raise _gone("lm_eval", "lm_eval.tasks._yaml_loader.load_yaml", "reading a local lm-eval task") from None
    return load_yaml(path, resolve_func=True)


def latest_training_job(trainer: Any) -> Any:
    """The sagemaker.core TrainingJob that ``ModelTrainer.train(wait=False)`` created; the v3 SDK
    keeps it only in a private attribute."""
    check_version("sagemaker", "starting a SageMaker job")
    job = getattr(trainer, "_latest_training_job", None)
    if job is None:
        raise _gone("sagemaker", "ModelTrainer._latest_training_job", "starting a SageMaker job")
    return job


def dataset_fingerprint(ds: Any) -> str:
    """The content fingerprint ``datasets`` computes for a loaded Dataset (its cache key)."""
    check_version("datasets", "fingerprinting a Hub data set")
    fingerprint = getattr(ds, "_fingerprint", None)
    if fingerprint is None:
        raise _gone("datasets", "Dataset._fingerprint", "fingerprinting a Hub data set")
    return str(fingerprint)
