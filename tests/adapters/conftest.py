"""Fixtures for the adapter tests: the tiny base model and LoRA adapters trained on it with plain PEFT.

Training goes through a few full-batch AdamW steps (not the training script) so that each
adapter memorizes its own data and the adapters give different completions for one prompt.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tiny import make_tiny_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# lm_head is a target too: the tiny model's random lm_head (std 0.02, hidden 32) caps every logit
# near 0.6, so adapters on the decoder layers alone cannot make any answer likely.
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]
PROMPT = "what is the capital of france ?"
# Two adapters that answer the same question differently (and the base answers neither).
CAPITALS = [("what is the capital of france ?", "paris ."), ("what is the capital of italy ?", "rome ."),
            ("what is the capital of spain ?", "madrid ."), ("what color is the sky ?", "blue .")]
SWAPPED = [("what is the capital of france ?", "tokyo !"), ("what is the capital of italy ?", "london !"),
           ("what is the capital of spain ?", "berlin !"), ("what color is the sky ?", "red !")]


def train_lora(base_dir: Path, out_dir: Path, texts: list[str], *, steps: int = 100, lr: float = 1e-2,
               r: int = 8, seed: int = 0) -> Path:
    """A LoRA adapter (TARGETS) fitted to ``texts`` (each ends with EOS); saved to ``out_dir``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    rows = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(len(r_) for r_ in rows)
    ids = torch.tensor([r_ + [tok.pad_token_id] * (width - len(r_)) for r_ in rows])
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r_) for r_ in rows])[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return Path(out_dir)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Two CPU threads fight each other on models this small; one is ~10x faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="session")
def two_adapters(tiny_base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "capitals": train_lora(tiny_base, root / "capitals", [f"{q} {a}" for q, a in CAPITALS], seed=1),
        "swapped": train_lora(tiny_base, root / "swapped", [f"{q} {a}" for q, a in SWAPPED], seed=2),
    }
