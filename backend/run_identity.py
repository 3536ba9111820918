"""What makes a run the same run: a resume continues only the run it was started as.

``run.json`` records ``identity``: the data set fingerprints (content hashes) and every setting
that changes what is trained (model, mode, precision, sequence length, batch, LoRA rank, alpha,
dropout and targets, virtual tokens, optimizer, learning rate, seed, eval split). Settings that
only change how long or how often (max steps, epochs, save and logging intervals, tracking) may
change between reruns. A rerun whose identity differs is refused with one line naming the
changes, before the model loads (a changed LoRA rank would otherwise fail as a tensor size
mismatch deep in the checkpoint loader).
"""
from __future__ import annotations

from typing import Any

JOB_KEYS = ("mode", "precision", "compute_dtype", "seq_len", "batch_size", "lora_r", "lora_alpha",
            "lora_dropout", "lora_targets", "num_virtual_tokens", "optimizer")
ADAPTER_ONLY = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def identity(job: dict[str, Any], *, model: str, learning_rate: float, seed: int, eval_fraction: float,
             data: dict[str, Any]) -> dict[str, Any]:
    """The fields a resume must not change. ``data`` is ``TrainingData.to_dict()``."""
    mode = job.get("mode")
    ident = {k: job.get(k) for k in JOB_KEYS
             if not (k in ADAPTER_ONLY and mode not in ("lora", "qlora"))
             and not (k == "num_virtual_tokens" and mode != "prompt-tuning")}
    ident.update(model=model, learning_rate=learning_rate, seed=seed, eval_fraction=eval_fraction,
                 train_data=(data.get("train") or {}).get("fingerprint"),
                 eval_data=(data.get("eval") or {}).get("fingerprint"))
    return ident


def changes(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """'lora_r 8 -> 16' for each field that differs; [] when ``old`` is missing (an older record)."""
    if not old:
        return []
    return [f"{k} {_short(old.get(k))} -> {_short(new.get(k))}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def refusal(folder: str, changed: list[str]) -> str:
    return (f"{folder} holds a run started with other settings ({'; '.join(changed)}); rerun with the "
            "same settings to resume it, pass --restart to start over (its checkpoints are moved aside, "
            "not deleted), or pass another --output-dir")


def _short(v: Any) -> str:
    s = str(v)
    return s[:19] if len(s) > 24 and ":" in s else s  # fingerprints: enough to tell them apart
