"""Plan an LLM job: exact parameter counts and a term-by-term GPU memory model.

    >>> from planner import estimate
    >>> est = estimate("llama3-8b", mode="qlora", seq_len=2048)
    >>> est.peak_allocated_bytes, est.breakdown

Importing this package is cheap: the names below load their module on first use (PEP 562), so
``import planner.errors`` does not load the estimate stack. It never imports torch or transformers.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {"PlannerError": "errors", "estimate": "estimate", "MemoryEstimate": "breakdown",
          "MemoryTerm": "breakdown", "SeedRule": "breakdown", "Job": "job", "ParamCounts": "params",
          "count_params": "params", "resolve": "registry", "shipped_models": "registry", "ModelSpec": "spec"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the installed metadata, read only when asked (`plan --version`)
        from importlib.metadata import PackageNotFoundError, version
        try:
            return version("llm-finetune-planner")
        except PackageNotFoundError:  # run from a source tree that was never installed
            return "0+unknown"
    if name not in _WHERE:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """``planner.estimate`` is both a submodule and the function users want from ``planner``:
    when the import system binds the submodule here, keep the function (as an eager
    ``from .estimate import estimate`` did), so ``from planner import estimate`` is always it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "estimate" and isinstance(value, types.ModuleType):
            value = value.estimate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
