"""Optional lm-eval (EleutherAI lm-evaluation-harness) tasks with the adapter disabled vs enabled.

The perplexity check in evaluate.py needs nothing extra; this adds standard benchmarks (hellaswag,
arc_easy, ...) and local YAML tasks when ``lm_eval`` is installed (``pip install '.[eval]'``).
Both runs use one in-memory model through lm-eval's ``HFLM(pretrained=model)``: PEFT's
``disable_adapter()`` gives the exact base outputs, so the deltas are the adapter's alone.
A tiny offline task ships in data/lm_eval_tasks (``general_mc``); relative ``data_files`` in a
local task YAML are read from the YAML's folder (lm-eval itself reads them from the working
directory). lm_eval and torch are imported inside the functions.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

from .adapter_io import AdapterRef, load_with_adapter

SHIPPED_TASKS = Path(__file__).parent / "data" / "lm_eval_tasks"
INSTALL_HINT = "pip install 'lm_eval[hf]>=0.4.13' (or pip install '.[eval]')"
# Closed-form stderr for acc-like metrics; bootstrap (perplexity-like metrics) with fewer draws
# than lm-eval's 100,000 default, which takes minutes on a CPU.
BOOTSTRAP_ITERS = 1000


def _lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise PlannerError(f"lm-eval is not installed; {INSTALL_HINT}") from None
    return lm_eval


@dataclass(frozen=True)
class TaskScores:
    """One lm-eval task or group: its metrics without and with the adapter, and adapter - base."""

    task: str
    base: dict[str, float]      # e.g. {"acc": 0.55, "acc_stderr": 0.11, "acc_norm": 0.5, ...}
    adapter: dict[str, float]
    delta: dict[str, float]     # adapter - base, for every metric but the stderrs
    samples: int | None         # items scored (after --lm-eval-limit)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "base": dict(self.base), "adapter": dict(self.adapter),
                "delta": dict(self.delta), "samples": self.samples}


@dataclass(frozen=True)
class LmEvalReport:
    tasks: tuple[TaskScores, ...]
    include_path: tuple[str, ...]
    limit: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": {t.task: t.to_dict() for t in self.tasks},
                "include_path": list(self.include_path), "limit": self.limit}

    def metrics(self) -> dict[str, float]:
        """Flat numbers for MLflow: ``lm_eval.TASK.base.METRIC`` and ``.adapter.`` and ``.delta.``."""
        return {f"lm_eval.{t.task}.{side}.{m}".replace(",", "."): v
                for t in self.tasks for side in ("base", "adapter", "delta")
                for m, v in getattr(t, side).items()}


@dataclass(frozen=True)
class TaskSelection:
    """Task names checked against lm-eval's index, and what to hand to ``simple_evaluate``."""

    names: tuple[str, ...]
    specs: tuple[Any, ...]           # a task name, or a full config dict with absolute data_files
    include_path: tuple[str, ...]
    manager: Any                     # lm_eval.tasks.TaskManager


