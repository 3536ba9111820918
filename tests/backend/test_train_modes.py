"""Each mode trains the tiny model end to end on the CPU with real TRL/PEFT/bitsandbytes; loss falls.

In-process (``backend.train.train``) to share imports; the kill-and-resume test runs the same
script as a child process. ~30 steps on 16 memorization records, seq 32, batch 4.
"""
from __future__ import annotations

import json

import pytest

from backend.store import AdapterStore
from backend.train import train
from planner.plan import Plan
from tests.backend.conftest import make_plan
from tests.tiny import memorization_records, write_jsonl

pytestmark = pytest.mark.slow

# (mode, learning rate, loss must end below this fraction of the first logged loss)
CASES = [("qlora", 3e-2, 0.5), ("lora", 3e-2, 0.5), ("full", 1e-2, 0.3), ("prompt-tuning", 3e-1, 0.85)]


def run(plan):
    return train(Plan.from_dict(plan))


@pytest.mark.parametrize("mode,lr,fraction", CASES, ids=[c[0] for c in CASES])
def test_mode_trains_with_falling_loss_and_writes_results(tmp_path, tiny_model, facts_file, mode, lr, fraction):
    out = tmp_path / f"tiny-{mode}"
    plan = make_plan(tiny_model, mode, facts_file, out, learning_rate=lr)
    record = run(plan)

    losses = [e["loss"] for e in record["train_loss"]]
    assert [e["step"] for e in record["train_loss"]] == [1, 5, 10, 15, 20, 25, 30]
    assert losses[-1] < fraction * losses[0], losses
    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["global_step"] == 30
    assert on_disk["predicted_peak_allocated_bytes"] == plan["memory"]["peak_allocated_bytes"] > 0
    assert on_disk["measured_peak_allocated_bytes"] is None  # no GPU here
    assert on_disk["plan"]["job"]["mode"] == mode and on_disk["eval_loss"] is None
    import hashlib
    assert on_disk["data"]["train"] == {  # 136 = 16 records x (prompt + completion words), word-level tokens
        "source": str(facts_file), "format": "prompt-completion", "records": 16, "tokens": 136,
        "fingerprint": "sha256:" + hashlib.sha256(facts_file.read_bytes()).hexdigest()}
    assert (out / "tokenizer.json").is_file() and (out / "plan.json").is_file()

    store = AdapterStore()
    if mode == "full":
        assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
        assert on_disk["artifacts"] == "model" and on_disk["adapter"] is None and store.list() == []
        return
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    [entry] = store.list(base_model=str(tiny_model))
    assert entry.name == f"tiny-{mode}" == on_disk["adapter"]
    assert entry.metadata["mode"] == mode and entry.metadata["metrics"]["train_loss"] == losses[-1]
    assert entry.metadata["dataset"]["fingerprint"] == on_disk["data"]["train"]["fingerprint"]
    assert entry.metadata["base_revision"].startswith("local-sha256:")
    peft_type = json.loads((entry.path / "adapter_config.json").read_text())["peft_type"]
    assert peft_type == ("PROMPT_TUNING" if mode == "prompt-tuning" else "LORA")
    cfg = json.loads((out / "checkpoints" / "checkpoint-30" / "adapter_config.json").read_text())
    assert (cfg.get("r"), cfg.get("lora_alpha")) == ((8, 16) if mode != "prompt-tuning" else (None, None))


