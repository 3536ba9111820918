"""A resume continues only the run it was started as: changed data or settings are refused in one
line naming the change, `--restart` moves the old run aside (never deletes it) and starts over."""
from __future__ import annotations

import json

import pytest

from backend.checkpoints import SET_ASIDE
from backend.run_identity import changes, identity
from backend.train import main, train
from planner.plan import Plan
from planner.errors import PlannerError
from tests.backend.conftest import make_plan, write_plan
from tests.tiny import memorization_records, write_jsonl


def test_changes_name_each_field_and_ignore_records_without_identity():
    job = {"mode": "lora", "precision": "bf16", "seq_len": 32, "batch_size": 4, "lora_r": 8, "lora_alpha": 16,
           "lora_dropout": 0.0, "lora_targets": "all-linear", "num_virtual_tokens": 20, "optimizer": "adamw"}
    data = {"train": {"fingerprint": "sha256:" + "a" * 64}, "eval": None}
    old = identity(job, model="m", learning_rate=2e-4, seed=0, eval_fraction=0.0, data=data)
    assert "num_virtual_tokens" not in old  # not used by LoRA: changing it changes nothing
    new = identity({**job, "lora_r": 16, "seq_len": 64}, model="m", learning_rate=2e-4, seed=0, eval_fraction=0.0,
                   data={"train": {"fingerprint": "sha256:" + "b" * 64}, "eval": None})
    assert changes(old, new) == ["lora_r 8 -> 16", "seq_len 32 -> 64",
                                 "train_data sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"]
    assert changes(None, new) == [] and changes(old, dict(old)) == []


@pytest.mark.slow
def test_changed_rank_or_data_is_refused_and_restart_moves_the_run_aside(tmp_path, tiny_model, facts_file, capsys):
    out = tmp_path / "run"
    plan = make_plan(tiny_model, "lora", facts_file, out, max_steps=4, save_steps=2, logging_steps=1,
                     save_total_limit=None, register=False, track=False)
    first = train(Plan.from_dict(plan))
    assert first["identity"]["lora_r"] == 8 and first["identity"]["train_data"].startswith("sha256:")

    wider = {**plan, "job": {**plan["job"], "lora_r": 16}}
    with pytest.raises(PlannerError) as err:  # not a size-mismatch traceback from the checkpoint loader
        train(Plan.from_dict(wider, max_steps=6))
    assert str(err.value) == (f"{out} holds a run started with other settings (lora_r 8 -> 16); rerun with the same "
                              "settings to resume it, pass --restart to start over (its checkpoints are moved aside, "
                              "not deleted), or pass another --output-dir")
    edited = write_jsonl(tmp_path / "facts.jsonl", memorization_records("prompt-completion", repeat=3))
    changed_data = {**plan, "training": {**plan["training"], "dataset": str(edited), "max_steps": 6}}
    capsys.readouterr()
    assert main(["--plan", str(write_plan(tmp_path / "p.json", changed_data))]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {out} holds a run started with other settings "
                                                     "(train_data sha256:")
    assert json.loads((out / "run.json").read_text())["status"] == "completed"  # the finished run is untouched

    restarted = train(Plan.from_dict(wider), restart=True)
    assert restarted["status"] == "completed" and restarted["resumed_from"] == []
    assert [e["step"] for e in restarted["train_loss"]] == [1, 2, 3, 4] and restarted["identity"]["lora_r"] == 16
    aside = sorted(p.name.split("-restart-")[0] for p in (out / "checkpoints" / SET_ASIDE).iterdir())
    assert aside == ["checkpoint-2", "checkpoint-4"]
    [old_record] = (out / SET_ASIDE).iterdir()
    assert json.loads(old_record.read_text())["identity"]["lora_r"] == 8  # the old run, kept
