"""Evaluate an adapter against its base: task loss, perplexity and exact match, and a forgetting check.

Both sides run on one model: PEFT's ``disable_adapter()`` gives the exact base outputs, so "without
the adapter" and "with it" differ by the adapter alone. The forgetting check is the simple robust
one (see docs/adapters.md): perplexity of held-out general text with the adapter disabled vs
enabled; a rise of more than ``threshold`` (default 10%) is flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

from .adapter_io import AdapterRef, load_with_adapter

GENERAL_TEXT = Path(__file__).parent / "data" / "general_text.txt"
# Flag forgetting when general-text perplexity rises by more than this fraction. A heuristic:
# adapters that keep the base's general ability typically move it by a few percent; 10% means the
# adapter changed how the model reads text unrelated to its task. Override with --threshold.
DEFAULT_FORGETTING_THRESHOLD = 0.10
GENERAL_WINDOW_TOKENS = 256      # scored in non-overlapping windows of at most this many tokens
MAX_GENERAL_TOKENS = 16384       # keeps the check to seconds or minutes on a CPU


@dataclass(frozen=True)
class SideMetrics:
    """One side (base or adapter) on one text set; ``exact_match`` only for prompt/completion data."""

    loss: float          # mean negative log-likelihood per scored token (nats)
    perplexity: float    # exp(loss)
    tokens: int          # tokens scored
    exact_match: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "perplexity": self.perplexity, "tokens": self.tokens,
                "exact_match": self.exact_match}


@dataclass(frozen=True)
class Comparison:
    """The same text set without and with the adapter."""

    source: str
    base: SideMetrics
    adapter: SideMetrics

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "base": self.base.to_dict(), "adapter": self.adapter.to_dict()}


@dataclass(frozen=True)
class ForgettingVerdict:
    """General-text perplexity base vs adapter, and whether the rise passes the threshold."""

    base_perplexity: float
    adapter_perplexity: float
    ratio: float
    threshold: float
    forgetting: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"base_perplexity": self.base_perplexity, "adapter_perplexity": self.adapter_perplexity,
                "ratio": self.ratio, "threshold": self.threshold, "forgetting": self.forgetting,
                "message": self.message}


@dataclass(frozen=True)
class EvalReport:
    adapter: str
    base_model: str
    task: Comparison
    general: Comparison
    verdict: ForgettingVerdict

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "base_model": self.base_model, "task": self.task.to_dict(),
                "general": self.general.to_dict(), "verdict": self.verdict.to_dict()}

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow."""
        out: dict[str, float] = {}
        for set_name, comp in (("task", self.task), ("general", self.general)):
            for side_name, side in (("base", comp.base), ("adapter", comp.adapter)):
                for key, value in side.to_dict().items():
                    if value is not None:
                        out[f"{set_name}.{side_name}.{key}"] = float(value)
        out["forgetting.ratio"] = self.verdict.ratio
        out["forgetting.flag"] = float(self.verdict.forgetting)
        return out


def forgetting_verdict(base_perplexity: float, adapter_perplexity: float,
                       threshold: float = DEFAULT_FORGETTING_THRESHOLD) -> ForgettingVerdict:
    """Forgetting when adapter perplexity > base perplexity x (1 + threshold)."""
    if threshold < 0:
        raise PlannerError(f"forgetting threshold must be >= 0, got {threshold}")
    if base_perplexity <= 0 or adapter_perplexity <= 0:
        raise PlannerError("perplexities must be positive")
    ratio = adapter_perplexity / base_perplexity
    flagged = ratio > 1.0 + threshold
    change = f"general-text perplexity {base_perplexity:.4g} -> {adapter_perplexity:.4g} ({ratio - 1.0:+.1%})"
    message = (f"forgetting: {change}, above the +{threshold:.0%} threshold" if flagged
               else f"no forgetting: {change}, within the +{threshold:.0%} threshold")
    return ForgettingVerdict(base_perplexity, adapter_perplexity, ratio, threshold, flagged, message)


