"""Training data: read local JSONL/JSON/CSV/Parquet files (or a Hub data set), detect the format, validate.

Three record formats, the ones TRL's SFTTrainer takes (https://huggingface.co/docs/trl/dataset_formats):
  messages           {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", ...}]}
  prompt-completion  {"prompt": "...", "completion": "..."}
  text               {"text": "..."}
``preflight`` reads and checks every record with our own readers: a bad record is a PlannerError
naming the file, the line (or record/row) and the problem (issue 13: ragged CSV rows, oversized
cells, deep nesting, invalid Unicode, empty files, non-UTF-8 bytes), and it needs no torch, so
``plan --execute`` checks the data before it asks to train. The trainer then reads the same files
with ``datasets.load_dataset`` (``hf_datasets``); the held-out eval split is ``split_indices``,
one function over ``Dataset.train_test_split`` used by both. A folder holding
``train.*`` (and optionally ``eval.*``/``validation.*``/``test.*``) gives the eval split.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from planner.errors import PlannerError

FORMATS = ("messages", "prompt-completion", "text")
ROLES = ("system", "user", "assistant", "tool")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
EVAL_STEMS = ("eval", "validation", "valid", "test")
# Rough tokens per character when no tokenizer is at hand: ~4 characters per token for English
# text with BPE vocabularies (https://help.openai.com/en/articles/4936856).
CHARS_PER_TOKEN = 4.0
# Deepest nesting a record may have: a messages record is 3 levels (record, list, message); JSON
# parsing recurses once per level, so a limit well under Python's recursion limit keeps a hostile
# file from becoming a RecursionError.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Record:
    """One training example and where it came from (for error messages)."""

    data: dict[str, Any]
    where: str  # e.g. "train.jsonl line 7"


@dataclass(frozen=True)
class DataSet:
    """A validated split: its records, format and a fingerprint of its content."""

    source: str
    format: str
    records: tuple[Record, ...]
    fingerprint: str

    def rows(self) -> list[dict[str, Any]]:
        """The records in the column layout TRL expects for this format."""
        keys = {"messages": ("messages",), "prompt-completion": ("prompt", "completion"), "text": ("text",)}[self.format]
        return [{k: r.data[k] for k in keys} for r in self.records]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "records": len(self.records),
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class TrainingData:
    """The train split and the optional eval split; ``held_out`` is (train rows, eval rows) of the
    one file when the eval split was held out of it (``split_indices``)."""

    train: DataSet
    eval: DataSet | None
    held_out: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"train": self.train.to_dict(), "eval": self.eval.to_dict() if self.eval else None}


# -- reading ------------------------------------------------------------------------------------
def _loads(text: str, where: str) -> Any:
    """One JSON document; a syntax error or hostile nesting is one line naming ``where``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise PlannerError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise  # read_records names the line and column
    except ValueError as exc:  # an integer past Python's digit limit (json raises before the record is seen)
        raise PlannerError(f"{where}: a number too large to read ({str(exc).splitlines()[0][:80]})") from None


