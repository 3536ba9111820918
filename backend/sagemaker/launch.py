"""``plan MODEL --execute --backend sagemaker``: build the request, ask, upload, start the job.

The SageMaker side is the v3 SDK's ``ModelTrainer`` (sagemaker.train): the Hugging Face
training image, ``backend/train.py`` as the entry script with pinned requirements, the plan
file beside it, the data set as the ``train`` channel, output and checkpoints on S3, managed
spot, Torchrun for several GPUs. ``prepare`` builds the request and ``launch`` starts it; the CLI
(planner/cli/execute.py) shows the request and asks in between.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from planner.allocator import allocator_env
from planner.plan import Machine, Plan, plan_for

from .errors import SageMakerError, aws_errors
from .request import (PLAN_FILE, REQUIREMENTS_FILE, SECRET_ENV, TrainingRequest, build_training_request,
                      check_no_secrets, container_settings, sagemaker_candidate, sagemaker_choice)

BACKEND_DIR = Path(__file__).resolve().parent.parent
PLANNER_DIR = BACKEND_DIR.parent / "planner"
# Hugging Face training image (sagemaker.core.image_uris, framework "huggingface").
HF_IMAGE = {"framework": "huggingface", "version": "5.3.0", "base_framework_version": "pytorch2.9.0",
            "py_version": "py312"}


@dataclass(frozen=True)
class LaunchResult:
    job_name: str
    job_arn: str
    status: str
    dataset_s3_uri: str
    uploaded_keys: tuple[str, ...]
    console_url: str

    def to_dict(self) -> dict[str, Any]:
        return {"job_name": self.job_name, "job_arn": self.job_arn, "status": self.status,
                "dataset_s3_uri": self.dataset_s3_uri, "uploaded_keys": list(self.uploaded_keys),
                "console_url": self.console_url}


def training_image(region: str, instance_type: str) -> str:
    """The Hugging Face PyTorch training image URI for ``region`` (from the SDK's offline table)."""
    from sagemaker.core import image_uris
    try:
        return image_uris.retrieve(**HF_IMAGE, instance_type=instance_type, image_scope="training", region=region)
    except ValueError as exc:
        raise SageMakerError(f"no Hugging Face training image for {instance_type} in {region}: {exc}") from None


def secret_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The secrets set in the local environment (name -> value) that the job should receive."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in SECRET_ENV if environ.get(name)}


def stage_source(request: TrainingRequest, plan: Plan, dest: Path) -> Path:
    """Write the job's code folder: backend/ (with train.py), planner/, plan.json, requirements.txt.

    The entry script is the same ``backend/train.py`` the local backend runs; it imports
    ``backend.*`` (with backend/recipes) and ``planner.*``, so both go along (without the
    sagemaker, serve and distributed subpackages, which the container does not need).
    """
    if not (BACKEND_DIR / "train.py").is_file():
        raise SageMakerError(f"the training entry script {BACKEND_DIR / 'train.py'} is missing from this install")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "backend").mkdir(exist_ok=True)
    for py in BACKEND_DIR.glob("*.py"):
        shutil.copy2(py, dest / "backend" / py.name)
    for sub in ("data", "recipes"):  # the data files and the per-mode recipes train.py imports
        if (BACKEND_DIR / sub).is_dir():
            shutil.copytree(BACKEND_DIR / sub, dest / "backend" / sub, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PLANNER_DIR, dest / "planner", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(Path(__file__).with_name(REQUIREMENTS_FILE), dest / request.requirements)
    text = plan.to_json()
    check_no_secrets({PLAN_FILE: text}, secret_values())
    (dest / PLAN_FILE).write_text(text)
    return dest


def launch(request: TrainingRequest, plan: Plan, session: Any) -> LaunchResult:
    """Upload the data set (if local) and source, and create the training job with ModelTrainer."""
    from backend.compat import latest_training_job

    from .aws import upload_path
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import (CheckpointConfig, Compute, InputData, OutputDataConfig,
                                                 SourceCode, StoppingCondition)
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    secrets = secret_values()
    check_no_secrets(request.hyperparameters, secrets)
    missing = [n for n in request.secret_env if n not in secrets]
    if missing:
        raise SageMakerError(f"{', '.join(missing)} named for the job but not set in the environment")
    uploaded: list[str] = []
    if request.needs_upload:
        uploaded = upload_path(session, Path(request.dataset), request.dataset_s3_uri.rsplit("/", 1)[0])
    for name in ("sagemaker", "sagemaker.core", "sagemaker.train"):
        logging.getLogger(name).setLevel(logging.WARNING)  # stdout is for results; the SDK logs a lot
    with tempfile.TemporaryDirectory(prefix="plan-sm-") as tmp:
        source = stage_source(request, plan, Path(tmp) / "code")
        trainer = ModelTrainer(
            sagemaker_session=Session(boto_session=session, default_bucket=request.output_s3_uri.split("/")[2]),
            role=request.role_arn, base_job_name=request.base_job_name, training_image=request.image_uri,
            source_code=SourceCode(source_dir=str(source), entry_script=request.entry_script,
                                   requirements=request.requirements),
            compute=Compute(instance_type=request.instance_type, instance_count=request.instance_count,
                            volume_size_in_gb=request.volume_size_gb, enable_managed_spot_training=request.spot),
            distributed=Torchrun(process_count_per_node=request.processes_per_node) if request.distributed else None,
            stopping_condition=StoppingCondition(max_runtime_in_seconds=request.max_runtime_s,
                                                 max_wait_time_in_seconds=request.max_wait_s),
            output_data_config=OutputDataConfig(s3_output_path=request.output_s3_uri),
            checkpoint_config=CheckpointConfig(s3_uri=request.checkpoint_s3_uri),
            hyperparameters=dict(request.hyperparameters),
            environment={**request.environment, **{n: secrets[n] for n in request.secret_env}},
            tags=[{"key": k, "value": v} for k, v in request.tags],
        )
        with aws_errors("starting the SageMaker training job"):
            trainer.train(input_data_config=[InputData(channel_name="train", data_source=request.dataset_s3_uri)],
                          wait=False, logs=False)
    job = latest_training_job(trainer)  # the sagemaker.core TrainingJob that train() created
    region = session.region_name
    return LaunchResult(job_name=job.training_job_name, job_arn=str(job.training_job_arn or ""),
                        status=str(job.training_job_status or "InProgress"), dataset_s3_uri=request.dataset_s3_uri,
                        uploaded_keys=tuple(uploaded),
                        console_url=f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
                                    f"#/jobs/{job.training_job_name}")


def prepare(model_name: str, est: Any, costs: Any, opts: Any, session: Any) -> TrainingRequest:
    """The request for this plan and these options (talks to AWS only to check the role's bucket)."""
    from .aws import check_role, check_s3_input, content_digest, resolve_bucket

    choice = sagemaker_choice(costs)
    role = check_role(getattr(opts, "role", None))
    dataset = str(getattr(opts, "dataset", None) or "")
    if not dataset:
        raise SageMakerError("SageMaker training needs --dataset (a local file or folder, or an s3:// URI)")
    digest = None
    if dataset.startswith("s3://"):
        check_s3_input(session, dataset)
    else:
        digest = content_digest(Path(dataset))
    bucket = resolve_bucket(session, getattr(opts, "bucket", None), create_default=not opts.dry_run)
    secrets = secret_values()
    hf_id = est.model.hf_id or model_name
    training = container_settings(hf_id, max_steps=opts.max_steps, epochs=opts.epochs,
                                  learning_rate=opts.learning_rate, save_steps=opts.save_steps,
                                  experiment=opts.experiment)
    check_no_secrets({PLAN_FILE: json.dumps(training.to_dict())}, secrets)
    env: dict[str, str] = {}
    if choice.instance_count * choice.gpus_per_instance > 1:
        from .sharding import launch_settings
        env, _block = launch_settings(est, Machine.of(sagemaker_candidate(costs)))
    env = {**env, **allocator_env(est.job.allocator)}  # --allocator expandable (issue 10)
    return build_training_request(
        model_name=model_name, hf_id=hf_id, mode=est.job.mode,
        params=int(est.params.total), choice=choice, region=session.region_name, role_arn=role,
        bucket=bucket, dataset=dataset, image_uri=training_image(session.region_name, choice.instance_type),
        stamp=datetime.now().strftime("%Y%m%d%H%M%S"), spot=bool(opts.spot), max_cost=opts.max_cost,
        training=training, secret_env=tuple(secrets), dataset_digest=digest, environment=env)


def plan_file(model_name: str, est: Any, costs: Any, request: TrainingRequest) -> Plan:
    """The job's plan: the estimate, the run settings for backend/train.py, the request.

    No secret values: the request names forwarded variables only (``stage_source`` checks the
    file). The run settings are the request's (``container_settings``: the container's paths,
    ``register`` off); plan.json is their one carrier, the hyperparameters only name the file.
    """
    settings = request.training or container_settings(request_tag(request, "plan:model") or model_name)
    machine = distributed = None
    if costs is not None:
        candidate = sagemaker_candidate(costs)
        machine = Machine.of(candidate)
        if request.instance_count * request.gpus_per_instance > 1:
            from .sharding import launch_settings
            distributed = launch_settings(est, machine)[1]
    return plan_for(est, settings, backend="sagemaker", model_name=model_name, machine=machine,
                    distributed=distributed, request=request.to_dict(),
                    costs=costs.to_dict() if costs is not None else None)


def request_tag(request: TrainingRequest, key: str) -> str | None:
    return dict(request.tags).get(key)
