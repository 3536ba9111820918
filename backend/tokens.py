"""Training tokens of ``--dataset PATH`` for the job-time estimate, in one pass over the data.

Reading and validating the data is backend/data.py's job (no torch needed); this module counts
the tokens each record becomes in the trainer, from the same read that gives the records and the
fingerprint (``DataTokens``), so nothing reads the file twice.

The count is exact when the model's tokenizer is on this machine: a local model folder's
``tokenizer.json`` (beside its config.json) or the copy in the Hugging Face hub cache, read with
the light ``tokenizers`` package, never transformers (``plan`` stays free of torch and
transformers, docs/architecture.md). It follows what TRL's SFTTrainer does before training
(trl 1.16 ``trl/trainer/sft_trainer.py`` ``_prepare_dataset``): a plain-text or prompt-completion
record gets the EOS token appended (``add_eos``) and is tokenized with the tokenizer's special
tokens; a conversation is rendered with the model's chat template (as transformers'
``apply_chat_template`` renders it: jinja2 sandbox, ``trim_blocks``, ``lstrip_blocks``) and
tokenized without added special tokens; every sequence is then truncated to ``max_length``
(``--seq-len``). Only when no tokenizer file exists is the count an estimate: characters /
``CHARS_PER_TOKEN`` (about 4 characters per token for English with BPE vocabularies) plus the
EOS, truncated the same way, and labelled as an estimate.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenCount:
    """Tokens of the training split: ``tokens`` is the sum of ``lengths`` (one per record, after
    truncation to the sequence length); ``method`` is tokenizer | estimate | unknown."""

    tokens: int | None
    records: int
    method: str
    note: str
    lengths: tuple[int, ...] = field(default=(), repr=False)
    fingerprint: str | None = None
    tokenizer: str | None = None  # the tokenizer.json that counted, when one did

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "records": self.records, "method": self.method, "note": self.note,
                "fingerprint": self.fingerprint, "tokenizer": self.tokenizer}


# -- finding a tokenizer by its files ---------------------------------------------------------
def _local_folder(source: str | None) -> Path | None:
    """The model folder of a spec read from a local config.json (planner/registry.py ``load_local``)."""
    if not source or "://" in source:
        return None
    p = Path(source).expanduser()
    folder = p.parent if p.suffix == ".json" else p
    return folder if folder.is_dir() else None


def _hub_file(hf_id: str, filename: str) -> Path | None:
    """A file of ``hf_id`` in the local Hugging Face hub cache, never downloaded."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        hit = try_to_load_from_cache(hf_id, filename, cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    except Exception:  # a malformed id or cache: no tokenizer
        return None
    return Path(hit) if isinstance(hit, str) and Path(hit).is_file() else None


def find_tokenizer(source: str | None = None, hf_id: str | None = None) -> Path | None:
    """The ``tokenizer.json`` of a local model folder, else of ``hf_id`` in the hub cache; None if neither."""
    folder = _local_folder(source)
    if folder is not None and (folder / TOKENIZER_FILE).is_file():
        return folder / TOKENIZER_FILE
    return _hub_file(hf_id, TOKENIZER_FILE) if hf_id else None


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class LocalTokenizer:
    """A model's tokenizer from its files: ``tokenizer.json`` through the ``tokenizers`` package,
    the special tokens from ``tokenizer_config.json``, the chat template from
    ``chat_template.jinja`` or ``tokenizer_config.json`` (where transformers 4 and 5 save them)."""

    def __init__(self, path: Path, hf_id: str | None = None):
        from tokenizers import Tokenizer

        self.path = path
        self.tokenizer = Tokenizer.from_file(str(path))
        config = self._sibling_json("tokenizer_config.json", hf_id)
        self.special = {k: v for k, v in ((k, _token_text(config.get(k))) for k in
                                          ("bos_token", "eos_token", "unk_token", "pad_token")) if v is not None}
        template = config.get("chat_template")
        jinja = self._sibling("chat_template.jinja", hf_id)
        if jinja is not None:
            template = jinja.read_text(encoding="utf-8")
        self.chat_template = template if isinstance(template, str) else None

    def _sibling(self, name: str, hf_id: str | None) -> Path | None:
        p = self.path.with_name(name)
        if p.is_file():
            return p
        return _hub_file(hf_id, name) if hf_id else None

    def _sibling_json(self, name: str, hf_id: str | None) -> dict[str, Any]:
        p = self._sibling(name, hf_id)
        try:
            data = json.loads(p.read_text(encoding="utf-8")) if p is not None else {}
        except (OSError, ValueError):
            data = {}
        return data if isinstance(data, dict) else {}

    @property
    def eos(self) -> str | None:
        return self.special.get("eos_token")

    def render_chat(self, messages: list[dict[str, Any]]) -> str:
        """The conversation as transformers' ``apply_chat_template(tokenize=False)`` renders it
        (transformers/utils/chat_template_utils.py ``_compile_jinja_template``)."""
        if self.chat_template is None:
            raise PlannerError("no chat template")
        return _compiled_template(self.chat_template).render(messages=messages, add_generation_prompt=False,
                                                             **self.special)

    def lengths(self, records, fmt: str) -> list[int]:
        """Token ids per record before truncation, as TRL's SFTTrainer tokenizes them."""
        texts: list[str] = []
        plain = True
        for rec in records:
            data = rec.data
            if fmt == "messages":
                texts.append(self.render_chat(data["messages"]))
                plain = False
            elif fmt == "prompt-completion" and isinstance(data["prompt"], list):
                texts.append(self.render_chat(list(data["prompt"]) + list(data["completion"])))
                plain = False
            else:
                text = data["text"] if fmt == "text" else data["prompt"] + data["completion"]
                if self.eos and not text.endswith(self.eos):
                    text += self.eos  # trl add_eos: non-conversational records end with EOS
                texts.append(text)
        # Conversations: the rendered template carries its special tokens (add_special_tokens=False).
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=plain)
        return [len(e.ids) for e in encoded]


