"""Evaluation: task metrics with and without the adapter, and the forgetting verdict, on the tiny model."""
from __future__ import annotations

import math

import pytest

from backend.adapter_io import AdapterRef
from backend.evaluate import (DEFAULT_FORGETTING_THRESHOLD, GENERAL_TEXT, evaluate_adapter, forgetting_verdict,
                              general_examples)
from planner.errors import PlannerError
from tests.adapters.conftest import CAPITALS, train_lora
from tests.tiny import write_jsonl

# General text in the tiny model's vocabulary (the shipped English set would be mostly <unk> to it).
TINY_GENERAL = (
    "the sky is blue and the grass is green . the cat says meow and the dog says woof . "
    "one plus two equals three . paris is in france and rome is in italy . "
    "what color is the sun ? it is yellow . the snow is white and the fire is red . "
    "tokyo is in japan . the bird says tweet . four plus five equals nine . "
) * 3

TRAIN_GENERAL = ["the grass is green and the sky is blue .", "the dog says woof and the cat says meow .",
                 "two plus three equals five .", "berlin is in germany and madrid is in spain .",
                 "what color is the moon ? it is white .", "the fish says blub and the bird says tweet ."]


def test_verdict_threshold_is_exclusive_and_documented():
    assert DEFAULT_FORGETTING_THRESHOLD == 0.10
    ok = forgetting_verdict(20.0, 22.0)          # +10% exactly: not flagged
    assert not ok.forgetting and math.isclose(ok.ratio, 1.1)
    assert ok.message == "no forgetting: general-text perplexity 20 -> 22 (+10.0%), within the +10% threshold"
    bad = forgetting_verdict(20.0, 22.2)
    assert bad.forgetting and bad.message.startswith("forgetting: ")
    assert forgetting_verdict(20.0, 15.0).forgetting is False  # better is never forgetting
    assert forgetting_verdict(20.0, 30.0, threshold=0.6).forgetting is False
    with pytest.raises(PlannerError, match=">= 0"):
        forgetting_verdict(1.0, 1.0, threshold=-0.1)


def test_shipped_general_text_is_a_few_kb_of_prose():
    text = GENERAL_TEXT.read_text(encoding="utf-8")
    assert 3000 < len(text.encode()) < 20000 and len(text.split("\n\n")) >= 8


class _CharTok:
    """A stand-in tokenizer (one id per character) to check the windowing arithmetic exactly."""

    def __call__(self, text):
        return {"input_ids": [ord(c) for c in text]}


def test_general_windows_cover_every_token_once():
    examples = general_examples("x" * 1000 + "\n\n" + "y" * 100 + "\n\n\n", _CharTok(), window=256)
    assert [len(e.context) for e in examples] == [1, 1, 1, 1, 1]
    assert [len(e.target) for e in examples] == [255, 255, 255, 231, 99]
    assert examples[-1].context == (ord("y"),)
    assert len(general_examples("x" * 1000, _CharTok(), window=256, max_tokens=300)) == 2
    with pytest.raises(PlannerError, match="too short"):
        general_examples("x\n\ny", _CharTok())


@pytest.mark.slow
def test_task_metrics_with_and_without_the_adapter(tiny_base, two_adapters, tmp_path):
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": q, "completion": " " + a} for q, a in CAPITALS])
    general = tmp_path / "general.txt"
    general.write_text(TINY_GENERAL)
    report = evaluate_adapter(AdapterRef(two_adapters["capitals"], str(tiny_base), "capitals"), data, general)
    task = report.task
    assert task.adapter.exact_match == 1.0 and task.base.exact_match == 0.0
    assert task.adapter.loss < 0.5 < 3.0 < task.base.loss
    assert task.base.tokens == task.adapter.tokens == 4 * 3  # "paris ." + EOS per record
    assert math.isclose(task.adapter.perplexity, math.exp(task.adapter.loss))
    # one paragraph of 216 words in windows of 128 (the tiny tokenizer's limit): 2 context tokens
    assert report.general.base.tokens == len(TINY_GENERAL.split()) - 2
    d = report.to_dict()
    assert d["adapter"] == "capitals" and set(d) == {"adapter", "base_model", "task", "general", "verdict"}
    assert report.metrics()["task.adapter.exact_match"] == 1.0


@pytest.mark.slow
def test_no_forgetting_for_a_gently_trained_adapter_on_mixed_data(tiny_base, tmp_path):
    # the remedy for forgetting: general sentences (not the held-out ones) mixed in, few steps
    mixed = [f"{q} {a}" for q, a in CAPITALS] + TRAIN_GENERAL
    adapter = train_lora(tiny_base, tmp_path / "mixed", mixed, steps=20, lr=5e-3, seed=4)
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": q, "completion": " " + a} for q, a in CAPITALS])
    general = tmp_path / "general.txt"
    general.write_text(TINY_GENERAL)
    report = evaluate_adapter(AdapterRef(adapter, str(tiny_base)), data, general, exact_match=False)
    assert report.task.adapter.loss < report.task.base.loss
    assert report.task.adapter.exact_match is None
    assert not report.verdict.forgetting, report.verdict.message
    assert report.verdict.ratio < 1.0


@pytest.mark.slow
def test_forgetting_flags_an_adapter_overtrained_on_narrow_data(tiny_base, tmp_path):
    narrow = ["one two three four five six seven eight nine ten"] * 4
    adapter = train_lora(tiny_base, tmp_path / "narrow", narrow, steps=300, seed=3)
    data = write_jsonl(tmp_path / "narrow.jsonl", [{"text": t} for t in narrow[:2]])
    general = tmp_path / "general.txt"
    general.write_text(TINY_GENERAL)
    report = evaluate_adapter(AdapterRef(adapter, str(tiny_base)), data, general)
    assert report.task.adapter.loss < report.task.base.loss      # it learned its narrow task ...
    assert report.task.base.exact_match is None                  # (text data: no exact match)
    assert report.verdict.forgetting, report.verdict.message     # ... and forgot general text
    assert report.verdict.ratio > 1.0 + DEFAULT_FORGETTING_THRESHOLD


@pytest.mark.slow
def test_the_shipped_set_runs_and_bad_inputs_are_one_line_errors(tiny_base, two_adapters, tmp_path):
    data = write_jsonl(tmp_path / "eval.jsonl", [{"prompt": q, "completion": " " + a} for q, a in CAPITALS])
    report = evaluate_adapter(AdapterRef(two_adapters["swapped"], str(tiny_base)), data, max_examples=2)
    assert report.general.source == str(GENERAL_TEXT) and report.general.base.tokens > 500
    assert report.task.base.tokens == 2 * 3
    with pytest.raises(PlannerError, match="cannot read general-text set"):
        evaluate_adapter(AdapterRef(two_adapters["swapped"], str(tiny_base)), data, tmp_path / "missing.txt")
    with pytest.raises(PlannerError, match="threshold"):
        evaluate_adapter(AdapterRef(two_adapters["swapped"], str(tiny_base)), data, threshold=-1)