def test_qlora_loads_real_bitsandbytes_4bit_layers(tiny_model):
    import torch
    import bitsandbytes as bnb

    from backend.recipes import recipe_for
    from planner.job import Job

    job = Job(mode="qlora", precision="int4", attention="sdpa", gradient_checkpointing=True,
              lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_targets="all-linear")
    recipe = recipe_for(job)
    assert recipe.name == "qlora"
    model = recipe.wrap(recipe.load(str(tiny_model), job, torch.float32, {"type": "cpu"}), job)
    linear4 = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    assert linear4[0].weight.quant_type == "nf4" and linear4[0].weight.quant_state.nested  # double quant
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 7 * 2 and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_messages_with_eval_split_and_mlflow_tracking(tmp_path, tiny_model):
    import mlflow

    data = tmp_path / "chat"
    write_jsonl(data / "train.jsonl", memorization_records("messages", repeat=2))
    write_jsonl(data / "eval.jsonl", memorization_records("messages")[:4])
    out = tmp_path / "tiny-lora-chat"
    plan = make_plan(tiny_model, "lora", data, out, learning_rate=3e-2, max_steps=20, experiment="chat-exp")
    record = run(plan)

    assert [e["step"] for e in record["eval_loss"]] == [10, 20, 20]  # every save, then the final eval
    assert record["eval_loss"][-1]["eval_loss"] < record["eval_loss"][0]["eval_loss"]
    assert record["data"]["eval"]["records"] == 4
    assert AdapterStore().get("tiny-lora-chat").metadata["metrics"]["eval_loss"] == record["eval_loss"][-1]["eval_loss"]

    uri = f"sqlite:///{out / 'mlflow.db'}"
    assert record["mlflow"]["tracking_uri"] == uri and record["mlflow"]["experiment"] == "chat-exp"
    client = mlflow.MlflowClient(uri)
    run_ = client.get_run(record["mlflow"]["run_id"])
    assert run_.info.status == "FINISHED"
    assert client.get_experiment(run_.info.experiment_id).name == "chat-exp"
    assert run_.data.params["job.mode"] == "lora" and run_.data.params["job.lora_r"] == "8"
    assert run_.data.params["training.max_steps"] == "20"
    history = client.get_metric_history(run_.info.run_id, "loss")
    assert [m.step for m in history] == [e["step"] for e in record["train_loss"]]
    assert [m.value for m in history] == pytest.approx([e["loss"] for e in record["train_loss"]])
    assert {m.step for m in client.get_metric_history(run_.info.run_id, "eval_loss")} == {10, 20}
    artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
    assert artifacts == {"plan.json", "run.json"}
    assert (out / "mlartifacts").is_dir()  # artifacts stay in the run folder, not ./mlruns


def test_bad_plan_and_settings_are_one_line_errors(tmp_path, capsys, tiny_model, facts_file):
    from backend.train import main
    from tests.backend.conftest import write_plan

    plan = make_plan(tiny_model, "lora", facts_file, tmp_path / "o")
    plan["training"]["max_step"] = 3
    code = main(["--plan", str(write_plan(tmp_path / "p.json", plan))])
    assert code == 2
    assert capsys.readouterr().err.startswith("error: plan.json 'training' has unknown field(s) max_step; known: ")
    (tmp_path / "broken.json").write_text("{")
    assert main(["--plan", str(tmp_path / "broken.json")]) == 2
    assert "broken.json line 1: not valid JSON" in capsys.readouterr().err
    del plan["training"]["max_step"]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "completion": "b"}, {"prompt": "a"}])
    assert main(["--plan", str(write_plan(tmp_path / "p.json", plan)), "--dataset", str(bad)]) == 2
    assert capsys.readouterr().err == f"error: {bad} line 2: missing 'completion'\n"


def test_fsdp_qlora_is_the_pure_bf16_recipe(tiny_model):
    """Issue 10: bf16 storage of the 4-bit weights, bf16 norms/embeddings and adapters, no
    prepare_model_for_kbit_training (which would make norms and embeddings fp32)."""
    import torch

    from backend.recipes import recipe_for
    from planner.job import Job
    from planner.plan import Strategy

    job = Job(mode="qlora", precision="int4", attention="sdpa", gradient_checkpointing=True,
              lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_targets="all-linear")
    recipe = recipe_for(job, Strategy.FSDP_QLORA)
    assert recipe.name == "fsdp-qlora"
    model = recipe.wrap(recipe.load(str(tiny_model), job, torch.bfloat16, {"type": "cpu"},
                                    {"bnb_4bit_quant_storage": "bfloat16"}), job)
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    assert floats == {torch.bfloat16}, floats  # one dtype: FSDP can flatten it
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.bfloat16 for p in trainable)
