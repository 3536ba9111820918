"""lm-eval tasks with the adapter disabled vs enabled: real lm-eval on the tiny model, offline.

The shipped ``general_mc`` task runs with its data read from the shipped folder; a local task
written here, in the tiny model's words, tells two adapters apart; the adapter-disabled side is
checked against a plain base-model run. Without lm_eval installed only the error path runs.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from backend.adapter_io import AdapterRef, load_base
from backend.lm_eval_bridge import SHIPPED_TASKS, evaluate_lm_eval, select_tasks
from planner.cli import main
from planner.errors import PlannerError
from tests.adapters.conftest import CAPITALS, SWAPPED
from tests.tiny import write_jsonl

# The adapters' own questions; choice 0 is what the "capitals" adapter learned, 1 what "swapped" learned.
LOCAL_TASK = """task: capitals_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: capitals.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: "{{choices}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""


def test_missing_lm_eval_is_one_line_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # how Python marks a module as not importable
    with pytest.raises(PlannerError, match=r"lm-eval is not installed; pip install 'lm_eval\[hf\]") as err:
        select_tasks(["general_mc"])
    assert "\n" not in str(err.value) and ".[eval]" in str(err.value)


def test_shipped_task_is_a_valid_multiple_choice_set():
    rows = [json.loads(line) for line in (SHIPPED_TASKS / "general_mc.jsonl").read_text().splitlines()]
    assert 10 <= len(rows) <= 20
    for row in rows:
        assert set(row) == {"question", "choices", "answer"} and row["question"].endswith("?")
        assert len(row["choices"]) == 4 == len(set(row["choices"])) and 0 <= row["answer"] < 4
    assert len({r["answer"] for r in rows}) == 4  # the right answer is not always in one place
    yaml_text = (SHIPPED_TASKS / "general_mc.yaml").read_text()
    assert "task: general_mc" in yaml_text and "test: general_mc.jsonl" in yaml_text
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"data/lm_eval_tasks/*"' in pyproject  # shipped in the wheel too


def _capitals_task(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "capitals_mc.yaml").write_text(LOCAL_TASK)
    write_jsonl(folder / "capitals.jsonl", [{"question": q, "choices": [a, b], "answer": 0}
                                           for (q, a), (_, b) in zip(CAPITALS, SWAPPED)])
    return folder


@pytest.mark.slow
def test_shipped_task_with_and_without_the_adapter_and_the_base_side_is_the_base_model(tiny_base, two_adapters):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM

    report = evaluate_lm_eval(AdapterRef(two_adapters["capitals"], str(tiny_base)), ["general_mc"], device="cpu")
    assert report.include_path == (str(SHIPPED_TASKS.resolve()),) and report.limit is None
    (scores,) = report.tasks
    assert scores.task == "general_mc" and scores.samples == 20
    for side in (scores.base, scores.adapter):
        assert set(side) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
        assert all(isinstance(v, float) for v in side.values())
        assert 0.0 <= side["acc"] <= 1.0 and 0.0 <= side["acc_norm"] <= 1.0
    assert scores.delta == {m: scores.adapter[m] - scores.base[m] for m in ("acc", "acc_norm")}
    assert report.to_dict()["tasks"]["general_mc"]["samples"] == 20
    assert report.metrics()["lm_eval.general_mc.delta.acc"] == scores.delta["acc"]

    # the adapter-disabled side equals lm-eval on the plain base model, loaded on its own
    model, tokenizer = load_base(str(tiny_base), "fp32", "cpu")
    plain = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1),
                                    tasks=list(select_tasks(["general_mc"]).specs), log_samples=False,
                                    bootstrap_iters=0)
    result = plain["results"]["general_mc"]
    assert (result["acc,none"], result["acc_norm,none"]) == (scores.base["acc"], scores.base["acc_norm"])


