"""Issue 13 item 3: a corpus of malformed data files. Each one is refused in one line naming the
file, the line (or record/row) and the problem: by the preflight (``backend.data.preflight``) and
by the trainer (``python -m backend.train --plan``, exit 2, no traceback). Nothing trains on a
malformed row. Fast: the data step runs before torch is imported.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.data import MAX_DEPTH, preflight
from planner.errors import PlannerError

REPO = Path(__file__).resolve().parents[2]
GOOD = '{"prompt": "a", "completion": "b"}\n'
LIMIT = csv.field_size_limit()


def _bytes(name: str) -> bytes:
    """The malformed file's content (written by the test, so the corpus is in one place)."""
    deep = "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)
    return {
        "ragged.csv": b"prompt,completion\nhello,world\nhi,there,extra\n",
        "short.csv": b"prompt,completion\nhello,world\nlonely\n",
        "huge_cell.csv": b"prompt,completion\nhello,world\nhi," + b"x" * (LIMIT + 1) + b"\n",
        "csv_messages_deep.csv": b'messages\n"' + ("[" * 5000).encode() + b'"\n',
        "deep.jsonl": (GOOD + '{"text": ' + "[" * 100_000 + "\n").encode(),
        "deep_value.jsonl": (GOOD + '{"prompt": "a", "completion": "b", "meta": ' + deep + "}\n").encode(),
        "deep.json": ("[" * 100_000).encode(),
        "nested_record.jsonl": (GOOD + '{"prompt": {"text": "a"}, "completion": "b"}\n').encode(),
        "nested_list.jsonl": (GOOD + '[{"prompt": "a", "completion": "b"}]\n').encode(),
        "nested.json": json.dumps([{"prompt": "a", "completion": "b"}, [{"prompt": "a", "completion": "b"}]]).encode(),
        "surrogate.jsonl": (GOOD + '{"prompt": "a\\ud800b", "completion": "b"}\n').encode(),
        "surrogate_messages.jsonl": (
            '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\udc00"}]}\n').encode(),
        "empty.jsonl": b"",
        "empty.csv": b"",
        "empty.json": b"",
        "empty.parquet": b"",
        "blank_lines.jsonl": b"\n\n  \n",
        "header_only.csv": b"prompt,completion\n",
        "empty_list.json": b"[]",
        "latin1.jsonl": (GOOD + '{"prompt": "caf').encode() + b"\xe9" + b'", "completion": "b"}\n',
        "latin1.csv": b"prompt,completion\nhello,world\ncaf\xe9,b\n",
        "binary.json": b"\x89PNG\r\n\x1a\n\x00\x00",
    }[name]


# (file, the one line after the path)
CASES = [
    ("ragged.csv", "line 3: 3 columns but the header has 2 (prompt, completion); quote cells that hold commas"),
    ("short.csv", "line 3: 1 columns but the header has 2 (prompt, completion); quote cells that hold commas"),
    ("huge_cell.csv", f"line 3: a cell is over {LIMIT:,} characters (the csv module's limit); "
                      "split the record or use JSONL"),
    ("csv_messages_deep.csv", f"line 2 column 'messages': JSON nested more than {MAX_DEPTH} levels deep"),
    ("deep.jsonl", f"line 2: JSON nested more than {MAX_DEPTH} levels deep"),
    ("deep_value.jsonl", f"line 2: value nested more than {MAX_DEPTH} levels deep (at 'meta'" + "[1]" * MAX_DEPTH + ")"),
    ("deep.json", f": JSON nested more than {MAX_DEPTH} levels deep"),
    ("nested_record.jsonl", "line 2: 'prompt' and 'completion' must be strings (or lists of messages)"),
    ("nested_list.jsonl", "line 2: expected a JSON object, got list"),
    ("nested.json", "record 2: expected a JSON object, got list"),
    ("surrogate.jsonl", "line 2: invalid Unicode in 'prompt' (lone surrogate \\ud800 at character 2)"),
    ("surrogate_messages.jsonl",
     "line 1: invalid Unicode in 'messages'[2].content (lone surrogate \\udc00 at character 1)"),
    ("empty.jsonl", ": empty file (0 bytes); it needs at least one record"),
    ("empty.csv", ": empty file (0 bytes); it needs at least one record"),
    ("empty.json", ": empty file (0 bytes); it needs at least one record"),
    ("empty.parquet", ": empty file (0 bytes); it needs at least one record"),
    ("blank_lines.jsonl", ": no records"),
    ("header_only.csv", ": no records"),
    ("empty_list.json", ": no records"),
    ("latin1.jsonl", "line 2: not UTF-8 text (byte 0xe9 at column 16); re-save the file as UTF-8"),
    ("latin1.csv", "line 3: not UTF-8 text (byte 0xe9 at column 4); re-save the file as UTF-8"),
    ("binary.json", "line 1: not UTF-8 text (byte 0x89 at column 1); re-save the file as UTF-8"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, _ in CASES:
        (folder / name).write_bytes(_bytes(name))
    return folder


@pytest.mark.parametrize("name,message", CASES, ids=[c[0] for c in CASES])
def test_preflight_names_file_line_and_problem(corpus, name, message):
    path = corpus / name
    with pytest.raises(PlannerError) as err:
        preflight(path)
    assert str(err.value) == f"{path}{'' if message.startswith(':') else ' '}{message}"
    assert "\n" not in str(err.value)


def test_a_ragged_row_is_refused_even_as_the_eval_split(corpus, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(GOOD * 4)
    with pytest.raises(PlannerError, match=r"ragged\.csv line 3: 3 columns"):
        preflight(train, corpus / "ragged.csv")


def _plan(corpus: Path, name: str, out: Path) -> Path:
    """A plan.json as `plan --execute` writes it (the estimate of a small config; no model is loaded:
    the data step fails first)."""
    from planner.plan import RunSettings, plan_for
    from planner.estimate import estimate

    model = out / "model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128,
        "max_position_embeddings": 64, "torch_dtype": "float32"}))
    est = estimate(str(model), mode="lora", seq_len=32, batch_size=2)
    plan = plan_for(est, RunSettings(model=str(model), dataset=str(corpus / name), output_dir=str(out / "run"),
                                     max_steps=2, track=False, register=False))
    path = out / "plan.json"
    path.write_text(plan.to_json())
    return path


@pytest.mark.slow  # trainer subprocess per file
def test_trainer_gives_one_line_and_exit_2_for_every_file(corpus, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("PLAN_DEBUG", None)
    for i, (name, message) in enumerate(CASES):
        plan = _plan(corpus, name, tmp_path / str(i))
        proc = subprocess.run([sys.executable, "-m", "backend.train", "--plan", str(plan)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert lines == [f"error: {corpus / name}{'' if message.startswith(':') else ' '}{message}"], name
        assert "Traceback" not in proc.stderr and not proc.stdout
        record = json.loads((tmp_path / str(i) / "run" / "run.json").read_text())
        assert record["status"] == "failed" and record.get("global_step", 0) == 0