def _read_jsonl(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            yield Record(_loads(line.rstrip("\r\n"), f"{path} line {lineno}"), f"{path} line {lineno}")


def _read_json(path: Path) -> Iterator[Record]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise PlannerError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg}); "
                           "for one record per line name the file .jsonl") from None
    except RecursionError:
        raise PlannerError(f"{path}: JSON nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise
    except ValueError as exc:
        raise PlannerError(f"{path}: a number too large to read ({str(exc).splitlines()[0][:80]})") from None
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise PlannerError(f"{path}: expected a JSON list of records (or {{\"data\": [...]}}), got {type(doc).__name__}")
    for i, obj in enumerate(doc, 1):
        yield Record(obj, f"{path} record {i}")


def _read_csv(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                return
            twice = sorted({h for h in header if header.count(h) > 1})
            if twice:  # one name, two columns: which one trains would depend on the reader
                raise PlannerError(f"{path} line 1: column {', '.join(repr(h) for h in twice)} appears more than "
                                   "once in the header; rename or drop the duplicate")
            for row in reader:
                where = f"{path} line {reader.line_num}"
                if not row:  # a blank line (pandas skips it too)
                    continue
                if len(row) != len(header):  # DictReader would file extras under None or fill None
                    raise PlannerError(f"{where}: {len(row)} columns but the header has {len(header)} "
                                       f"({', '.join(header)}); quote cells that hold commas")
                obj: dict[str, Any] = dict(zip(header, row))
                if isinstance(obj.get("messages"), str):  # a JSON list inside a cell
                    obj["messages"] = _loads(obj["messages"], f"{where} column 'messages'")
                yield Record(obj, where)
        except csv.Error as exc:
            problem = str(exc)
            if "field larger than field limit" in problem:
                problem = (f"a cell is over {csv.field_size_limit():,} characters (the csv module's limit); "
                           "split the record or use JSONL")
            raise PlannerError(f"{path} line {reader.line_num}: {problem}") from None


def _read_parquet(path: Path) -> Iterator[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise PlannerError(f"{path}: reading Parquet needs pyarrow (pip install '.[train]')") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise PlannerError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    for i, obj in enumerate(table.to_pylist(), 1):
        yield Record(obj, f"{path} row {i}")


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def _read_hub(name: str) -> tuple[list[Record], str]:
    """A Hub data set id (train split). Only when online; the fingerprint is the data set's own."""
    try:
        import datasets
    except ImportError:
        raise PlannerError(f"'{name}' is not a local file; reading a Hub data set needs `datasets`") from None
    from .compat import dataset_fingerprint

    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:  # network, auth, not found: one line is enough
        raise PlannerError(f"cannot load data set '{name}' from the Hugging Face Hub "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    return [Record(dict(r), f"{name} record {i}") for i, r in enumerate(ds, 1)], f"hub:{name}:{dataset_fingerprint(ds)}"


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> PlannerError:
    """Where the first undecodable byte is: line and column, as an editor shows them."""
    raw = path.read_bytes()[:exc.start]
    line = raw.count(b"\n") + 1
    column = exc.start - (raw.rfind(b"\n") + 1) + 1
    return PlannerError(f"{path} line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at column {column}); "
                        "re-save the file as UTF-8")


def read_records(source: str | os.PathLike[str]) -> tuple[list[Record], str]:
    """All records of one file (or Hub data set) and a fingerprint of the content."""
    path = Path(source).expanduser()
    if path.is_file():
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise PlannerError(f"{path}: unsupported data file type '{path.suffix}'; use {', '.join(SUFFIXES)}")
        if path.stat().st_size == 0:
            raise PlannerError(f"{path}: empty file (0 bytes); it needs at least one record")
        try:
            records = list(reader(path))
        except UnicodeDecodeError as exc:
            raise _not_utf8(path, exc) from None
        return records, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    looks_like_hub = "/" in str(source) and not str(source).startswith((".", "/", "~")) and not path.exists()
    if looks_like_hub and not os.environ.get("HF_HUB_OFFLINE") and not os.environ.get("HF_DATASETS_OFFLINE"):
        return _read_hub(str(source))
    raise PlannerError(f"no such data file: {source}" + (" (offline: Hub data sets need a network)" if looks_like_hub else ""))


# -- validation ---------------------------------------------------------------------------------
def detect_format(obj: Any, where: str) -> str:
    if not isinstance(obj, dict):
        raise PlannerError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        return "messages"
    if "prompt" in obj or "completion" in obj:
        return "prompt-completion"
    if "text" in obj:
        return "text"
    keys = ", ".join(sorted(obj)) or "none"
    raise PlannerError(f"{where}: unknown record format (keys: {keys}); need 'messages', "
                       "'prompt' and 'completion', or 'text'")


def _check_messages(msgs: Any, where: str, field: str = "messages", need_assistant: bool = True) -> None:
    if not isinstance(msgs, list) or not msgs:
        raise PlannerError(f"{where}: '{field}' must be a non-empty list of {{role, content}} objects")
    for j, m in enumerate(msgs, 1):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise PlannerError(f"{where}: {field}[{j}] needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise PlannerError(f"{where}: {field}[{j}] has unknown role '{m['role']}'; use {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise PlannerError(f"{where}: {field}[{j}] content must be a string")
    if need_assistant and not any(m["role"] == "assistant" for m in msgs):
        raise PlannerError(f"{where}: '{field}' has no assistant message to learn from")


def check_values(obj: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Every value nests at most MAX_DEPTH deep and every string is valid Unicode (a lone surrogate
    such as "\\ud800" parses as JSON but cannot be encoded, so the tokenizer or Arrow would fail)."""
    if depth > MAX_DEPTH:
        raise PlannerError(f"{where}: value nested more than {MAX_DEPTH} levels deep (at {path or 'the record'})")
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PlannerError(f"{where}: invalid Unicode in {path or 'the record'} (lone surrogate "
                               f"\\u{ord(obj[exc.start]):04x} at character {exc.start + 1})") from None
    elif isinstance(obj, dict):
        for key, value in obj.items():
            check_values(key, where, path or "a key", depth + 1)
            check_values(value, where, f"{path}.{key}" if path else f"'{key}'", depth + 1)
    elif isinstance(obj, list):
        for i, value in enumerate(obj, 1):
            check_values(value, where, f"{path}[{i}]", depth + 1)


def validate_record(rec: Record, fmt: str) -> None:
    obj, where = rec.data, rec.where
    check_values(obj, where)
    got = detect_format(obj, where)
    if got != fmt:
        raise PlannerError(f"{where}: record is in '{got}' format but the file's first record is '{fmt}'; "
                           "use one format per file")
    if fmt == "messages":
        _check_messages(obj["messages"], where)
    elif fmt == "prompt-completion":
        for key in ("prompt", "completion"):
            if key not in obj or obj[key] is None:
                raise PlannerError(f"{where}: missing '{key}'")
        p, c = obj["prompt"], obj["completion"]
        if isinstance(p, list) or isinstance(c, list):  # conversational prompt/completion
            _check_messages(p, where, "prompt", need_assistant=False)
            _check_messages(c, where, "completion")
        elif not isinstance(p, str) or not isinstance(c, str):
            raise PlannerError(f"{where}: 'prompt' and 'completion' must be strings (or lists of messages)")
        elif not c.strip():
            raise PlannerError(f"{where}: 'completion' is empty")
    elif not isinstance(obj["text"], str) or not obj["text"].strip():
        raise PlannerError(f"{where}: 'text' must be a non-empty string")


def load_split(source: str | os.PathLike[str]) -> DataSet:
    """Read and validate one split; every record must be in the first record's format."""
    records, fingerprint = read_records(source)
    if not records:
        raise PlannerError(f"{source}: no records")
    fmt = detect_format(records[0].data, records[0].where)
    for rec in records:
        validate_record(rec, fmt)
    return DataSet(str(source), fmt, tuple(records), fingerprint)


def _split_files(folder: Path) -> tuple[Path, Path | None]:
    def find(stems: tuple[str, ...]) -> Path | None:
        for stem in stems:
            found = [folder / f"{stem}{suffix}" for suffix in SUFFIXES if (folder / f"{stem}{suffix}").is_file()]
            if len(found) > 1:  # which one trains must not depend on an order the user cannot see
                raise PlannerError(f"{folder} holds {' and '.join(p.name for p in found)}; keep one split file "
                                   f"per name, or pass the file itself as --dataset")
            if found:
                return found[0]
        return None
    train = find(("train",))
    if train is None:
        raise PlannerError(f"{folder} is a folder without train.jsonl/.json/.csv/.parquet; "
                           "pass a data file or put the training split in train.jsonl")
    return train, find(EVAL_STEMS)


def preflight(source: str | os.PathLike[str], eval_source: str | os.PathLike[str] | None = None,
              eval_fraction: float = 0.0, seed: int = 0) -> TrainingData:
    """Read and check every record of the train split and an eval split: ``eval_source``, a sibling
    eval file in a folder, or ``eval_fraction`` of the records held out by ``split_indices``.
    Every problem is one PlannerError naming the file, the line and the problem."""
    path = Path(source).expanduser()
    if path.is_dir():
        train_path, found_eval = _split_files(path)
        source, eval_source = train_path, eval_source or found_eval
    train = load_split(source)
    ev = load_split(eval_source) if eval_source else None
    if ev is not None and ev.format != train.format:
        raise PlannerError(f"eval data {ev.source} is in '{ev.format}' format but training data is '{train.format}'")
    if ev is None and eval_fraction:
        kept, held = split_indices(len(train.records), eval_fraction, seed, where=train.source)
        ev = DataSet(train.source + f" (held-out {eval_fraction:g})", train.format,
                     tuple(train.records[i] for i in held), train.fingerprint + f":eval{seed}")
        train = DataSet(train.source, train.format, tuple(train.records[i] for i in kept), train.fingerprint)
        return TrainingData(train, ev, (tuple(kept), tuple(held)))
    return TrainingData(train, ev)


load_training_data = preflight  # the name the launchers call it by


def split_indices(n: int, eval_fraction: float, seed: int, *, where: str = "data") -> tuple[list[int], list[int]]:
    """The one held-out split (train rows, eval rows), by ``datasets``' ``train_test_split`` over the
    row numbers: the preflight's records and the trainer's ``Dataset`` both select these rows, so
    every place that splits gets the same split for the same (n, fraction, seed)."""
    if not 0.0 < eval_fraction < 1.0:
        raise PlannerError(f"eval fraction must be between 0 and 1, got {eval_fraction}")
    from datasets import Dataset

    try:
        parts = Dataset.from_dict({"row": list(range(n))}).train_test_split(test_size=eval_fraction, seed=seed)
    except ValueError:  # train_test_split refuses a split that leaves a side empty
        raise PlannerError(f"{where}: {n} records are too few to hold out {eval_fraction:.0%}") from None
    return list(parts["train"]["row"]), list(parts["test"]["row"])


_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_COLUMNS = {"messages": ("messages",), "prompt-completion": ("prompt", "completion"), "text": ("text",)}


def hf_dataset(ds: DataSet, rows: tuple[int, ...] | None = None):
    """One checked split as a ``datasets.Dataset`` read by ``datasets.load_dataset`` from its file,
    only the format's columns, ``rows`` selected (the held-out split). The preflight has already
    checked every record, so a failure here is a schema ``datasets`` cannot hold (one line)."""
    import datasets

    source = ds.source
    path = Path(source).expanduser()
    try:
        if path.is_file():
            builder = _BUILDERS[path.suffix.lower()]
            options: dict[str, Any] = {}
            if builder == "csv":  # every cell a string: pandas would read "42" as a number and "" as NaN
                columns = list(_COLUMNS[ds.format])
                options = {"usecols": columns, "keep_default_na": False, "encoding": "utf-8-sig",
                           "features": datasets.Features({c: datasets.Value("string") for c in columns})}
            if path.suffix.lower() == ".json" and isinstance(json.loads(path.read_text("utf-8-sig")), dict):
                options["field"] = "data"
            out = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
        else:
            out = datasets.load_dataset(source, split="train")
    except Exception as exc:  # pyarrow/pandas schema errors come in many types
        raise PlannerError(f"{source}: the datasets library cannot read it "
                           f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    out = out.select_columns(list(_COLUMNS[ds.format]))
    if ds.format == "messages" and isinstance(out.features["messages"], datasets.Value):  # JSON in a CSV cell
        out = out.map(lambda r: {"messages": json.loads(r["messages"])})
    return out.select(rows) if rows is not None else out


def hf_datasets(data: TrainingData):
    """The (train, eval) ``datasets.Dataset``s the trainer uses: the preflight's files, split on the
    rows the preflight held out."""
    if data.held_out is not None:
        kept, held = data.held_out
        return hf_dataset(data.train, kept), hf_dataset(data.train, held)
    return hf_dataset(data.train), hf_dataset(data.eval) if data.eval else None


# -- token counts (for the time and cost estimate) ----------------------------------------------
def record_text(data: dict[str, Any], fmt: str) -> str:
    """The text a record contributes, without chat-template markup."""
    if fmt == "text":
        return data["text"]
    if fmt == "prompt-completion":
        parts = [data["prompt"], data["completion"]]
        return " ".join(p if isinstance(p, str) else " ".join(m["content"] for m in p) for p in parts)
    return " ".join(m["content"] for m in data["messages"])


def dropped_at(ds: DataSet, tokenizer: Any, seq_len: int) -> int:
    """Records TRL's SFTTrainer drops at ``seq_len``: it truncates prompt + completion to the length
    (keep_start) and drops examples with no trained token left (trl/trainer/sft_trainer.py, "Drop
    examples left fully masked by truncation"). Only a prompt-completion record can lose all of them,
    when its prompt alone fills the length; text and messages records train on every token."""
    if ds.format != "prompt-completion":
        return 0
    prompts = [r.data["prompt"] for r in ds.records if isinstance(r.data.get("prompt"), str)]
    if not prompts:
        return 0  # conversational prompts: the trainer counts them after TRL prepares the data
    return sum(len(ids) >= seq_len for ids in tokenizer(prompts)["input_ids"])


def no_survivors(given: int, seq_len: int) -> str:
    return (f"all {given} training records have no trained token within --seq-len {seq_len} (their prompt alone "
            "fills it, so TRL drops them): raise --seq-len or shorten the prompts")


def count_tokens(ds: DataSet, tokenizer: Any = None) -> int:
    """Tokens in one split: exact with a tokenizer (chat template applied for messages),
    else estimated at CHARS_PER_TOKEN characters per token."""
    if tokenizer is None:
        return sum(max(1, round(len(record_text(r.data, ds.format)) / CHARS_PER_TOKEN)) for r in ds.records)
    if ds.format == "messages" and getattr(tokenizer, "chat_template", None):
        total = 0
        for rec in ds.records:
            ids = tokenizer.apply_chat_template(rec.data["messages"], tokenize=True)
            total += len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        return total
    texts = [record_text(r.data, ds.format) for r in ds.records]
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])  # one batched call
