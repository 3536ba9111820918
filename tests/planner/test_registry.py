import json

import pytest

from planner import PlannerError, resolve, shipped_models
from planner.registry import MODELS_DIR

ALIASES = ["llama3-70b", "llama3-8b", "llama3.1-405b", "llama3.2-1b", "qwen2.5-7b", "mistral-7b",
           "mixtral-8x7b", "gemma2-9b", "phi3-mini"]
HF_IDS = ["meta-llama/Meta-Llama-3-70B", "Qwen/Qwen2.5-7B", "mistralai/Mixtral-8x7B-v0.1",
          "google/gemma-2-9b", "microsoft/Phi-3-mini-4k-instruct"]


@pytest.mark.parametrize("name", ALIASES + HF_IDS)
def test_names_resolve(name):
    spec = resolve(name)
    assert spec.source.startswith("https://huggingface.co/")


def test_alias_and_id_are_the_same_model():
    assert resolve("llama3-70b") == resolve("meta-llama/Meta-Llama-3-70B") == resolve("LLAMA3-70B")


def test_every_shipped_file_is_valid():
    files = sorted(MODELS_DIR.glob("*.json"))
    assert len(files) >= 25
    for f in files:
        doc = json.loads(f.read_text())
        assert {"name", "hf_id", "aliases", "source", "as_of", "config"} <= doc.keys(), f
        assert doc["source"] == f"https://huggingface.co/{doc['hf_id']}/blob/main/config.json"
        assert doc["aliases"] and doc["config"]["model_type"]
    assert len(shipped_models()) == len(files)


def test_unknown_model_suggests():
    with pytest.raises(PlannerError, match=r"unknown model 'llama9'; did you mean llama3-8b"):
        resolve("llama9")


def test_local_config_file_and_directory(tmp_path):
    cfg = json.loads((MODELS_DIR / "llama3.2-1b.json").read_text())["config"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert resolve(str(tmp_path)).hidden_size == 2048
    assert resolve(str(tmp_path / "config.json")).num_hidden_layers == 16


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"model_type": "llama", "hidden_size": 64}', "lacks num_hidden_layers"),
    ('{"model_type": "llama", "hidden_size": -1, "num_hidden_layers": 2, "num_attention_heads": 2, '
     '"vocab_size": 10, "intermediate_size": 8}', "hidden_size must be a non-negative integer"),
    ("[1, 2]", "is not a JSON object"),
])
def test_bad_configs(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(PlannerError, match=message):
        resolve(str(path))


def test_missing_path():
    with pytest.raises(PlannerError, match="no such file"):
        resolve("./nope/config.json")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PlannerError, match="unknown model"):
        resolve("someone/some-model")
