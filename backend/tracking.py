"""Experiment tracking with MLflow: parameters, per-step metrics, the plan and the run record.

By default each run tracks into a SQLite store inside its output folder (``mlflow.db``, artifacts
in ``mlartifacts/``), so nothing needs a server: ``mlflow ui --backend-store-uri
sqlite:///OUT/mlflow.db`` shows it. ``MLFLOW_TRACKING_URI`` points it anywhere else (an MLflow
server, a SageMaker-managed one through the sagemaker-mlflow plugin). A resumed run continues the
same MLflow run. MLflow is imported only here, inside the functions.

Tracking is not the job: a server that cannot be reached (or fails later) gives one warning and
the run continues untracked, its metrics still in run.json. Requests are bounded
(``MLFLOW_HTTP_REQUEST_TIMEOUT`` 10 s, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 2 unless set), so a dead
server costs seconds, not MLflow's default minutes of retries. A URI is only ever shown or stored
with its credentials masked (``https://***@host``).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.credentials import mask  # URI credentials and the environment's secrets

DEFAULT_EXPERIMENT = "plan"
BOUNDS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}


def default_tracking_uri(output_dir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'job': {'lora_r': 16}} -> {'job.lora_r': 16}; values MLflow can store as params."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = ",".join(map(str, v))[:500]
        else:
            out[key] = v
    return out


@dataclass
class Tracker:
    """One MLflow run. ``run_id`` is kept in run.json so a resumed job logs into the same run."""

    tracking_uri: str
    experiment: str
    run_id: str | None = None
    failed: str | None = None  # why tracking stopped (then every call is a no-op)

    def _fault(self, what: str, exc: BaseException) -> None:
        """Stop tracking with one warning; the training goes on."""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        self.failed = mask(f"{what}: {first}")
        print(f"warning: MLflow tracking at {mask(self.tracking_uri)} failed ({self.failed}); "
              "training continues untracked, metrics are in run.json", file=sys.stderr)

    def start(self, output_dir: Path, run_name: str, params: dict[str, Any]) -> str | None:
        """The MLflow run id, or None (one warning) when the tracking server cannot be used."""
        for k, v in BOUNDS.items():
            os.environ.setdefault(k, v)
        try:
            return self._start(output_dir, run_name, params)
        except Exception as exc:  # any MLflow or network fault: tracking is not the job
            self._fault("cannot start the run", exc)
            self.run_id = None
            return None

    def _start(self, output_dir: Path, run_name: str, params: dict[str, Any]) -> str:
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        client = mlflow.MlflowClient(self.tracking_uri)
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            # A local store keeps artifacts beside it (the default would be ./mlruns of the cwd).
            location = (Path(output_dir).resolve() / "mlartifacts").as_uri() \
                if self.tracking_uri.startswith("sqlite:") else None
            exp_id = client.create_experiment(self.experiment, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        if self.run_id is None:
            run = client.create_run(exp_id, run_name=run_name)
            self.run_id = run.info.run_id
            from mlflow.entities import Param
            items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
            for i in range(0, len(items), 100):
                client.log_batch(self.run_id, params=items[i:i + 100])
        else:
            client.update_run(self.run_id, status="RUNNING")
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import mlflow
        from mlflow.entities import Metric
        import time

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if items and self.run_id and not self.failed:
            try:
                mlflow.MlflowClient(self.tracking_uri).log_batch(self.run_id, metrics=items)
            except Exception as exc:
                self._fault("cannot log metrics", exc)

    def finish(self, plan: dict[str, Any], run_record: dict[str, Any], status: str) -> None:
        import mlflow

        if not self.run_id or self.failed:
            return
        try:
            client = mlflow.MlflowClient(self.tracking_uri)
            client.log_dict(self.run_id, plan, "plan.json")
            client.log_dict(self.run_id, run_record, "run.json")
            client.set_terminated(self.run_id, status={"completed": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))
        except Exception as exc:
            self._fault("cannot finish the run", exc)

    def callback(self):
        """A TrainerCallback that logs every logged step's metrics (loss, eval_loss, lr...)."""
        from transformers import TrainerCallback

        tracker = self

        class MlflowMetrics(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if state.is_world_process_zero and logs:
                    tracker.log_metrics(logs, state.global_step)
                return control

        return MlflowMetrics()


def mlflow_available() -> bool:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True
