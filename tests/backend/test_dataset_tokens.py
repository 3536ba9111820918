"""`plan MODEL --dataset F` counts tokens with the model's own tokenizer files (backend/tokens.py),
exactly as TRL's SFTTrainer tokenizes (EOS appended, chat template rendered, truncation to
--seq-len), without importing torch or transformers. The oracle is the real transformers
tokenizer of the tiny model (tests/tiny.py), applied the way trl 1.16 applies it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiny import make_tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
SEQ = 24
TEXTS = ["the sky is blue", "paris is the capital of france . " * 6, "hello", "a cat says meow </s>"]
PAIRS = [("what color is the sky ?", " blue"), ("the capital of italy is", " rome . " * 10)]
CHATS = [[{"role": "user", "content": "what is one plus one ?"}, {"role": "assistant", "content": "two"}],
         [{"role": "system", "content": "you are tiny"}, {"role": "user", "content": "hi " * 30},
          {"role": "assistant", "content": "hello"}]]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, object]:
    """A model folder with a config.json and the tiny tokenizer's files (no weights needed)."""
    folder = tmp_path_factory.mktemp("m") / "tiny"
    tok = make_tiny_tokenizer()
    tok.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": len(tok), "max_position_embeddings": 256}))
    return folder, tok


def _trl_lengths(tok, fmt: str, rows: list) -> list[int]:
    """What trl's SFTTrainer._prepare_dataset produces per record (before truncation to max_length)."""
    out = []
    for row in rows:
        if fmt == "text":
            ids = tok(text=row if row.endswith(tok.eos_token) else row + tok.eos_token)["input_ids"]
        elif fmt == "prompt-completion":
            ids = tok(text=row[0] + row[1] + tok.eos_token)["input_ids"]
        else:
            ids = tok.apply_chat_template(row, tokenize=True, return_dict=True)["input_ids"]
        out.append(len(ids))
    return out


def _plan(cwd: Path, data: Path) -> tuple[dict, list[str]]:
    """Run `plan ./tiny --mode qlora --dataset DATA --json` in a fresh process; return its JSON and
    the torch/transformers modules it imported."""
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: sys.stderr.write('\\nHEAVY ' + ' '.join(sorted(m for m in sys.modules "
             "if m.split('.')[0] in ('torch', 'transformers'))) + '\\n'))\n"
             "sys.argv = ['plan'] + sys.argv[1:]\n"
             "runpy.run_module('planner', run_name='__main__')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", probe, "./tiny", "--mode", "qlora", "--seq-len", str(SEQ),
                          "--dataset", str(data), "--json"], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    heavy = res.stderr.rsplit("HEAVY", 1)[1].split()
    return json.loads(res.stdout), heavy


@pytest.mark.parametrize("fmt", ["text", "prompt-completion", "messages"])
def test_plan_counts_dataset_tokens_with_the_local_tokenizer(tiny, tmp_path, fmt):
    folder, tok = tiny
    rows = {"text": TEXTS, "prompt-completion": PAIRS, "messages": CHATS}[fmt]
    records = [{"text": r} if fmt == "text" else {"prompt": r[0], "completion": r[1]}
               if fmt == "prompt-completion" else {"messages": r} for r in rows]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "tiny").symlink_to(folder)
    plan, heavy = _plan(tmp_path, data)
    raw = _trl_lengths(tok, fmt, rows)
    assert max(raw) > SEQ  # the data exercises truncation
    assert plan["pricing"]["tokens"] == sum(min(n, SEQ) for n in raw)
    assert plan["pricing"]["tokens_source"] == "--dataset (tokenizer)"
    assert heavy == [], f"plan --dataset imported {heavy}"


def test_count_is_an_estimate_only_without_a_tokenizer(tmp_path):
    from backend.tokens import count_dataset_tokens

    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "x" * 400}) + "\n" + json.dumps({"text": "y" * 40}) + "\n")
    counted = count_dataset_tokens(str(data), source=str(tmp_path / "no-model" / "config.json"), seq_len=64)
    assert counted.method == "estimate" and counted.lengths == (64, 11)  # 100 + EOS cut to 64; 10 + EOS
    assert counted.tokens == 75 and "estimated" in counted.note and counted.fingerprint
