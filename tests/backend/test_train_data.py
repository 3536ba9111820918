"""Data formats, validation errors (file, line, problem), splits and token counts. Fast: no torch."""
from __future__ import annotations

import csv
import json

import pytest

from backend.data import count_tokens, detect_format, load_split, load_training_data
from planner.errors import PlannerError
from tests.tiny import memorization_records, write_jsonl


@pytest.mark.parametrize("kind,fmt", [("messages", "messages"), ("prompt-completion", "prompt-completion"),
                                      ("text", "text")])
def test_each_format_is_detected_and_rows_match_trl_columns(tmp_path, kind, fmt):
    ds = load_split(write_jsonl(tmp_path / "d.jsonl", memorization_records(kind)))
    assert ds.format == fmt
    assert len(ds.records) == 8
    assert set(ds.rows()[0]) == {"messages": {"messages"}, "prompt-completion": {"prompt", "completion"},
                                 "text": {"text"}}[fmt]
    assert ds.fingerprint.startswith("sha256:") and len(ds.fingerprint) == 71


# One bad record per case: (file content, expected error after the path).
BAD = [
    ('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', "line 2: missing 'completion'"),
    ('{"text": "ok"}\n{"text": "ok"\n', "line 2: not valid JSON (Expecting ',' delimiter at column 14)"),
    ('{"text": "ok"}\n\n{"text": ""}\n', "line 3: 'text' must be a non-empty string"),
    ('{"input": "x", "output": "y"}\n', "line 1: unknown record format (keys: input, output); need 'messages', "
                                        "'prompt' and 'completion', or 'text'"),
    ('{"text": "ok"}\n{"prompt": "a", "completion": "b"}\n',
     "line 2: record is in 'prompt-completion' format but the file's first record is 'text'; use one format per file"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "line 1: 'messages' has no assistant message to learn from"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}\n',
     "line 1: messages[1] has unknown role 'robot'; use system, user, assistant, tool"),
    ('{"messages": [{"role": "user"}]}\n', "line 1: messages[1] needs 'role' and 'content'"),
    ('{"messages": "hello"}\n', "line 1: 'messages' must be a non-empty list of {role, content} objects"),
    ('{"prompt": "a", "completion": 3}\n', "line 1: 'prompt' and 'completion' must be strings (or lists of messages)"),
    ('[1, 2]\n', "line 1: expected a JSON object, got list"),
]


@pytest.mark.parametrize("content,message", BAD)
def test_bad_record_names_file_line_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PlannerError) as err:
        load_split(path)
    assert str(err.value) == f"{path} {message}"


def test_json_csv_and_parquet_files(tmp_path):
    records = memorization_records("prompt-completion")
    (tmp_path / "d.json").write_text(json.dumps(records))
    with (tmp_path / "d.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["prompt", "completion"])
        w.writeheader()
        w.writerows(records)
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "d.parquet")
    for name in ("d.json", "d.csv", "d.parquet"):
        ds = load_split(tmp_path / name)
        assert (ds.format, len(ds.records), ds.rows()[0]) == ("prompt-completion", 8, records[0])


def test_csv_and_json_errors_name_line_or_record(tmp_path):
    (tmp_path / "d.csv").write_text("prompt,completion\nhello,world\nhi,\n")
    with pytest.raises(PlannerError, match=r"d\.csv line 3: 'completion' is empty$"):
        load_split(tmp_path / "d.csv")
    (tmp_path / "d.json").write_text(json.dumps([{"text": "a"}, {"text": 5}]))
    with pytest.raises(PlannerError, match=r"d\.json record 2: 'text' must be a non-empty string$"):
        load_split(tmp_path / "d.json")
    (tmp_path / "d.json").write_text('{"text": "a"}')
    with pytest.raises(PlannerError, match=r"expected a JSON list of records"):
        load_split(tmp_path / "d.json")


