"""The adapter store: every trained adapter kept by name, under its base model, with its metadata.

Many adapters per base model is the normal case (one per task), so adapters live apart from the
base weights: ``<root>/<name>/`` holds ``adapter_config.json``, ``adapter_model.safetensors`` and
``record.json`` (name, base model, creation time, metadata such as mode, LoRA config, data set
fingerprint and metrics). The root is ``$PLAN_HOME/adapters`` or the platform's user data folder.
Plain files, no database: easy to inspect, copy and back up.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.safe_io import read_json_object

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
RECORD_FILE = "record.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def default_root() -> Path:
    """``$PLAN_HOME/adapters`` when PLAN_HOME is set, else the user data dir of ``plan``."""
    home = os.environ.get("PLAN_HOME")
    if home:
        return Path(home).expanduser() / "adapters"
    from platformdirs import user_data_dir
    return Path(user_data_dir("plan", appauthor=False)) / "adapters"


@dataclass(frozen=True)
class AdapterRecord:
    """One stored adapter. ``path`` is the folder holding adapter_config.json + safetensors."""

    name: str
    base_model: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base_model": self.base_model, "path": str(self.path),
                "metadata": self.metadata, "created": self.created}


def _is_adapter_file(filename: str) -> bool:
    """Adapter weights/config, tokenizer files and the README; not run records, databases, checkpoints."""
    return (filename.startswith(("adapter_", "tokenizer", "special_tokens", "vocab", "merges"))
            or filename in ("chat_template.jinja", "README.md", "added_tokens.json"))


def check_adapter_dir(adapter_dir: Path) -> Path:
    """Raise PlannerError unless ``adapter_dir`` holds a PEFT adapter."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise PlannerError(f"adapter folder {adapter_dir} does not exist")
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
    if missing:
        raise PlannerError(f"{adapter_dir} is not a PEFT adapter folder: missing {', '.join(missing)}")
    return adapter_dir


class AdapterStore:
    """Register, list, look up and delete adapters under one root folder."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    # -- writing ---------------------------------------------------------------------------
    def register(self, name: str, adapter_dir: Path, *, base_model: str, metadata: dict[str, Any] | None = None,
                 copy: bool = True, overwrite: bool = False) -> AdapterRecord:
        """Store the adapter in ``adapter_dir`` as ``name``.

        ``copy=True`` copies the adapter files (and tokenizer files beside them) into the store, so
        the output folder can be deleted later; ``copy=False`` records where it is. The entry
        appears atomically (a folder renamed into place), so a crash never leaves half an entry.
        """
        if not _NAME.match(name or ""):
            raise PlannerError(f"invalid adapter name {name!r}: use letters, digits, '.', '_' or '-' "
                               "(starting with a letter or digit)")
        adapter_dir = check_adapter_dir(Path(adapter_dir)).resolve()
        dest = self.root / name
        if dest.exists() and not overwrite:
            raise PlannerError(f"adapter '{name}' already exists; pick another name or "
                               f"`plan adapters delete {name}` first")
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        try:
            if copy:
                for item in adapter_dir.iterdir():
                    if item.is_file() and _is_adapter_file(item.name):
                        shutil.copy2(item, staging / item.name)
            record = AdapterRecord(name=name, base_model=str(base_model),
                                   path=dest if copy else adapter_dir, metadata=dict(metadata or {}),
                                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            _write_record(staging, record, copied=copy)
            if dest.exists():
                shutil.rmtree(dest)
            staging.rename(dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return record

    def update_metadata(self, name: str, **fields: Any) -> AdapterRecord:
        """Merge ``fields`` into the adapter's metadata (e.g. eval results) and save."""
        record = self.get(name)
        updated = AdapterRecord(name=record.name, base_model=record.base_model, path=record.path,
                                metadata={**record.metadata, **fields}, created=record.created)
        _write_record(self.root / name, updated, copied=self._copied(name))
        return updated

    def delete(self, name: str) -> AdapterRecord:
        """Remove the entry (and its copied files; an adapter registered with copy=False stays on disk)."""
        record = self.get(name)
        shutil.rmtree(self.root / name)
        return record

    # -- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / RECORD_FILE).is_file())

    def list(self, base_model: str | None = None) -> list[AdapterRecord]:
        """All adapters (oldest first), or those of one base model (compared case-insensitively)."""
        records = [self._load(n) for n in self.names()]
        if base_model is not None:
            records = [r for r in records if r.base_model.lower() == base_model.lower()]
        return sorted(records, key=lambda r: (r.created, r.name))

    def get(self, name: str) -> AdapterRecord:
        """The adapter called ``name``; PlannerError with a did-you-mean when there is none."""
        if name in self.names():
            return self._load(name)
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise PlannerError(f"unknown adapter '{name}'; {hint}`plan adapters list` shows all")

    def _copied(self, name: str) -> bool:
        return bool(_read_json(self.root / name / RECORD_FILE).get("copied", True))

    def _load(self, name: str) -> AdapterRecord:
        data = _read_json(self.root / name / RECORD_FILE)
        try:
            path = Path(data["path"]) if data.get("path") else self.root / name
            return AdapterRecord(name=data["name"], base_model=data["base_model"], path=path,
                                 metadata=dict(data.get("metadata") or {}), created=data.get("created", ""))
        except KeyError as exc:
            raise PlannerError(f"{self.root / name / RECORD_FILE} lacks field {exc}; "
                               f"delete the folder or fix the file") from None


