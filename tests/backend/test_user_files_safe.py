"""Issue 19: nothing of the user's is touched, no file read hangs, a damaged run record is refused.

Real folders, real FIFOs and /dev/zero, the CLI in-process (``planner.cli.main``) or as a real
subprocess where a hang must be caught by a timeout.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import main
from planner.safe_io import MARKER, check_output_target, read_bytes, read_json_object
from planner.errors import PlannerError
from tests.tiny import write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def one_error(code: int, err: str) -> str:
    """One ``error:`` line (price-age warnings may precede it), no traceback, a non-zero exit."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error")]
    assert code != 0 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- --emit-config ------------------------------------------------------------------------------

EMIT = ["llama3-8b", "--mode", "lora"]


@pytest.mark.parametrize("files", [{"plan.json": "{\"mine\": 1}\n"}, {"launch.sh": "echo mine\n"},
                                   {"notes.txt": "mine\n"}, {"run.json": "{}", "plan.json": "{}"}])
def test_emit_config_never_replaces_a_users_files(tmp_path, files):
    target = tmp_path / "mine"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
    before = snapshot(target)
    line = one_error(*run_main([*EMIT, "--emit-config", str(target)])[::2])
    assert "already holds" in line and "pass a new or empty folder" in line
    assert snapshot(target) == before


def test_emit_config_empty_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = one_error(*run_main([*EMIT, "--emit-config", ""])[::2])
    assert "names the current folder" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_emit_config_rewrites_its_own_earlier_output(tmp_path):
    target = tmp_path / "launch"
    assert run_main([*EMIT, "--emit-config", str(target)])[0] == 0
    assert (target / MARKER).read_text().strip() == "launch-config"
    assert run_main([*EMIT, "--emit-config", str(target)])[0] == 0  # a rerun of the same kind is fine


def test_emit_config_into_a_model_folder_is_refused(tmp_path, tiny_model):
    before = snapshot(tiny_model)
    line = one_error(*run_main([*EMIT, "--emit-config", str(tiny_model)])[::2])
    assert "is a model folder" in line
    assert snapshot(tiny_model) == before


# ---- --output-dir ----------------------------------------------------------------------------

def _execute(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [str(model), "--mode", "lora", "--seq-len", "32", "--no-pricing", "--execute", "--yes",
            "--dataset", str(data), "--output-dir", str(out), *extra]


def test_output_dir_of_user_files_is_refused_untouched(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    (mine / "tokenizer.json").write_text("{}\n")
    before = snapshot(mine)
    line = one_error(*run_main(_execute(tiny_model, data, mine))[::2])
    assert "--output-dir" in line and "README.md" in line
    assert snapshot(mine) == before


def test_output_dir_never_the_base_models_folder(tmp_path, tiny_model):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    before = snapshot(tiny_model)
    line = one_error(*run_main(_execute(tiny_model, data, tiny_model))[::2])
    assert "is a model folder" in line
    assert snapshot(tiny_model) == before


def test_merge_output_uses_the_same_check(tmp_path, tiny_model):
    with pytest.raises(PlannerError, match="is a model folder"):
        check_output_target(tiny_model, flag="--output")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / MARKER).write_text("launch-config\n")
    with pytest.raises(PlannerError, match="already holds a launch-config output"):
        check_output_target(tmp_path / "x", flag="--output")  # merge -o: new or empty only


# ---- bounded regular-file reads -----------------------------------------------------------------

def _plan_subprocess(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_dev_zero_as_the_model_is_refused_at_once():
    done = _plan_subprocess(["/dev/zero", "--mode", "lora"], timeout=30)
    assert done.returncode != 0 and "not a regular file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("where", ["model", "config"])
def test_a_fifo_as_the_model_or_its_config_does_not_block(tmp_path, where):
    if where == "model":
        target = tmp_path / "model.json"
        os.mkfifo(target)
    else:
        (tmp_path / "m").mkdir()
        os.mkfifo(tmp_path / "m" / "config.json")
        target = tmp_path / "m"
    done = _plan_subprocess([str(target), "--mode", "lora"], timeout=30)  # a hang is a TimeoutExpired
    assert done.returncode != 0 and "not a regular file" in done.stderr, done.stderr


def test_the_read_helper_refuses_oversized_and_special_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(PlannerError, match="over the"):
        read_bytes(big, "plan", limit=1024)
    with pytest.raises(PlannerError, match="is a folder"):
        read_bytes(tmp_path, "plan")
    with pytest.raises(PlannerError, match="not a regular file"):
        read_bytes("/dev/null", "plan")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(PlannerError, match="holds a JSON list, not an object"):
        read_json_object(tmp_path / "list.json", "run record")
    (tmp_path / "huge.json").write_text('{"a": ' + "9" * 5000 + "}")
    with pytest.raises(PlannerError, match="cannot be read"):
        read_json_object(tmp_path / "huge.json", "run record")


def test_a_fifo_as_the_plan_file_does_not_block(tmp_path):
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "backend.train", "--plan", str(fifo)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode != 0 and "not a regular file" in done.stderr, done.stderr[-500:]


# ---- the run record ---------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"global_step": "7"}',
                                     b'{"identity": [1]}', b'{"status": "weird"}', b'{"train_loss": [1]}'])
