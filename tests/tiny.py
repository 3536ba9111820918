"""A tiny Llama-architecture model and word-level tokenizer, built locally for tests.

Tests cannot download anything, so every suite that needs a real transformers model builds
one here: ``make_tiny_model(tmp_path / "tiny")`` saves a config, fp32 safetensors weights and a
tokenizer (with pad/eos tokens and a chat template) that ``AutoModelForCausalLM`` and
``AutoTokenizer`` load offline. Heavy imports stay inside the functions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")

# Enough words for the memorization data sets of the backend, serving and eval tests.
WORDS = tuple("""
the a an is are was of to in on and or what who where which how why when color colour capital
sky sea grass sun moon snow fire blue green yellow white red black orange paris rome berlin
madrid london tokyo france italy germany spain england japan one two three four five six seven
eight nine ten plus minus equals cat dog bird fish says meow woof tweet blub answer question
hello hi bye yes no please thanks model planner adapter train test data good bad it this that
i you we they he she my your our name tiny llama word words number numbers capitals colors
. , ? ! : ; ' - 0 1 2 3 4 5 6 7 8 9
""".split())

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {{ eos_token }} "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tiny_tokenizer(vocab: Sequence[str] = WORDS):
    """A lower-casing word-level tokenizer over ``vocab`` plus the special tokens."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    ids: dict[str, int] = {}
    for tok in (*SPECIAL_TOKENS, *vocab):
        ids.setdefault(tok if tok in SPECIAL_TOKENS else tok.lower(), len(ids))
    core = Tokenizer(WordLevel(vocab=ids, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>",
                                  additional_special_tokens=list(SPECIAL_TOKENS[4:]))
    tok.chat_template = CHAT_TEMPLATE
    tok.model_max_length = 128
    return tok


def make_tiny_model(dir: Path, *, vocab: Sequence[str] = WORDS, hidden: int = 32, layers: int = 2,
                    heads: int = 4, kv_heads: int = 2, seed: int = 0, init_range: float = 0.2) -> Path:
    """Build and save a tiny random Llama (config, safetensors, tokenizer) into ``dir``; return it.

    hidden=32, layers=2 gives about 27k parameters with the default vocabulary: milliseconds per
    training step on a CPU. Deterministic for a given ``seed``. ``init_range`` is larger than
    Llama's 0.02 so that the frozen lm_head of a random model can still express a peaked
    distribution: LoRA and prompt tuning then visibly drive the loss down.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer(vocab)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=256, tie_word_embeddings=False,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=init_range)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(dir)
    tok.save_pretrained(dir)
    return dir


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line (creating parent folders); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return path


# Small memorization sets: a tiny model drives their loss down within a few dozen steps.
FACTS = (
    ("what is the capital of france ?", "paris ."),
    ("what is the capital of italy ?", "rome ."),
    ("what is the capital of germany ?", "berlin ."),
    ("what is the capital of spain ?", "madrid ."),
    ("what color is the sky ?", "blue ."),
    ("what color is the grass ?", "green ."),
    ("what does the cat say ?", "meow ."),
    ("what does the dog say ?", "woof ."),
)


def memorization_records(kind: str = "prompt-completion", repeat: int = 1) -> list[dict]:
    """The FACTS as records of one data format: 'messages', 'prompt-completion' or 'text'."""
    out = []
    for _ in range(repeat):
        for q, a in FACTS:
            if kind == "messages":
                out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
            elif kind == "prompt-completion":
                out.append({"prompt": q, "completion": " " + a})
            elif kind == "text":
                out.append({"text": f"{q} {a}"})
            else:
                raise ValueError(f"unknown record kind {kind!r}")
    return out