@pytest.mark.slow
def test_a_local_task_tells_two_adapters_apart(tiny_base, two_adapters, tmp_path):
    pytest.importorskip("lm_eval")
    folder = _capitals_task(tmp_path / "tasks")  # data_files relative to the YAML, not to the cwd
    caps = evaluate_lm_eval(AdapterRef(two_adapters["capitals"], str(tiny_base)), ["capitals_mc"], folder,
                            device="cpu")
    swapped = evaluate_lm_eval(AdapterRef(two_adapters["swapped"], str(tiny_base)), ["capitals_mc"], folder,
                               device="cpu", limit=3)
    assert caps.tasks[0].adapter["acc"] == 1.0 and swapped.tasks[0].adapter["acc"] == 0.0
    assert caps.tasks[0].samples == 4 and swapped.tasks[0].samples == 3
    assert 0.0 <= caps.tasks[0].base["acc"] <= 1.0
    assert caps.tasks[0].delta["acc"] == 1.0 - caps.tasks[0].base["acc"]


def test_bad_task_folders_are_one_line_errors(tmp_path):
    pytest.importorskip("lm_eval")
    with pytest.raises(PlannerError, match="is not a folder of task YAMLs"):
        select_tasks(["general_mc"], tmp_path / "missing")
    with pytest.raises(PlannerError, match="no lm-eval task given"):
        select_tasks([" ", ""])


@pytest.fixture()
def stored(tmp_path, monkeypatch, tiny_base, two_adapters):
    from backend.store import AdapterStore

    monkeypatch.setenv("PLAN_HOME", str(tmp_path / "home"))
    AdapterStore().register("caps", two_adapters["capitals"], base_model=str(tiny_base))
    return "caps"


@pytest.mark.slow
def test_plan_eval_with_lm_eval_tasks(stored, tmp_path, capsys, monkeypatch):
    pytest.importorskip("lm_eval")
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": q, "completion": " " + a} for q, a in CAPITALS])
    general = tmp_path / "general.txt"
    general.write_text("the sky is blue and the grass is green . the cat says meow . one plus two equals three .")
    args = ["eval", "caps", "--dataset", str(data), "--general", str(general)]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    track = ["--track"] if _has("mlflow") else ["--no-track"]
    assert main([*args, "--json", *track, "--lm-eval-tasks", "general_mc", "--lm-eval-limit", "5"]) == 0
    out = json.loads(capsys.readouterr().out)  # lm-eval's logs and progress bars stay off stdout
    mc = out["lm_eval"]["tasks"]["general_mc"]
    assert mc["samples"] == 5 and out["lm_eval"]["limit"] == 5 and set(mc["delta"]) == {"acc", "acc_norm"}
    from backend.store import AdapterStore
    assert AdapterStore().get("caps").metadata["eval"]["lm_eval"] == out["lm_eval"]
    if out.get("mlflow"):
        import mlflow
        metrics = mlflow.MlflowClient(uri).get_run(out["mlflow"]["run_id"]).data.metrics
        assert metrics["lm_eval.general_mc.adapter.acc"] == mc["adapter"]["acc"]

    folder = _capitals_task(tmp_path / "tasks")
    assert main([*args, "--no-track", "--lm-eval-tasks", "capitals_mc", "--lm-eval-include", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "lm-eval tasks" in text and "capitals_mc" in text and "acc" in text

    for extra, message in ((["--lm-eval-limit", "3"], "need --lm-eval-tasks"),
                           (["--lm-eval-tasks", "general_mc", "--lm-eval-limit", "0"], "--lm-eval-limit must be a positive integer"),
                           (["--lm-eval-tasks", "general_mc,helaswag"],  # reads lm-eval's own index: ~8 s
                            "unknown lm-eval task 'helaswag'; did you mean hellaswag?")):
        assert main([*args, "--no-track", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    assert main([*args, "--no-track", "--lm-eval-tasks", "general_mc"]) == 2
    assert capsys.readouterr().err.startswith("error: plan eval --lm-eval-tasks needs the eval extra (lm_eval not installed)")


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
