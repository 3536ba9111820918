"""The adapter store and `plan adapters list/show/delete`, on real folders (no model needed)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from backend.store import AdapterStore, default_root, register_run
from planner.cli import main
from planner.errors import PlannerError


def fake_adapter(folder: Path, marker: str = "x") -> Path:
    """A folder with the two files the store requires (contents do not matter to the store)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.safetensors").write_text(marker)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "run.json").write_text("{}")      # not an adapter file: stays behind
    (folder / "mlflow.db").write_text("")       # idem
    return folder


def test_default_root_follows_plan_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_HOME", str(tmp_path / "h"))
    assert default_root() == tmp_path / "h" / "adapters"
    assert AdapterStore().root == tmp_path / "h" / "adapters"


def test_register_copies_adapter_files_and_round_trips(tmp_path):
    store = AdapterStore(tmp_path / "store")
    src = fake_adapter(tmp_path / "run")
    rec = store.register("sql-lora", src, base_model="llama3-8b", metadata={"mode": "qlora", "lora_r": 8})
    assert rec.path == tmp_path / "store" / "sql-lora"
    assert sorted(p.name for p in rec.path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                          "record.json", "tokenizer.json"]
    got = store.get("sql-lora")
    assert got == rec and got.to_dict()["path"] == str(rec.path)
    assert got.created.endswith("+00:00") and len(got.created) == 25


def test_many_adapters_per_base_filtered_and_ordered(tmp_path):
    store = AdapterStore(tmp_path / "s")
    for name, base in [("a1", "llama3-8b"), ("a2", "llama3-8b"), ("b1", "qwen2.5-7b")]:
        store.register(name, fake_adapter(tmp_path / name), base_model=base, metadata={})
    assert [r.name for r in store.list()] == ["a1", "a2", "b1"]
    assert [r.name for r in store.list(base_model="LLAMA3-8B")] == ["a1", "a2"]
    assert store.list(base_model="mistral-7b") == []


def test_unknown_name_suggests_and_duplicates_are_refused(tmp_path):
    store = AdapterStore(tmp_path / "s")
    store.register("support-bot", fake_adapter(tmp_path / "a"), base_model="m", metadata={})
    with pytest.raises(PlannerError, match=r"^unknown adapter 'support-bt'; did you mean 'support-bot'\? "
                                           r"`plan adapters list` shows all$"):
        store.get("support-bt")
    with pytest.raises(PlannerError, match="adapter 'support-bot' already exists"):
        store.register("support-bot", fake_adapter(tmp_path / "b"), base_model="m", metadata={})
    with pytest.raises(PlannerError, match="invalid adapter name '../x'"):
        store.register("../x", fake_adapter(tmp_path / "c"), base_model="m", metadata={})
    with pytest.raises(PlannerError, match="is not a PEFT adapter folder: missing adapter_model.safetensors"):
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "adapter_config.json").write_text("{}")
        store.register("d", tmp_path / "d", base_model="m", metadata={})
    assert store.names() == ["support-bot"]  # failed registrations leave nothing behind


def test_update_metadata_and_delete(tmp_path):
    store = AdapterStore(tmp_path / "s")
    store.register("a", fake_adapter(tmp_path / "a"), base_model="m", metadata={"mode": "lora"})
    assert store.update_metadata("a", eval={"perplexity": 3.5}).metadata == {"mode": "lora", "eval": {"perplexity": 3.5}}
    assert store.get("a").metadata["eval"] == {"perplexity": 3.5}
    store.delete("a")
    assert store.list() == [] and not (tmp_path / "s" / "a").exists()


def test_register_without_copy_keeps_files_where_they_are(tmp_path):
    store = AdapterStore(tmp_path / "s")
    src = fake_adapter(tmp_path / "keep")
    rec = store.register("k", src, base_model="m", metadata={}, copy=False)
    assert rec.path == src.resolve() and store.get("k").path == src.resolve()
    store.delete("k")
    assert (src / "adapter_model.safetensors").exists()


def run_record_for(out: Path, mode: str = "lora") -> dict:
    return {"plan": {"model": {"name": "tiny"}, "job": {"mode": mode, "precision": "bf16", "seq_len": 32,
                                                        "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                                                        "lora_targets": "all-linear", "num_virtual_tokens": 4}},
            "base_model": {"name": "/models/tiny", "revision": "local-sha256:abc"},
            "global_step": 30, "train_loss": [{"step": 1, "loss": 5.0}, {"step": 30, "loss": 1.5}],
            "eval_loss": None, "data": {"train": {"source": "facts.jsonl", "fingerprint": "sha256:f"}, "eval": None},
            "mlflow": {"run_id": "r1"}, "finished": "2026-01-02T03:04:05+00:00"}


def test_register_run_names_after_the_folder_and_reruns_replace_their_own_entry(tmp_path):
    store = AdapterStore(tmp_path / "s")
    out = fake_adapter(tmp_path / "runs" / "tiny-lora-facts")
    rec = register_run(out, run_record_for(out), store=store)
    assert rec.name == "tiny-lora-facts" and rec.base_model == "/models/tiny"
    assert rec.metadata["peft"] == {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_targets": "all-linear"}
    assert rec.metadata["metrics"] == {"global_step": 30, "train_loss": 1.5, "eval_loss": None}
    assert rec.metadata["dataset"]["fingerprint"] == "sha256:f"
    assert rec.metadata["base_revision"] == "local-sha256:abc"
    assert register_run(out, run_record_for(out), store=store).name == "tiny-lora-facts"
    other = fake_adapter(tmp_path / "elsewhere" / "tiny-lora-facts")
    assert register_run(other, run_record_for(other), store=store).name == "tiny-lora-facts-2"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_list_show_delete(tmp_path, capsys, monkeypatch):
    store = AdapterStore()  # PLAN_HOME from the conftest fixture
    out = fake_adapter(tmp_path / "runs" / "facts")
    rec = register_run(out, run_record_for(out, "qlora"), store=store)
    code, stdout, _ = cli(capsys, "adapters", "list", "--json")
    assert code == 0 and [r["name"] for r in json.loads(stdout)] == ["facts"]
    code, stdout, _ = cli(capsys, "adapters", "list")
    assert code == 0
    row = next(line for line in stdout.splitlines() if line.startswith("facts "))  # borderless table
    cells = re.split(r"\s{2,}", row.strip())
    assert cells[2:] == ["qlora", "r=8", "facts.jsonl", "30", "1.5000", "-", rec.created[:10]]
    code, stdout, _ = cli(capsys, "adapters", "list", "--base", "other")
    assert code == 0 and stdout == ""
    code, stdout, _ = cli(capsys, "adapters", "show", "facts", "--json")
    assert code == 0 and json.loads(stdout)["metadata"]["mode"] == "qlora"
    code, stdout, _ = cli(capsys, "adapters", "show", "facts")
    assert "metrics.train_loss" in stdout and "1.5" in stdout
    code, _, err = cli(capsys, "adapters", "show", "fact")
    assert code == 2 and err == "error: unknown adapter 'fact'; did you mean 'facts'? `plan adapters list` shows all\n"
    code, _, err = cli(capsys, "adapters", "delete", "facts")  # stdin is not a terminal under pytest
    assert code == 2 and "pass --yes" in err
    code, _, err = cli(capsys, "adapters", "delete", "facts", "--yes")
    assert code == 0 and "deleted adapter 'facts'" in err and store.list() == []
