"""What would make a job fit: the smallest changes of flags, each checked by re-estimating.

Pure core (no pricing import): the caller passes ``check(estimate, gpu_count) -> Verdict``, the
fit rule of the layer above (pricing/fit.py ``fit_machine``), so a suggestion fits by exactly the
rule that said the job does not. Every suggestion is the flags to append to the same command; its
``per_gpu_bytes`` comes from the estimate with those flags applied (issue 10, "What would make it
fit"). Changes are tried from the least intrusive (the same run, less memory) to the most (another
method, more GPUs); when no single change fits, the memory-saving ones are combined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from .errors import PlannerError
from .job import BYTES_PER_PARAM, Job, Mode

MIN_SEQ_LEN = 128      # shorter sequences are no longer the same job
MAX_GPUS_SUGGESTED = 8  # one machine's worth of GPUs


class Verdict(NamedTuple):
    fits: bool
    per_gpu_bytes: int
    strategy: str | None


@dataclass(frozen=True)
class Suggestion:
    """Flags that, appended to the command, make the job fit."""

    flags: tuple[str, ...]
    per_gpu_bytes: int
    fits: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"flags": list(self.flags), "per_gpu_bytes": self.per_gpu_bytes, "fits": self.fits, "why": self.why}


Check = Callable[[Any, int], Verdict]


def _mode_change(job: Job, mode: Mode) -> tuple[tuple[str, ...], dict[str, Any]]:
    """--mode M; also --precision when the job's precision was not its mode's default (given explicitly)."""
    flags: tuple[str, ...] = ("--mode", mode.value)
    if job.precision != job.kind.precision:
        flags += ("--precision", mode.precision)
    return flags, {"mode": mode, "precision": mode.precision}


def _single_changes(job: Job) -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(flags, Job changes, why) for each one-flag change that saves memory, least intrusive first."""
    out: list[tuple[tuple[str, ...], dict[str, Any], str]] = []
    if not job.is_training:
        for p in ("int8", "int4"):
            if BYTES_PER_PARAM[p] < BYTES_PER_PARAM[job.precision]:
                out.append((("--precision", p), {"precision": p}, f"serve {p} weights (bitsandbytes)"))
        return out
    if not job.gradient_checkpointing:
        out.append((("--gradient-checkpointing",), {"gradient_checkpointing": True},
                    "recompute activations in the backward pass instead of keeping them (slower by ~1/3)"))
    if job.optimizer in ("adamw", "adamw-8bit") and not job.kind.prompt:
        out.append((("--optimizer", "paged-adamw-8bit"), {"optimizer": "paged-adamw-8bit"},
                    "8-bit Adam states, paged to CPU memory under pressure (bitsandbytes)"))
    if job.mode is Mode.FULL:
        flags, ch = _mode_change(job, Mode.LORA)
        out.append((flags, ch, "train LoRA adapters on frozen bf16 weights instead of every weight"))
    if job.mode in (Mode.FULL, Mode.LORA):
        flags, ch = _mode_change(job, Mode.QLORA)
        out.append((flags, ch, "train LoRA adapters on 4-bit frozen weights (QLoRA)"))
    return out


def _largest(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Largest n in [lo, hi] with ok(n) (memory grows with n); None if even lo does not fit."""
    if hi < lo or not ok(lo):
        return None
    while hi > lo:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
    return lo


def suggest(model: Any, job: Job, check: Check, *, gpu_count: int = 1, gpu_name: str | None = None,
            max_gpus: int = MAX_GPUS_SUGGESTED) -> tuple[Suggestion, ...]:
    """Suggestions that make ``job`` on ``model`` fit (``check``); ``gpu_name`` enables "--gpu Nx NAME"."""
    from .estimate import estimate

    def verdict(j: Job, n: int = gpu_count) -> Verdict | None:
        try:
            return check(estimate(model, j), n)
        except PlannerError:
            return None

    def fits(j: Job, n: int = gpu_count) -> bool:
        v = verdict(j, n)
        return v is not None and v.fits

    out: list[Suggestion] = []

    def add(flags: tuple[str, ...], j: Job, why: str, n: int = gpu_count) -> None:
        v = verdict(j, n)
        if v is not None and v.fits:
            out.append(Suggestion(flags, v.per_gpu_bytes, True, why))

    singles = _single_changes(job)
    for flags, change, why in singles:
        add(flags, job.with_(**change), why)
    if job.batch_size > 1:
        b = _largest(lambda x: fits(job.with_(batch_size=x)), 1, job.batch_size - 1)
        if b is not None:
            steps = math.ceil(job.batch_size / b)
            add(("--batch-size", str(b)), job.with_(batch_size=b),
                f"{b} sequences per step; accumulate gradients over {steps} steps to keep the batch of "
                f"{job.batch_size}" if job.is_training else f"{b} sequences at a time")
    if job.seq_len > MIN_SEQ_LEN:
        s = _largest(lambda x: fits(job.with_(seq_len=x)), MIN_SEQ_LEN, job.seq_len - 1)
        if s is not None:
            add(("--seq-len", str(s)), job.with_(seq_len=s), f"the longest sequence that fits ({s} tokens)")
    if gpu_name is not None:
        n = next((k for k in range(gpu_count + 1, max_gpus + 1) if fits(job, k)), None)
        if n is not None:
            v = verdict(job, n)
            add(("--gpu", f"{n}x {gpu_name}"), job, f"{v.strategy} over {n} GPUs", n)
    if out:
        return tuple(out)
    # No single change fits: every memory-saving change at once, then the longest sequence on top.
    modes = [(f, c) for f, c, _ in singles if "mode" in c]
    keep = [(f, c) for f, c, _ in singles if "mode" not in c] + modes[-1:]  # the most saving mode only
    flags: tuple[str, ...] = tuple(x for f, _ in keep for x in f)
    combined = job.with_(**{k: v for _, c in keep for k, v in c.items()})
    if flags:
        add(flags, combined, "every memory-saving change at once: " + " ".join(flags))
        if not out and combined.seq_len > MIN_SEQ_LEN:
            s = _largest(lambda x: fits(combined.with_(seq_len=x)), MIN_SEQ_LEN, combined.seq_len - 1)
            if s is not None:
                add(flags + ("--seq-len", str(s)), combined.with_(seq_len=s),
                    f"every memory-saving change and sequences of at most {s} tokens")
    return tuple(out)
