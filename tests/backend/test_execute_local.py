"""`plan MODEL --execute --backend local`: data checked first, fit refusal, confirmation, the end-to-end CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.execute import ExecuteOptions, default_output_dir
from planner.cli.execute import run_plan
from backend.local import check_fit, check_output_dir
from tests.cli import run as cli
from planner.errors import PlannerError
from planner.estimate import estimate
from tests.tiny import write_jsonl

GIB = 1024**3



def test_plan_larger_than_the_gpu_is_refused_unless_forced():
    est = estimate("llama3-8b", mode="full", seq_len=2048)
    gpu = {"name": "NVIDIA GeForce RTX 4090", "total_memory_bytes": 24 * GIB, "count": 1}
    with pytest.raises(PlannerError) as err:
        check_fit(est, gpu, force=False)
    usable = 24 * GIB - est.cuda_context_bytes  # the one fit rule (pricing/fit.py); contract change, issue 10
    assert str(err.value) == (f"does not fit NVIDIA GeForce RTX 4090: needs {est.total_bytes / GIB:.2f} GiB per GPU of "
                              f"{usable / GIB:.2f} GiB usable; try --mode lora or --mode qlora, "
                              "--backend sagemaker, or --force to try anyway")
    assert check_fit(est, gpu, force=True)[0].endswith("running anyway (--force)")
    small = estimate("qwen2.5-0.5b", mode="qlora", seq_len=512)
    assert check_fit(small, gpu, force=False)[0].startswith("fits NVIDIA GeForce RTX 4090: needs ")
    assert "training runs on the CPU" in check_fit(est, None, force=False)[0]


def test_completed_output_dir_is_refused_and_unfinished_one_resumes(tmp_path):
    assert check_output_dir(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps({"status": "running", "global_step": 4}))
    assert "resuming from its last complete checkpoint" in check_output_dir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"status": "completed", "global_step": 30}))
    with pytest.raises(PlannerError, match=r"already holds a completed run \(30 steps\); pass another --output-dir"):
        check_output_dir(tmp_path)


def test_default_output_dir_is_stable_so_a_rerun_resumes():
    est = estimate("llama3-8b", mode="qlora")
    assert default_output_dir("llama3-8b", est, "data/sql.jsonl") == Path("runs/llama3-8b-qlora-sql")
    assert default_output_dir("meta-llama/Meta-Llama-3-8B", est, "data/sql/") == Path("runs/llama3-8b-qlora-sql")


def test_bad_inputs_are_one_line_errors_before_any_training(tmp_path, capsys, tiny_model):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "hello"}, {"txt": "oops"}])
    code, out, err = cli(capsys, str(tiny_model), "--mode", "lora", "--no-pricing", "--execute", "--yes",
                         "--seq-len", "32", "--dataset", str(bad))  # within the tiny model's 256 positions
    assert code == 2 and err == (f"error: {bad} line 2: unknown record format (keys: txt); need 'messages', "
                                 "'prompt' and 'completion', or 'text'\n")
    code, _, err = cli(capsys, str(tiny_model), "--mode", "lora", "--no-pricing", "--execute", "--yes", "--seq-len", "32")
    assert code == 2 and err.startswith("error: --execute needs --dataset PATH")
    code, _, err = cli(capsys, str(tiny_model), "--mode", "inference", "--no-pricing", "--execute", "--yes",
                       "--dataset", str(bad))
    assert code == 2 and err.startswith("error: --execute trains a model; --mode inference has nothing to train")
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": "hello"}])
    code, _, err = cli(capsys, str(tiny_model), "--mode", "lora", "--no-pricing", "--execute", "--dataset", str(good),
                       "--output-dir", str(tmp_path / "o"))
    assert code == 2 and err.endswith("error: training needs confirmation but stdin is not a terminal; pass --yes\n")
    assert not (tmp_path / "o").exists()
    est = estimate(str(tiny_model), mode="lora")
    with pytest.raises(PlannerError, match="unknown backend 'azure'; choose local or sagemaker"):
        run_plan(str(tiny_model), est, None, ExecuteOptions(backend="azure", execute=True, dataset=str(good)))


@pytest.mark.slow
def test_cli_trains_end_to_end_and_prints_json(tmp_path, capsys, tiny_model, facts_file, monkeypatch):
    monkeypatch.delenv("PYTORCH_CUDA_ALLOC_CONF", raising=False)
    out = tmp_path / "cli-run"
    code, stdout, err = cli(capsys, str(tiny_model), "--mode", "qlora", "--seq-len", "32", "--batch-size", "4",
                            "--allocator", "expandable",
                            "--lora-r", "8", "--lora-alpha", "16", "--no-pricing", "--execute", "--yes",
                            "--dataset", str(facts_file), "--output-dir", str(out), "--max-steps", "6",
                            "--save-steps", "3", "--learning-rate", "0.03", "--experiment", "cli", "--json")
    assert code == 0, err[-2000:]
    result = json.loads(stdout)  # stdout holds exactly one JSON object; progress went to stderr
    assert result["mode"] == "qlora" and result["run"]["status"] == "completed"
    assert result["run"]["global_step"] == 6 and [e["step"] for e in result["run"]["train_loss"]] == [1, 3, 6]
    assert result["run"]["predicted_peak_allocated_bytes"] == result["memory"]["peak_allocated_bytes"]
    assert result["run"]["adapter"] == "cli-run" and result["run"]["mlflow"]["experiment"] == "cli"
    assert "no CUDA GPU here: training runs on the CPU" in err
    # the child ran with the policy the plan modelled, and run.json says so (issue 10)
    assert result["run"]["allocator"] == {"policy": "expandable", "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    plan = json.loads((out / "plan.json").read_text())
    assert plan["training"]["model"] == str(tiny_model) and plan["training"]["max_steps"] == 6
    code, _, err = cli(capsys, str(tiny_model), "--mode", "qlora", "--no-pricing", "--execute", "--yes",
                       "--dataset", str(facts_file), "--output-dir", str(out))
    assert code == 2 and "already holds a completed run (6 steps)" in err
