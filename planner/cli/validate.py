"""Numeric flags and flag combinations checked at the CLI boundary (issue 13).

click parses ``--max-cost nan`` as a float and ``--seq-len 1e23``-sized integers as Python ints;
its ``FloatRange`` lets NaN through (every comparison with NaN is false). So each command calls
``check_flags(ctx)`` first: every float flag must be finite, and the flags in ``RULES`` must lie
in their range. The upper bounds are sanity bounds of this tool (no figure about any model or
GPU): they stop a typo from turning into a 1e42 GiB estimate or a billion-entry list, and the
message says they are this tool's bounds. ``conflicts`` refuses flags that make no sense together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from typer.core import TyperGroup

from ..errors import PlannerError
from .serving_flags import SERVING_FLAG_NAMES


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Rule:
    """The range a numeric flag must lie in; ``lo_open``: the lower bound itself is refused."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    why_hi: str = "a sanity bound of this tool"


POSITIVE = Rule(lo=0, lo_open=True)
NON_NEGATIVE = Rule(lo=0)
COUNT = Rule(lo=1, hi=2**31 - 1)
# Sanity bounds (tool policy, recorded in docs/decisions.md under issue 13).
MAX_SEQ_LEN = 2**24        # 16,777,216 tokens: above every context length in planner/models
MAX_ADAPTERS = 10_000      # adapters on one endpoint; the memory term is a product, the vLLM line lists each
MAX_RANK = 2**16

RULES: dict[str, Rule] = {
    "--seq-len": Rule(lo=1, hi=MAX_SEQ_LEN),
    "--batch-size": Rule(lo=1, hi=2**20),
    "--lora-r": Rule(hi=MAX_RANK),  # the lower bounds of the LoRA flags: planner/job.py, per mode
    "--lora-alpha": Rule(hi=2**20),
    "--lora-dropout": Rule(lo=0, hi=0.999999, why_hi="a probability below 1"),
    "--num-virtual-tokens": Rule(lo=1, hi=2**20),
    "--adapters": Rule(lo=0, hi=MAX_ADAPTERS),
    "--max-lora-rank": Rule(lo=1, hi=MAX_RANK),
    "--max-gpus": Rule(lo=1, hi=2**16),
    "--tokens": Rule(lo=1, hi=10**15),
    "--epochs": Rule(lo=0, lo_open=True, hi=10**6),
    "--usd-rate": Rule(lo=0, lo_open=True, hi=10**9),
    "--max-steps": COUNT,
    "--learning-rate": Rule(lo=0, lo_open=True, hi=10),
    "--save-steps": COUNT,
    "--max-cost": POSITIVE,
    "--max-hours": POSITIVE,
    # plan serve
    "--port": Rule(lo=0, hi=65535, why_hi="the largest TCP port"),
    "--max-loras": Rule(lo=1, hi=MAX_ADAPTERS),
    "--max-batch-size": Rule(lo=1, hi=2**16),
    "--batch-window-ms": Rule(lo=0, hi=60_000),
    "--timeout-keep-alive": Rule(lo=0, hi=86_400),
    # plan eval
    "--threshold": NON_NEGATIVE,
    "--max-examples": COUNT,
    "--lm-eval-limit": COUNT,
    # plan jobs / deploy / endpoints
    "--limit": Rule(lo=1, hi=100),
    "--poll": Rule(lo=0, hi=86_400),
    "--timeout": POSITIVE,
    "--count": Rule(lo=1, hi=1000),
    "--max-tokens": Rule(lo=1, hi=2**20),
}


def check_number(flag: str, value: Any, rule: Rule | None = None) -> None:
    """Raise a one-line PlannerError naming ``flag`` when ``value`` is not finite or out of ``rule``."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise PlannerError(f"{flag} must be a finite number, got {value}")
    if rule is None:
        return
    if rule.lo is not None and (value <= rule.lo if rule.lo_open else value < rule.lo):
        if isinstance(value, int) and rule.lo == 1:
            need = "a positive integer"
        elif rule.lo == 0:
            need = "a positive number" if rule.lo_open else ">= 0"
        else:
            need = f"> {_num(rule.lo)}" if rule.lo_open else f">= {_num(rule.lo)}"
        raise PlannerError(f"{flag} must be {need}, got {value}")
    if rule.hi is not None and value > rule.hi:
        shown = f"{value:,}" if isinstance(value, int) else f"{value}"
        raise PlannerError(f"{flag} must be at most {_num(rule.hi)} ({rule.why_hi}), got {shown}")


def _flag(param: Any) -> str:
    longs = [o for o in getattr(param, "opts", ()) if o.startswith("--")]
    return longs[0] if longs else f"--{param.name.replace('_', '-')}"


def check_flags(ctx: Any) -> None:
    """Check every numeric option of the running command (a click/typer Context)."""
    for param in ctx.command.params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        value = ctx.params.get(param.name)
        values = value if isinstance(value, (list, tuple)) else (value,)
        for v in values:
            if isinstance(v, (int, float)):
                check_number(_flag(param), v, RULES.get(_flag(param)))


def given(ctx: Any, name: str) -> bool:
    """Whether the user set parameter ``name`` (command line or environment), not its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