def _read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "adapter record")


def _write_record(folder: Path, record: AdapterRecord, *, copied: bool) -> None:
    """Write record.json atomically; a copied adapter stores no absolute path (the store can move)."""
    data = record.to_dict()
    data["copied"] = copied
    if copied:
        data["path"] = None
    tmp = folder / f".{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, folder / RECORD_FILE)


def run_metadata(output_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The store metadata of a finished run: base revision, mode, PEFT config, data fingerprint, metrics."""
    job = record["plan"]["job"]
    peft = ({"lora_r": job["lora_r"], "lora_alpha": job["lora_alpha"], "lora_dropout": job["lora_dropout"],
             "lora_targets": job["lora_targets"]} if job["mode"] in ("lora", "qlora")
            else {"num_virtual_tokens": job["num_virtual_tokens"]} if job["mode"] == "prompt-tuning" else {})
    last = lambda rows, key: rows[-1][key] if rows else None  # noqa: E731
    data = record.get("data") or {}
    return {
        "base_revision": (record.get("base_model") or {}).get("revision"),
        "mode": job["mode"], "precision": job["precision"], "seq_len": job["seq_len"], "peft": peft,
        "dataset": data.get("train"), "eval_dataset": data.get("eval"),
        "metrics": {"global_step": record.get("global_step"),
                    "train_loss": last(record.get("train_loss") or [], "loss"),
                    "eval_loss": last(record.get("eval_loss") or [], "eval_loss")},
        "output_dir": str(Path(output_dir).resolve()),
        "mlflow_run_id": (record.get("mlflow") or {}).get("run_id"),
        "trained": record.get("finished"),
    }


def register_run(output_dir: Path, record: dict[str, Any], *, name: str | None = None,
                 store: AdapterStore | None = None) -> AdapterRecord:
    """Register the adapter a training run saved in ``output_dir`` (see backend/run_record.py).

    The default name is the output folder's name; a rerun of the same folder replaces its own entry,
    another run with a clashing name gets ``-2``, ``-3``...
    """
    store = store or AdapterStore()
    output_dir = Path(output_dir)
    metadata = run_metadata(output_dir, record)
    base = (record.get("base_model") or {}).get("name") or record["plan"]["model"]["name"]
    if name is None:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", output_dir.resolve().name).strip("-.") or "adapter"
        name, i = stem, 1
        while name in store.names() and store.get(name).metadata.get("output_dir") != metadata["output_dir"]:
            i += 1
            name = f"{stem}-{i}"
    overwrite = name in store.names() and store.get(name).metadata.get("output_dir") == metadata["output_dir"]
    return store.register(name, output_dir, base_model=base, metadata=metadata, overwrite=overwrite)