def test_a_damaged_run_record_is_refused_and_kept(tmp_path, tiny_model, content):
    """A rerun (other data) into a folder whose run.json is damaged: refused in one line, nothing
    resumed, the damaged file byte for byte where it was."""
    data = write_jsonl(tmp_path / "other.jsonl", [{"text": "other data"}])
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "run.json").write_bytes(content)
    line = one_error(*run_main(_execute(tiny_model, data, out))[::2])
    assert "cannot be matched to this run" in line and "--restart" in line
    assert (out / "run.json").read_bytes() == content


@pytest.mark.slow
def test_the_trainer_refuses_a_damaged_record_and_leaves_it(tmp_path, tiny_model):
    """The training process itself (as accelerate or a rerun launches it) refuses too, and its
    failure handler does not overwrite the damaged record."""
    from tests.backend.conftest import make_plan

    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello there"}] * 4)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_bytes(b"\x00garbage")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(make_plan(tiny_model, "lora", data, out)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "backend.train", "--plan", str(plan)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode != 0 and "cannot be matched to this run" in done.stderr, done.stderr[-800:]
    assert (out / "run.json").read_bytes() == b"\x00garbage"


@pytest.mark.slow
def test_no_record_left_after_truncation_is_refused_before_training(tmp_path, tiny_model):
    """Every prompt fills --seq-len 32, so TRL would drop every example and the Trainer die on
    num_samples=0: the training process refuses in one line before the first step."""
    from tests.backend.conftest import make_plan

    long_prompt = " ".join(["what is the capital of france ?"] * 12)  # > 32 tokens for the tiny tokenizer
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": long_prompt, "completion": " paris ."}] * 4)
    out = tmp_path / "run"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(make_plan(tiny_model, "lora", data, out)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "backend.train", "--plan", str(plan)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode != 0, done.stderr[-800:]
    assert "all 4 training records have no trained token within --seq-len 32" in done.stderr, done.stderr[-800:]
    assert "num_samples" not in done.stderr and "Traceback" not in done.stderr


def _long_prompt_data(tmp_path: Path, n_long: int, n_short: int) -> Path:
    long_prompt = " ".join(["what is the capital of france ?"] * 12)  # > 32 tokens for the tiny tokenizer
    return write_jsonl(tmp_path / "pc.jsonl", [{"prompt": long_prompt, "completion": " paris ."}] * n_long
                       + [{"prompt": "what is the capital of france ?", "completion": " paris ."}] * n_short)


def test_the_cli_preflight_refuses_when_no_record_survives_truncation(tmp_path, tiny_model):
    data = _long_prompt_data(tmp_path, 4, 0)
    out = tmp_path / "run"
    line = one_error(*run_main(_execute(tiny_model, data, out))[::2])
    assert "all 4 training records have no trained token within --seq-len 32" in line
    assert not out.exists()


@pytest.mark.slow
def test_the_preflight_count_matches_trls_own(tmp_path, tiny_model):
    """The independent oracle: TRL's SFTTrainer data preparation on the same records and length."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from backend.data import dropped_at, hf_datasets, preflight

    data = preflight(_long_prompt_data(tmp_path, 3, 5))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model), processing_class=tok,
                         train_dataset=hf_datasets(data)[0],
                         args=SFTConfig(output_dir=str(tmp_path / "o"), max_length=32, report_to=[], use_cpu=True))
    assert dropped_at(data.train, tok, 32) == 8 - len(trainer.train_dataset) == 3