# -- turning data into scored token sequences ------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """Context (not scored) and target (scored) token ids; ``target_text`` for exact match."""

    context: tuple[int, ...]
    target: tuple[int, ...]
    target_text: str | None


def _chat(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> list[int]:
    if not getattr(tokenizer, "chat_template", None):
        raise PlannerError("conversational eval data needs a tokenizer with a chat template")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def task_examples(data: Any, tokenizer: Any) -> list[Example]:
    """A ``backend.data.DataSet`` as examples: the completion / last assistant turn is the target."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = []
    for rec in data.records:
        d = rec.data
        if data.format == "text":
            out.append(Example((), tuple(tokenizer(d["text"])["input_ids"] + eos), None))
            continue
        if data.format == "messages":
            msgs = d["messages"]
            context = _chat(tokenizer, msgs[:-1], True)
            target_text = msgs[-1]["content"]
        elif isinstance(d["prompt"], str):
            context, target_text = tokenizer(d["prompt"])["input_ids"], d["completion"]
        else:  # conversational prompt/completion
            context = _chat(tokenizer, d["prompt"], True)
            target_text = " ".join(m["content"] for m in d["completion"])
        target = tokenizer(target_text, add_special_tokens=False)["input_ids"] + eos
        out.append(Example(tuple(context), tuple(target), target_text))
    return out


def general_examples(text: str, tokenizer: Any, window: int = GENERAL_WINDOW_TOKENS,
                     max_tokens: int = MAX_GENERAL_TOKENS) -> list[Example]:
    """Paragraphs (split at blank lines), each cut into windows of at most ``window`` tokens; the
    first token of a window is its context, the rest is scored. At most ``max_tokens`` in all."""
    out: list[Example] = []
    budget = max_tokens
    for para in (p.strip() for p in text.split("\n\n")):
        ids = tokenizer(para)["input_ids"][:budget] if para else []
        budget -= len(ids)
        out += [Example(tuple(ids[i:i + 1]), tuple(ids[i + 1:i + window]), None)
                for i in range(0, len(ids), window) if len(ids[i:i + window]) > 1]
        if budget <= 0:
            break
    if not out:
        raise PlannerError("the general-text set is too short to score (needs a paragraph of 2 tokens or more)")
    return out


def context_window(model: Any, tokenizer: Any) -> int:
    """Tokens per scored window: GENERAL_WINDOW_TOKENS, or less when the model or tokenizer takes less."""
    limits = [GENERAL_WINDOW_TOKENS, getattr(model.config, "max_position_embeddings", None) or GENERAL_WINDOW_TOKENS]
    if 1 < (getattr(tokenizer, "model_max_length", 0) or 0) < 1_000_000:  # tokenizers without one say 1e30
        limits.append(tokenizer.model_max_length)
    return min(limits)


# -- scoring ---------------------------------------------------------------------------------------
def _score(model: Any, examples: list[Example], device: str) -> tuple[float, int]:
    """Summed NLL of the targets and how many target tokens."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for ex in examples:
            ids = torch.tensor([list(ex.context) + list(ex.target)], device=device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            labels = ids[0, 1:]
            start = max(len(ex.context) - 1, 0)
            nll = torch.nn.functional.cross_entropy(logits[start:], labels[start:], reduction="sum")
            total += float(nll)
            count += len(labels) - start
    return total, count


def _normalize(text: str) -> str:
    return " ".join(text.split()).lower()


def _exact_match(model: Any, tokenizer: Any, examples: list[Example], device: str) -> float | None:
    """Share of examples whose greedy completion equals the reference (whitespace/case-normalized)."""
    import torch

    scored = [ex for ex in examples if ex.target_text is not None]
    if not scored:
        return None
    hits = 0
    with torch.inference_mode():
        for ex in scored:
            ids = torch.tensor([list(ex.context)], device=device)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=len(ex.target) + 2,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            hits += _normalize(text) == _normalize(ex.target_text)
    return hits / len(scored)


def _side(model: Any, tokenizer: Any, examples: list[Example], device: str, exact: bool) -> SideMetrics:
    nll, tokens = _score(model, examples, device)
    loss = nll / max(tokens, 1)
    return SideMetrics(loss=loss, perplexity=math.exp(min(loss, 700.0)), tokens=tokens,
                       exact_match=_exact_match(model, tokenizer, examples, device) if exact else None)


def _compare(model: Any, tokenizer: Any, source: str, examples: list[Example], device: str,
             exact: bool) -> Comparison:
    with model.disable_adapter():
        base = _side(model, tokenizer, examples, device, exact)
    return Comparison(source, base, _side(model, tokenizer, examples, device, exact))


def evaluate_adapter(ref: AdapterRef, dataset: str | Path, general: str | Path | None = None, *,
                     threshold: float = DEFAULT_FORGETTING_THRESHOLD, max_examples: int | None = None,
                     exact_match: bool = True, dtype: str = "auto", device: str | None = None,
                     loaded: tuple[Any, Any] | None = None) -> EvalReport:
    """Task metrics on ``dataset`` and the forgetting verdict on ``general`` (default: the shipped set).
    ``loaded``: (PeftModel, tokenizer) already loaded for ``ref``, so other checks can share it."""
    from .adapter_io import default_device
    from .data import load_split

    if max_examples is not None and max_examples <= 0:
        raise PlannerError(f"--max-examples must be positive, got {max_examples}")
    data = load_split(dataset)
    general_path = Path(general).expanduser() if general else GENERAL_TEXT
    try:
        general_text = general_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlannerError(f"cannot read general-text set {general_path}: {exc}") from None
    forgetting_verdict(1.0, 1.0, threshold)  # check the threshold before loading the model
    device = device or default_device()
    model, tokenizer = loaded or load_with_adapter(ref, dtype, device)
    examples = task_examples(data, tokenizer)[:max_examples]
    task = _compare(model, tokenizer, str(dataset), examples, device, exact_match and data.format != "text")
    windows = general_examples(general_text, tokenizer, window=context_window(model, tokenizer))
    gen = _compare(model, tokenizer, str(general_path), windows, device, False)
    verdict = forgetting_verdict(gen.base.perplexity, gen.adapter.perplexity, threshold)
    return EvalReport(adapter=ref.store_name or str(ref.path), base_model=ref.base_model, task=task,
                      general=gen, verdict=verdict)


def log_to_mlflow(report: EvalReport, tracking_uri: str, experiment: str, parent_run_id: str | None = None,
                  extra_metrics: dict[str, float] | None = None) -> str:
    """One MLflow run holding the eval's numbers (and ``extra_metrics``) and eval.json; returns its run id."""
    import mlflow

    from .tracking import Tracker

    tracker = Tracker(tracking_uri, experiment)
    # a local SQLite store keeps its artifacts beside the database file
    home = Path(tracking_uri[len("sqlite:///"):]).parent if tracking_uri.startswith("sqlite:///") else Path.cwd()
    run_id = tracker.start(home, f"eval-{Path(report.adapter).name}",
                           {"adapter": report.adapter, "base_model": report.base_model,
                            "task_source": report.task.source, "general_source": report.general.source,
                            "threshold": report.verdict.threshold, "training_run_id": parent_run_id or ""})
    tracker.log_metrics({**report.metrics(), **(extra_metrics or {})}, step=0)
    client = mlflow.MlflowClient(tracking_uri)
    client.log_dict(run_id, report.to_dict(), "eval.json")
    client.set_tag(run_id, "plan.kind", "eval")
    client.set_terminated(run_id, status="FINISHED")
    return run_id