_TEMPLATES: dict[str, Any] = {}


def _compiled_template(source: str):
    hit = _TEMPLATES.get(source)
    if hit is None:
        import jinja2
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class _Generation(Extension):
            """``{% generation %}...{% endgeneration %}`` marks assistant tokens; the text is unchanged."""
            tags = {"generation"}

            def parse(self, parser):
                lineno = next(parser.stream).lineno
                body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
                return jinja2.nodes.Scope(body, lineno=lineno)

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        def strftime_now(fmt):
            from datetime import datetime
            return datetime.now().strftime(fmt)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = strftime_now
        hit = _TEMPLATES[source] = env.from_string(source)
    return hit


# -- counting --------------------------------------------------------------------------------
def _estimated_lengths(records, fmt: str) -> list[int]:
    from .data import CHARS_PER_TOKEN, record_text

    eos = 0 if fmt == "messages" else 1
    return [max(1, round(len(record_text(r.data, fmt)) / CHARS_PER_TOKEN)) + eos for r in records]


def count_split_tokens(train, seq_len: int | None = None, *, source: str | None = None, hf_id: str | None = None,
                       use_tokenizer: bool = True) -> TokenCount:
    """Tokens of one read split (backend/data.py ``DataSet``): exact with the model's local
    tokenizer, else estimated; each record truncated to ``seq_len`` as the trainer truncates it."""
    path = find_tokenizer(source, hf_id) if use_tokenizer else None
    lengths: list[int] | None = None
    why = "no local tokenizer for this model"
    if path is not None:
        try:
            lengths = LocalTokenizer(path, hf_id).lengths(train.records, train.format)
        except Exception as exc:  # an unreadable tokenizer or a chat template that fails: say so, estimate
            why = f"the tokenizer at {path} could not count it ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    method = "tokenizer" if lengths is not None else "estimate"
    if lengths is None:
        lengths = _estimated_lengths(train.records, train.format)
    cut = [min(n, seq_len) for n in lengths] if seq_len else list(lengths)
    n = sum(cut)
    if n <= 0:
        raise PlannerError(f"{train.source}: no tokens to train on")
    truncated = sum(a != b for a, b in zip(lengths, cut))
    tail = f", {truncated:,} truncated to --seq-len {seq_len:,}" if truncated else ""
    records = len(train.records)
    if method == "tokenizer":
        note = f"{n:,} tokens in {records:,} records counted with {path} (EOS included{tail})"
    else:
        from .data import CHARS_PER_TOKEN
        note = (f"~{n:,} tokens in {records:,} records estimated at {CHARS_PER_TOKEN:g} characters per token "
                f"plus EOS{tail} ({why})")
    return TokenCount(n, records, method, note, tuple(cut), train.fingerprint, str(path) if method == "tokenizer" else None)


def count_dataset_tokens(path: str, *, hf_id: str | None = None, source: str | None = None,
                         seq_len: int | None = None, use_tokenizer: bool = True) -> TokenCount:
    """Tokens of the training split at ``path`` (file or folder with train.*), read once."""
    if path.startswith("s3://"):
        return TokenCount(None, 0, "unknown", f"cannot count tokens of {path} offline; pass --tokens N")
    from .data import load_training_data

    train = load_training_data(path).train
    return count_split_tokens(train, seq_len, source=source, hf_id=hf_id, use_tokenizer=use_tokenizer)