PRICING_FLAGS = ("platform", "spot", "gpu", "max_gpus", "tokens", "currency", "usd_rate", "max_cost", "objective",
                 "max_hours")


def plan_conflicts(ctx: Any) -> None:
    """Refuse flags of ``plan MODEL`` that make no sense together, in one line."""
    p = ctx.params
    sagemaker_run = p.get("execute") and p.get("backend") == "sagemaker"
    if p.get("execute") and p.get("mode") == "inference":
        raise PlannerError("--execute trains a model; --mode inference has nothing to train "
                           "(use --mode full, lora, qlora or prompt-tuning)")
    if p.get("spot") and p.get("gpu"):
        raise PlannerError("--spot prices cloud machines; --gpu checks your own GPU: drop one of them")
    if p.get("no_pricing"):
        names = [n for n in PRICING_FLAGS if given(ctx, n)]
        if given(ctx, "region") and not sagemaker_run:
            names.append("region")
        if names:
            flags = ", ".join("--" + n.replace("_", "-") for n in names)
            raise PlannerError(f"--no-pricing skips pricing, so {flags} would be ignored: drop --no-pricing "
                               "or those flags")
    for name in ("dry_run", "wait"):
        if p.get(name) and not sagemaker_run:
            raise PlannerError(f"--{name.replace('_', '-')} applies to a SageMaker launch: use it with "
                               "--execute --backend sagemaker")
    if p.get("restart") and not (p.get("execute") and p.get("backend") == "local"):
        raise PlannerError("--restart starts a local run over (old checkpoints moved aside): use it with "
                           "--execute (--backend local)")


# Issue 19: what each flag of ``plan MODEL`` needs to do anything. A flag given without it would be
# silently ignored, so it is refused in one line saying what it needs. Flags not listed here are
# used by every estimate (ALWAYS_USED, below); tests/test_flags_used.py enumerates the command's
# flags and proves each one is in exactly one of the two, and that each rule refuses.
def _runs(p: dict[str, Any]) -> bool:
    return bool(p.get("execute")) or p.get("emit_config") is not None


def _local(p: dict[str, Any]) -> bool:
    return bool(p.get("execute")) and p.get("backend") == "local"


def _sagemaker(p: dict[str, Any]) -> bool:
    return bool(p.get("execute")) and p.get("backend") == "sagemaker"


def _mode(p: dict[str, Any]) -> str | None:
    return "inference" if p.get("engine") == "vllm" and not p.get("mode") else p.get("mode")


def _lora(p: dict[str, Any]) -> bool:
    return _mode(p) in ("lora", "qlora")


FLAG_NEEDS: dict[str, tuple[str, Any]] = {
    # probe round 2: the shape flags of one mode are ignored by the others
    "lora_r": ("--mode lora or qlora (or --mode inference --adapters N)", lambda p: _lora(p) or bool(p.get("adapters"))),
    "lora_targets": ("--mode lora or qlora (or --mode inference --adapters N)",
                     lambda p: _lora(p) or bool(p.get("adapters"))),
    "lora_alpha": ("--mode lora or qlora", _lora),
    "lora_dropout": ("--mode lora or qlora", _lora),
    "num_virtual_tokens": ("--mode prompt-tuning", lambda p: _mode(p) == "prompt-tuning"),
    "gradient_checkpointing": ("a training mode (not --mode inference)", lambda p: _mode(p) != "inference"),
    "optimizer": ("a training mode (not --mode inference)", lambda p: _mode(p) != "inference"),
    "dataset": ("--execute or --emit-config, or a training estimate with pricing (its tokens set the cost)",
                lambda p: _runs(p) or (not p.get("no_pricing") and _mode(p) != "inference")),
    "epochs": ("--execute or --emit-config, or --tokens/--dataset with pricing",
               lambda p: _runs(p) or (not p.get("no_pricing") and _mode(p) != "inference"
                                      and (p.get("tokens") is not None or bool(p.get("dataset"))))),
    "backend": ("--execute", lambda p: bool(p.get("execute"))),
    "yes": ("--execute", lambda p: bool(p.get("execute"))),
    "force": ("--execute --backend local", _local),
    "output_dir": ("--execute --backend local or --emit-config", lambda p: _local(p) or p.get("emit_config") is not None),
    "max_steps": ("--execute or --emit-config", _runs),
    "learning_rate": ("--execute or --emit-config", _runs),
    "save_steps": ("--execute or --emit-config", _runs),
    "experiment": ("--execute or --emit-config", _runs),
    "role": ("--execute --backend sagemaker", _sagemaker),
    "bucket": ("--execute --backend sagemaker", _sagemaker),
    "restart": ("--execute (--backend local)", _local),
    "dry_run": ("--execute --backend sagemaker", _sagemaker),
    "wait": ("--execute --backend sagemaker (without --dry-run)", lambda p: _sagemaker(p) and not p.get("dry_run")),
    "platform": ("cloud pricing (not --gpu, which checks your own GPU)", lambda p: not p.get("gpu")),
    "max_cost": ("cloud pricing or a SageMaker launch (not --gpu)", lambda p: not p.get("gpu") or _sagemaker(p)),
    "max_lora_rank": ("--mode inference --adapters N", lambda p: bool(p.get("adapters"))),
}
# Used by every estimate (or checked elsewhere: --no-pricing's flags, --currency with --usd-rate).
ALWAYS_USED = ("model", "mode", "precision", "seq_len", "batch_size", "attention",
               "allocator", "adapters", "region", "spot", "objective", "max_hours", "gpu", "max_gpus", "tokens",
               "currency", "usd_rate", "no_pricing", "execute", "emit_config", "as_json",
               # issue 21's serving flags: used by --engine vllm, each refused in one line without it
               # (planner/cli/serving_flags.check_serving), so none is ignored
               *SERVING_FLAG_NAMES)


