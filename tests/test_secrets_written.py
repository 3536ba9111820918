"""Issue 19: a user-given value that carries a credential never reaches plan.json, run.json or MLflow.

The CLI in-process with a real environment variable; nothing may be written when refused."""
from __future__ import annotations

import contextlib
import io

import pytest

from planner.cli import main
from planner.credentials import credential_problem, mask
from planner.errors import PlannerError
from planner.plan import RunSettings

SECRET = "hf_S3cretValue_0123456789"


def run_main(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.mark.parametrize("flag,value", [("--experiment", "http://user:PASSWORD@mlflow.example/"),
                                        ("--experiment", f"exp-{SECRET}"),
                                        ("--output-dir", f"runs/{SECRET}")])
def test_a_credential_in_a_flag_is_refused_and_nothing_written(tmp_path, monkeypatch, flag, value):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / "launch"
    code, err = run_main(["llama3-8b", "--mode", "lora", "--emit-config", str(out), flag, value])
    assert code == 2 and "Traceback" not in err
    assert SECRET not in err and "user:PASSWORD" not in err  # the refusal names the variable, not the value
    assert not out.exists()


def test_the_trainer_refuses_a_plan_json_carrying_one(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    with pytest.raises(PlannerError, match="WANDB_API_KEY"):
        RunSettings.from_dict({"model": "m", "dataset": "d.jsonl", "output_dir": "o",
                               "experiment": "x0123456789abcdef"})


def test_short_or_unnamed_values_are_not_secrets():
    env = {"FOO_TOKEN": "1", "PATH": "/usr/bin", "HF_TOKEN": SECRET}
    assert credential_problem("runs/1", env) is None and credential_problem("/usr/bin/x", env) is None
    assert credential_problem(f"a{SECRET}", env) == "contains the value of the environment variable HF_TOKEN"


def test_mask_hides_uri_credentials_and_env_secrets():
    env = {"MLFLOW_TRACKING_PASSWORD": "pa55word-long"}
    assert mask("https://u:p@h/x and pa55word-long", env) == "https://***@h/x and ***"
