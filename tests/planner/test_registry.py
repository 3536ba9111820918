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


def test_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(PlannerError, match=r"not in the local Hugging Face cache.*pip install '\.\[hub\]'.*"
                                           r"https://huggingface.co/someone/some-model/blob/main/config.json"):
        resolve("someone/some-model")


def test_hub_id_offline_reads_the_cache(monkeypatch, tmp_path):
    """A config.json fetched once sits in huggingface_hub's cache layout; offline, it is read from there."""
    pytest.importorskip("huggingface_hub")
    cfg = json.loads((MODELS_DIR / "qwen3-0.6b.json").read_text())["config"]
    snap = tmp_path / "models--someone--tiny-qwen3" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "models--someone--tiny-qwen3" / "refs").mkdir()
    (tmp_path / "models--someone--tiny-qwen3" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    spec = resolve("someone/tiny-qwen3")
    assert (spec.hf_id, spec.model_type, spec.head_dim) == ("someone/tiny-qwen3", "qwen3", 128)


# The 2026 models (shared/reference/model_configs_2026): alias, Hub id, variant.
NEW = {"qwen3-8b": "Qwen/Qwen3-8B", "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B", "gemma3-27b": "google/gemma-3-27b-pt",
       "gpt-oss-20b": "openai/gpt-oss-20b", "phi4": "microsoft/phi-4", "mistral-nemo": "mistralai/Mistral-Nemo-Base-2407",
       "mistral-small-24b": "mistralai/Mistral-Small-24B-Base-2501", "llama3.3-70b": "meta-llama/Llama-3.3-70B-Instruct",
       "deepseek-r1-distill-qwen-7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "olmo2-7b": "allenai/OLMo-2-1124-7B",
       "granite3.2-8b": "ibm-granite/granite-3.2-8b-instruct", "deepseek-r1": "deepseek-ai/DeepSeek-R1",
       "llama4-scout": "meta-llama/Llama-4-Scout-17B-16E-Instruct", "deepseek-v2-lite": "deepseek-ai/DeepSeek-V2-Lite"}


@pytest.mark.parametrize("alias, hf_id", NEW.items())
def test_2026_aliases_and_ids(alias, hf_id):
    assert resolve(alias) == resolve(hf_id) == resolve(hf_id.split("/")[1].upper())


@pytest.mark.parametrize("variant, alias", [("Qwen/Qwen3-8B-Base", "qwen3-8b"), ("google/gemma-3-27b-it", "gemma3-27b"),
                                            ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo"),
                                            ("meta-llama/Llama-3.1-8B-Instruct", "llama3.1-8b"),
                                            ("Qwen2.5-7B-Instruct", "qwen2.5-7b")])
def test_instruct_variants_resolve_to_their_shapes(variant, alias):
    spec, base = resolve(variant), resolve(alias)
    assert spec.hf_id.endswith(variant.split("/")[-1]) and spec.hf_id != base.hf_id
    assert spec.to_dict() | {"name": 0, "hf_id": 0, "notes": 0} == base.to_dict() | {"name": 0, "hf_id": 0, "notes": 0}
    assert "shapes of " + base.hf_id in spec.notes[0]


def test_2026_counts_equal_the_meta_device_counts_of_the_shared_index():
    from planner import count_params
    docs = [json.loads(f.read_text()) for f in sorted(MODELS_DIR.glob("*.json"))]
    new = [d for d in docs if "params_meta_device" in d]
    assert len(new) == 22
    for doc in new:
        counts = count_params(resolve(doc["hf_id"]))
        if doc["name"] == "DeepSeek-V2-Lite":  # q_lora_rank null restored; the index counted transformers' 1536
            assert counts.total == 15_706_484_224 and doc["params_meta_device"] == 15_748_993_024
            assert any("q_lora_rank" in n for n in doc["notes"])
        else:
            assert counts.total == doc["params_meta_device"], doc["name"]
        assert doc["confidence"] and doc["copied_from"]


def test_second_hand_configs_say_so_in_plan_models():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "planner", "models", "--json"], capture_output=True, text=True, check=True)
    rows = {r["alias"]: r for r in json.loads(out.stdout)}
    assert rows["phi4"]["config_confidence"] == "second-hand"
    assert rows["gemma3-27b"]["config_confidence"].startswith("partial")
    assert any("vision" in n for n in rows["gemma3-27b"]["notes"])
    assert rows["qwen3-8b"]["config_confidence"] == "exact copy"
    assert rows["qwen3-30b-a3b"]["active_params"] == 3_353_032_704