def ignored_flags(ctx: Any) -> None:
    """Refuse the first flag the user gave that this command line would ignore (FLAG_NEEDS)."""
    p = ctx.params
    for name, (needs, used) in FLAG_NEEDS.items():
        if given(ctx, name) and not used(p):
            raise PlannerError(f"--{name.replace('_', '-')} does nothing here: it needs {needs}")
    if given(ctx, "bucket") and not str(p.get("bucket") or "").strip():
        raise PlannerError("--bucket is empty; pass a bucket name or leave the flag out (the SageMaker default)")


def context_note(est: Any) -> str | None:
    """A warning when --seq-len exceeds the model's max_position_embeddings (the estimate still runs)."""
    from ..memory import context_warning

    return context_warning(est.model, est.job)


DIST = "llm-finetune-planner"


def require_extra(what: str, extra: str, *modules: str) -> None:
    """One line naming the extra when ``modules`` are not importable (the light ``pip install .``).

    importlib.util.find_spec looks the module up without importing it, so the check costs nothing
    on the full install and a plain estimate still never loads torch.
    """
    import importlib.util

    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing, or a broken module entry
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise PlannerError(f"{what} needs the {extra} extra ({', '.join(missing)} not installed): "
                           f"pip install '{DIST}[{extra}]'")


TRAIN_MODULES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "safetensors")
AWS_MODULES = ("boto3", "botocore", "sagemaker")

HELP_ASKED = "plan.help_asked"


class HelpAwareGroup(TyperGroup):
    """Records whether --help is among the group's arguments, so the extra check lets help through."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[HELP_ASKED] = any(a in ("--help", "-h") for a in args)
        return super().parse_args(ctx, args)


EXTRA_MODULES = {"aws": AWS_MODULES, "train": TRAIN_MODULES}


def require_group_extra(ctx: Any, extra: str) -> None:
    """``require_extra`` for every command of a group (``plan jobs ...``), but not for its --help."""
    if ctx.meta.get(HELP_ASKED) or ctx.resilient_parsing:
        return
    require_extra(f"{ctx.command_path} {ctx.invoked_subcommand}".strip(), extra, *EXTRA_MODULES[extra])


def plain_value(flag: str, value: str | None) -> None:
    """A user's name or key must be non-empty, without control characters (probe round 2: an empty
    --served-model-name or --api-key was taken as "not given", so the server ran without the key)."""
    if value is None:
        return
    if not value.strip():
        raise PlannerError(f"{flag} is empty; pass a value or leave the flag out")
    if any(not ch.isprintable() for ch in value):
        raise PlannerError(f"{flag} holds a control character (newline, tab...): pass a plain value")


def check_serve_values(model: str, host: str, served_model_name: str | None, api_key: str | None,
                       adapter_roots: Any) -> None:
    """``plan serve``'s string flags and folders, checked before any model is loaded."""
    import os

    from ..safe_io import regular_file

    plain_value("--host", host)  # an empty host binds every interface
    plain_value("--served-model-name", served_model_name)
    plain_value("--api-key", api_key)
    for root in adapter_roots:
        if not os.path.isdir(root):
            raise PlannerError(f"--adapter-root {root} is not a folder; pass an existing folder of adapters")
    config = os.path.join(model, "config.json") if model and os.path.isdir(model) else None
    if config and os.path.lexists(config):  # a FIFO or device as config.json must not block or crash the load
        regular_file(config, "config.json", limit=4 << 20)
