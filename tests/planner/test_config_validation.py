"""Malformed config.json files (issue 13, item 2): each is refused in one line naming the field.

The corpus is written by the test: a valid small llama config with one field broken, plus raw
files that are not JSON a model could have (NaN, 1e400, binary bytes, deep nesting).
"""
import json

import pytest

from planner.cli import main
from planner.errors import PlannerError
from planner.registry import load_local

BASE = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 32000}
MOE = {**BASE, "model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2}

# (case id, config changes, text the one line must contain)
BROKEN_FIELDS = [
    ("kv-heads-do-not-divide", {"num_key_value_heads": 3}, "num_key_value_heads (3) must divide"),
    ("more-kv-heads-than-heads", {"num_key_value_heads": 16}, "num_key_value_heads (16)"),
    ("hidden-not-divisible", {"hidden_size": 500}, "hidden_size (500) is not divisible"),
    ("more-heads-than-hidden", {"hidden_size": 64, "num_attention_heads": 128, "num_key_value_heads": 128},
     "num_attention_heads (128) exceeds hidden_size"),
    ("1e12-layers", {"num_hidden_layers": 10**12}, "num_hidden_layers"),
    ("vocab-1e30", {"vocab_size": 1e30}, "vocab_size"),
    ("zero-hidden", {"hidden_size": 0}, "must be positive"),
    ("negative-layers", {"num_hidden_layers": -2}, "num_hidden_layers must be a non-negative integer"),
    ("fractional-heads", {"num_attention_heads": 7.5}, "num_attention_heads must be a non-negative integer"),
    ("string-size", {"intermediate_size": "big"}, "intermediate_size must be a non-negative integer"),
    ("bool-size", {"vocab_size": True}, "vocab_size must be a non-negative integer"),
    ("zero-intermediate", {"intermediate_size": 0}, "intermediate_size must be positive"),
    ("huge-context", {"max_position_embeddings": 10**15}, "max_position_embeddings"),
    ("string-flag", {"tie_word_embeddings": "false"}, "tie_word_embeddings must be true or false"),
    ("layer-types-short", {"layer_types": ["full_attention"]}, "layer_types must list one attention type per layer"),
]
BROKEN_MOE = [
    ("top-k-over-experts", {"num_experts_per_tok": 9}, "num_experts_per_tok (9) exceeds the number of experts (8)"),
    ("experts-1e9", {"num_local_experts": 10**9}, "num_local_experts"),
]
# (case id, raw file bytes, text the one line must contain)
RAW = [
    ("nan", json.dumps(BASE).replace("512", "NaN", 1).encode(), "NaN is not a number JSON allows"),
    ("infinity", json.dumps(BASE).replace("32000", "-Infinity").encode(), "-Infinity is not a number"),
    ("1e400", json.dumps(BASE).replace("32000", "1e400").encode(), "1e400 does not fit a finite number"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not UTF-8 text"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "nests deeper than"),
    ("nesting-past-limit", (json.dumps(BASE)[:-1] + ', "x": ' + "[" * 40 + "1" + "]" * 40 + "}").encode(),
     "nests deeper than 32 levels"),
    ("huge-integer", json.dumps(BASE).replace("32000", "9" * 5000).encode(), "number too large"),
    ("truncated", json.dumps(BASE)[:-10].encode(), "is not valid JSON"),
    ("not-an-object", b"[1, 2, 3]", "is not a JSON object"),
    ("empty", b"", "is not valid JSON"),
]


def _write(tmp_path, name, raw):
    path = tmp_path / name / "config.json"
    path.parent.mkdir()
    path.write_bytes(raw)
    return path


def _refused_in_one_line(path, capsys, needle):
    code = main([str(path), "--json", "--no-pricing"])
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case,change,needle", BROKEN_FIELDS + [(c, {**MOE, **ch}, n) for c, ch, n in BROKEN_MOE],
                         ids=[c for c, _, _ in BROKEN_FIELDS + BROKEN_MOE])
def test_broken_field_is_one_line_naming_it(tmp_path, capsys, case, change, needle):
    _refused_in_one_line(_write(tmp_path, case, json.dumps({**BASE, **change}).encode()), capsys, needle)


@pytest.mark.parametrize("case,raw,needle", RAW, ids=[c for c, _, _ in RAW])
def test_unreadable_file_is_one_line(tmp_path, capsys, case, raw, needle):
    _refused_in_one_line(_write(tmp_path, case, raw), capsys, needle)


def test_valid_corners_still_load(tmp_path):
    """An explicit head_dim lifts the divisibility rule (Gemma 2: hidden 2304, 8 heads of 256);
    a UTF-8 byte-order mark and exponent-form integers are ordinary JSON."""
    spec = load_local(_write(tmp_path, "a", json.dumps({**BASE, "hidden_size": 500, "head_dim": 64}).encode()))
    assert (spec.hidden_size, spec.head_dim) == (500, 64)
    spec = load_local(_write(tmp_path, "b", b"\xef\xbb\xbf" + json.dumps({**BASE, "vocab_size": 3.2e4}).encode()))
    assert spec.vocab_size == 32000
    spec = load_local(_write(tmp_path, "c", json.dumps(MOE).encode()))
    assert (spec.num_local_experts, spec.num_experts_per_tok) == (8, 2)


def test_every_shipped_model_passes_the_checks():
    from planner.registry import shipped_models
    assert len(shipped_models()) >= 40  # the checks run inside spec_from_config for each


def test_library_raises_planner_error(tmp_path):
    with pytest.raises(PlannerError, match="num_key_value_heads"):
        load_local(_write(tmp_path, "x", json.dumps({**BASE, "num_key_value_heads": 3}).encode()))
