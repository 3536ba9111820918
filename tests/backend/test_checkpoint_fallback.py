"""A damaged newest checkpoint is set aside and the previous one resumed; the history survives
every failure; a failure at any stage says `failed` with its reason in run.json.

Real training of the tiny model, a real SIGKILL, real truncated files (the safetensors adapter
and the torch optimizer state that the Trainer wrote).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend import checkpoints
from backend.checkpoints import MARKER, SET_ASIDE, damage, pick_resume, write_marker
from backend.train import main
from tests.backend.conftest import REPO, make_plan, write_plan
from tests.tiny import write_jsonl

STEPS = 24


def start(plan_path: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "backend.train", "--plan", str(plan_path)], cwd=REPO, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def complete(ckpts: Path) -> list[Path]:
    return sorted((p.parent for p in ckpts.glob(f"checkpoint-*/{MARKER}")), key=checkpoints.checkpoint_step)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_damage_is_found_in_adapter_and_optimizer_files(tmp_path):
    import torch
    from safetensors.torch import save_file

    for step in (2, 4):
        ck = tmp_path / f"checkpoint-{step}"
        ck.mkdir()
        save_file({"w": torch.zeros(64, 64)}, ck / "adapter_model.safetensors")
        torch.save({"state": {0: {"exp_avg": torch.zeros(64, 64)}}}, ck / "optimizer.pt")
        (ck / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        write_marker(ck, step)
    assert damage(tmp_path / "checkpoint-4") is None
    size = (tmp_path / "checkpoint-4" / "optimizer.pt").stat().st_size
    truncate(tmp_path / "checkpoint-4" / "optimizer.pt")
    assert damage(tmp_path / "checkpoint-4") == f"optimizer.pt has {size // 2} bytes, {size} when saved"
    (tmp_path / "checkpoint-2" / MARKER).write_text("2\n")  # an old marker without a manifest: structure checks
    truncate(tmp_path / "checkpoint-2" / "adapter_model.safetensors", keep=0.9)
    assert damage(tmp_path / "checkpoint-2").startswith("adapter_model.safetensors: truncated (")
    resume, moved = pick_resume(tmp_path)
    assert resume is None and [m["checkpoint"] for m in moved] == [str(tmp_path / "checkpoint-4"),
                                                                    str(tmp_path / "checkpoint-2")]
    assert sorted(p.name.split("-damaged-")[0] for p in (tmp_path / SET_ASIDE).iterdir()) == \
        ["checkpoint-2", "checkpoint-4"]  # renamed, not deleted
    assert not list(tmp_path.glob("checkpoint-*"))


def test_a_bad_record_on_rerun_records_failed_and_keeps_the_history(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    history = {"status": "running", "global_step": 7, "train_loss": [{"step": 5, "loss": 1.5}]}
    (out / "run.json").write_text(json.dumps(history))
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "hello"}, {"txt": "oops"}])
    plan = write_plan(tmp_path / "plan.json", {"schema_version": 1, "job": {"mode": "lora"}, "training": {
        "model": "unused", "dataset": str(bad), "output_dir": str(out)}})
    assert main(["--plan", str(plan)]) == 2
    reason = f"{bad} line 2: unknown record format (keys: txt); need 'messages', 'prompt' and 'completion', or 'text'"
    assert capsys.readouterr().err == f"error: {reason}\n"
    record = json.loads((out / "run.json").read_text())
    assert record == {**history, "status": "failed", "reason": reason, "finished": record["finished"]}
    assert not (out / ".plan.lock").exists()


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_and_the_run_completes_with_its_history(tmp_path, tiny_model,
                                                                                     facts_file):
    model = shutil.copytree(tiny_model, tmp_path / "model")
    out = tmp_path / "run"
    plan = make_plan(model, "lora", facts_file, out, learning_rate=3e-2, max_steps=STEPS, save_steps=4,
                     logging_steps=1, save_total_limit=None, register=False, track=False)
    plan_path = write_plan(tmp_path / "plan.json", plan)
    proc = start(plan_path, tmp_path / "first.log")
    deadline = time.monotonic() + 240
    while len(complete(out / "checkpoints")) < 2:
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "no two checkpoints in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    crashed = json.loads((out / "run.json").read_text())
    assert crashed["status"] == "running" and crashed["train_loss"]

    # 1. a failure before training (tokenizer gone) says failed and keeps every logged step
    (model / "tokenizer.json").rename(tmp_path / "tokenizer.json")
    rerun = start(plan_path, tmp_path / "tok.log")
    assert rerun.wait(timeout=300) == 2
    assert (tmp_path / "tok.log").read_text().splitlines()[-1].startswith(f"error: cannot load the tokenizer of '{model}'")
    failed = json.loads((out / "run.json").read_text())
    assert failed["status"] == "failed" and failed["reason"].startswith(f"cannot load the tokenizer of '{model}'")
    assert failed["train_loss"] == crashed["train_loss"] and failed["global_step"] == crashed["global_step"]
    (tmp_path / "tokenizer.json").rename(model / "tokenizer.json")

    # 2. the newest complete checkpoint truncated (with its COMPLETE marker): set aside, the previous one resumed
    ckpts = complete(out / "checkpoints")
    newest, previous = ckpts[-1], ckpts[-2]
    truncate(newest / "adapter_model.safetensors")
    rerun = start(plan_path, tmp_path / "second.log")
    assert rerun.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == STEPS
    assert record["resumed_from"] == [str(newest), str(previous)]  # the tokenizer attempt, then this one
    [aside] = record["set_aside_checkpoints"]
    assert aside["checkpoint"] == str(newest) and aside["reason"].startswith("adapter_model.safetensors has ")
    assert Path(aside["moved_to"]).is_dir()  # kept for a post-mortem
    # the history is complete: every step once, the steps before the fallback point exactly as first logged
    assert [e["step"] for e in record["train_loss"]] == list(range(1, STEPS + 1))
    upto = checkpoints.checkpoint_step(previous)
    assert record["train_loss"][:upto] == [e for e in crashed["train_loss"] if e["step"] <= upto]


def test_history_merge_keeps_earlier_steps_and_lets_the_current_run_win():
    from backend.run_record import merged

    earlier = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 1.0}]
    # a fallback to step 1: step 2 retrained (new value); the final eval and the save's eval share step 2
    current = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "loss": 2.4}]
    assert merged(earlier, current) == [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "loss": 2.4},
                                        {"step": 3, "loss": 1.0}]
    assert merged(None, current) == current and merged(earlier, []) == earlier