def select_tasks(tasks: list[str], include_path: str | Path | None = None) -> TaskSelection:
    """Check the names before any model loads. Local YAMLs in ``include_path`` (default: the shipped
    folder) come first; lm-eval's own task index (thousands of YAMLs, seconds to read) only when a
    name is not local."""
    _lm_eval()
    from lm_eval.tasks import TaskManager

    names = [t.strip() for t in tasks if t.strip()]
    if not names:
        raise PlannerError("no lm-eval task given; e.g. --lm-eval-tasks general_mc")
    folder = Path(include_path).expanduser() if include_path else SHIPPED_TASKS
    if not folder.is_dir():
        raise PlannerError(f"lm-eval include path {folder} is not a folder of task YAMLs")
    includes = (str(folder.resolve()),)
    manager = TaskManager(include_path=list(includes), include_defaults=False)
    if any(not manager.match_tasks([n]) for n in names):
        manager = TaskManager(include_path=list(includes), include_defaults=True)
    for n in names:
        if not manager.match_tasks([n]):
            close = difflib.get_close_matches(n, manager.all_tasks, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise PlannerError(f"unknown lm-eval task '{n}'; {hint}`lm-eval ls tasks` lists the standard ones, "
                               f"and local YAMLs go in --lm-eval-include DIR")
    specs = tuple(_spec(manager, n, includes) for n in names)
    return TaskSelection(tuple(names), specs, includes, manager)


def _spec(manager: Any, name: str, includes: tuple[str, ...]) -> Any:
    """The name, or for a local YAML task with relative data_files, its config with them made absolute."""
    entry = manager.task_index.get(name)
    yaml_path = getattr(entry, "yaml_path", None)
    if yaml_path is None or not any(Path(yaml_path).resolve().is_relative_to(i) for i in includes):
        return name
    from .compat import load_lm_eval_yaml  # lm-eval's private loader: follows include:, !function

    try:
        cfg = load_lm_eval_yaml(Path(yaml_path))
    except PlannerError:
        raise
    except Exception as exc:  # YAML syntax, a missing include or !function module
        raise PlannerError(f"cannot read lm-eval task {yaml_path}: {str(exc).splitlines()[0][:300]}") from None
    if not isinstance(cfg.get("dataset_kwargs"), dict) or not cfg["dataset_kwargs"].get("data_files"):
        return name
    here = Path(yaml_path).resolve().parent

    def absolute(f: Any) -> Any:
        if isinstance(f, list):
            return [absolute(x) for x in f]
        return str(here / f) if isinstance(f, str) and "://" not in f and not Path(f).is_absolute() else f

    data_files = cfg["dataset_kwargs"]["data_files"]
    cfg["dataset_kwargs"] = {**cfg["dataset_kwargs"], "data_files":
                             {k: absolute(v) for k, v in data_files.items()} if isinstance(data_files, dict)
                             else absolute(data_files)}
    return cfg


def _metrics(entry: dict[str, Any]) -> dict[str, float]:
    """``{"acc,none": 0.5, "acc_stderr,none": 0.1, "alias": ...}`` -> ``{"acc": 0.5, "acc_stderr": 0.1}``."""
    out = {}
    for key, value in entry.items():
        if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # alias, name, sample_len; "N/A" stderrs
        metric, _, filt = key.partition(",")
        if not math.isnan(value):
            out[metric if filt == "none" else key] = float(value)
    return out


def _run(lm: Any, selection: TaskSelection, limit: int | None) -> dict[str, Any]:
    import lm_eval

    try:
        out = lm_eval.simple_evaluate(model=lm, tasks=list(selection.specs), task_manager=selection.manager,
                                      limit=limit, bootstrap_iters=BOOTSTRAP_ITERS, log_samples=False)
    except Exception as exc:  # dataset download offline, malformed local YAML or data: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise PlannerError(f"lm-eval failed on {', '.join(selection.names)}: {first}") from None
    return out


def compare_on_tasks(model: Any, tokenizer: Any, selection: TaskSelection, *, limit: int | None = None,
                     batch_size: int = 1) -> LmEvalReport:
    """``selection`` run on a PeftModel with its adapter disabled, then enabled."""
    if limit is not None and limit <= 0:
        raise PlannerError(f"--lm-eval-limit must be positive, got {limit}")
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    with model.disable_adapter():
        base = _run(lm, selection, limit)
    adapter = _run(lm, selection, limit)
    scores = []
    for task, entry in adapter["results"].items():
        b, a = _metrics(base["results"][task]), _metrics(entry)
        delta = {m: a[m] - b[m] for m in a if m in b and "_stderr" not in m}
        n = (adapter.get("n-samples") or {}).get(task, {}).get("effective", entry.get("sample_len"))
        scores.append(TaskScores(task, b, a, delta, None if n is None else int(n)))
    return LmEvalReport(tuple(scores), selection.include_path, limit)


def evaluate_lm_eval(ref: AdapterRef, tasks: list[str], include_path: str | Path | None = None, *,
                     limit: int | None = None, dtype: str = "auto", device: str | None = None,
                     batch_size: int = 1) -> LmEvalReport:
    """Load base + adapter and run ``tasks`` without and with the adapter."""
    if limit is not None and limit <= 0:
        raise PlannerError(f"--lm-eval-limit must be positive, got {limit}")
    selection = select_tasks(tasks, include_path)
    model, tokenizer = load_with_adapter(ref, dtype, device)
    return compare_on_tasks(model, tokenizer, selection, limit=limit, batch_size=batch_size)
