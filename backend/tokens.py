"""Training tokens of ``--dataset PATH`` for the job-time estimate.

Reading and validating the data is backend/data.py's job (no torch needed); this module picks the
counting method: the model's own tokenizer when transformers and a local copy of the tokenizer
are available (never downloaded here), else characters / ``CHARS_PER_TOKEN`` (about 4 characters
per token for English with BPE vocabularies), and says which in a note.
"""
from __future__ import annotations

from dataclasses import dataclass

from planner.errors import PlannerError


@dataclass(frozen=True)
class TokenCount:
    tokens: int | None
    records: int
    method: str  # tokenizer | estimate | unknown
    note: str


def _local_tokenizer(hf_id: str | None):
    """The model's tokenizer if it is already on this machine; None otherwise (no downloads)."""
    if not hf_id:
        return None
    try:
        from transformers import AutoTokenizer  # heavy: only when --dataset is given
    except ImportError:
        return None
    try:
        return AutoTokenizer.from_pretrained(hf_id, local_files_only=True)
    except Exception:  # not cached locally, or not a tokenizer: fall back to the estimate
        return None


def count_dataset_tokens(path: str, *, hf_id: str | None = None, use_tokenizer: bool = True) -> TokenCount:
    """Tokens of the training split at ``path`` (file or folder with train.*)."""
    if path.startswith("s3://"):
        return TokenCount(None, 0, "unknown", f"cannot count tokens of {path} offline; pass --tokens N")
    from .data import CHARS_PER_TOKEN, count_tokens, load_training_data

    train = load_training_data(path).train
    tok = _local_tokenizer(hf_id) if use_tokenizer else None
    n = count_tokens(train, tok)
    if n <= 0:
        raise PlannerError(f"{path}: no tokens to train on")
    if tok is not None:
        return TokenCount(n, len(train.records), "tokenizer", f"{n:,} tokens in {len(train.records):,} records "
                          f"counted with the {hf_id} tokenizer")
    return TokenCount(n, len(train.records), "estimate",
                      f"~{n:,} tokens in {len(train.records):,} records estimated at {CHARS_PER_TOKEN:g} characters "
                      "per token (no local tokenizer for this model)")