def test_missing_unsupported_and_empty_files(tmp_path):
    with pytest.raises(PlannerError, match=r"^no such data file: .*nope\.jsonl$"):
        load_split(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(PlannerError, match=r"unsupported data file type '\.txt'; use \.jsonl, \.json, \.csv, \.parquet"):
        load_split(tmp_path / "d.txt")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(PlannerError, match=r"e\.jsonl: no records$"):
        load_split(tmp_path / "e.jsonl")
    with pytest.raises(PlannerError, match=r"offline: Hub data sets need a network"):
        load_split("someone/some-dataset")


def test_folder_with_train_and_eval_files(tmp_path):
    write_jsonl(tmp_path / "d" / "train.jsonl", memorization_records("messages"))
    write_jsonl(tmp_path / "d" / "validation.jsonl", memorization_records("messages")[:2])
    data = load_training_data(tmp_path / "d")
    assert (len(data.train.records), len(data.eval.records)) == (8, 2)
    assert data.eval.source.endswith("validation.jsonl")
    write_jsonl(tmp_path / "e" / "data.jsonl", [])
    with pytest.raises(PlannerError, match="is a folder without train.jsonl"):
        load_training_data(tmp_path / "e")


def test_held_out_fraction_is_deterministic_and_disjoint(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", memorization_records("text", repeat=1))
    a = load_training_data(path, eval_fraction=0.25, seed=3)
    b = load_training_data(path, eval_fraction=0.25, seed=3)
    assert (len(a.train.records), len(a.eval.records)) == (6, 2)
    assert [r.where for r in a.eval.records] == [r.where for r in b.eval.records]
    assert not {r.where for r in a.eval.records} & {r.where for r in a.train.records}
    with pytest.raises(PlannerError, match="eval fraction must be between 0 and 1"):
        load_training_data(path, eval_fraction=1.5)


def test_eval_file_in_another_format_is_refused(tmp_path):
    train = write_jsonl(tmp_path / "t.jsonl", memorization_records("text"))
    ev = write_jsonl(tmp_path / "e.jsonl", memorization_records("messages"))
    with pytest.raises(PlannerError, match="is in 'messages' format but training data is 'text'"):
        load_training_data(train, ev)


def test_token_count_estimate_without_tokenizer(tmp_path):
    # "what is the capital of france ? paris ." = 39 characters -> round(39 / 4) = 10 tokens.
    ds = load_split(write_jsonl(tmp_path / "d.jsonl", [{"prompt": "what is the capital of france ?",
                                                       "completion": "paris ."}]))
    assert count_tokens(ds) == 10


def test_token_count_with_the_real_tokenizer(tmp_path):
    from tests.tiny import make_tiny_tokenizer
    tok = make_tiny_tokenizer()
    ds = load_split(write_jsonl(tmp_path / "d.jsonl", [{"text": "what is the capital of france ? paris ."}]))
    assert count_tokens(ds, tok) == 9  # word-level: one token per word or mark
    msgs = load_split(write_jsonl(tmp_path / "m.jsonl", memorization_records("messages")[:1]))
    # <s> <|user|> 7 words </s> <|assistant|> paris . </s>
    assert count_tokens(msgs, tok) == 14


def test_detect_format_rejects_non_objects():
    with pytest.raises(PlannerError, match="x: expected a JSON object, got str"):
        detect_format("hello", "x")


def test_datasets_reads_the_rows_the_preflight_checked(tmp_path):
    """The trainer's data (datasets.load_dataset) is the preflight's rows, column for column, in every
    file type, and the held-out split selects the same rows in both (one split function)."""
    from backend.data import hf_datasets, preflight, split_indices

    records = [{"prompt": p, "completion": c} for p, c in [("42", "007"), ("a,b", '" q"'), ("x", "y"), ("u", "v")]]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records[:2]) + "\n\n"
                                      + "\n".join(json.dumps(r) for r in records[2:]) + "\n")
    (tmp_path / "d.json").write_text(json.dumps({"data": records}))
    with (tmp_path / "d.csv").open("w", newline="") as fh:  # numbers-looking cells stay strings
        w = csv.DictWriter(fh, fieldnames=["prompt", "completion", "note"])
        w.writeheader()
        w.writerows({**r, "note": "ignored"} for r in records)
    msgs = memorization_records("messages")[:2]
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["messages"])
        w.writerows([json.dumps(m["messages"])] for m in msgs)
    for name in ("d.jsonl", "d.json", "d.csv"):
        data = preflight(tmp_path / name)
        train, ev = hf_datasets(data)
        assert ev is None and train.to_list() == data.train.rows() == records, name
    assert hf_datasets(preflight(tmp_path / "m.csv"))[0].to_list() == msgs
    data = preflight(tmp_path / "d.jsonl", eval_fraction=0.5, seed=7)
    train, ev = hf_datasets(data)
    assert (train.to_list(), ev.to_list()) == (data.train.rows(), data.eval.rows())
    from datasets import Dataset
    oracle = Dataset.from_list(records).train_test_split(test_size=0.5, seed=7)  # the library's own split
    assert (train.to_list(), ev.to_list()) == (oracle["train"].to_list(), oracle["test"].to_list())
    assert split_indices(4, 0.5, 7) == tuple(map(list, data.held_out))
