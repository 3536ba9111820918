"""Find a model's spec: a shipped alias or Hugging Face id, a local config, or the Hub.

The shipped registry is one JSON file per model in ``planner/models/`` holding the published
config.json values and the URL they came from. Nothing is fetched unless the name is neither
shipped nor a local path.
"""
from __future__ import annotations

import difflib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config_checks import parse_config_json
from .errors import PlannerError
from .safe_io import read_bytes
from .spec import ModelSpec, spec_from_config

MODELS_DIR = Path(__file__).parent / "models"


@lru_cache(maxsize=1)
def _shipped() -> dict[str, dict[str, Any]]:
    """Every shipped model file, keyed by each lower-cased name it answers to."""
    return {key: doc for key, (doc, _) in _index().items()}


@lru_cache(maxsize=1)
def _index() -> dict[str, tuple[dict[str, Any], str | None]]:
    """Lower-cased name -> (model file, the variant's Hub id when the name is a variant's).

    A file's ``variants`` are the instruct/chat (or base) checkpoints published with the same
    architecture: they resolve to the file's shapes under their own id."""
    index: dict[str, tuple[dict[str, Any], str | None]] = {}
    for path in sorted(MODELS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        for variant in doc.get("variants", []):
            for key in (variant, variant.split("/")[-1]):
                index[key.lower()] = (doc, variant)
        for key in {doc["name"], doc["hf_id"], doc["hf_id"].split("/")[-1], *doc["aliases"]}:
            index[key.lower()] = (doc, None)
    return index


def shipped_models() -> list[ModelSpec]:
    """All shipped models, one spec each, in file order."""
    seen: dict[str, ModelSpec] = {}
    for doc in _shipped().values():
        if doc["name"] not in seen:
            seen[doc["name"]] = _from_doc(doc)
    return sorted(seen.values(), key=lambda s: (s.aliases[0] if s.aliases else s.name))


def _from_doc(doc: dict[str, Any], variant: str | None = None) -> ModelSpec:
    notes = tuple(doc.get("notes", ()))
    if variant:
        notes = (f"{variant}: shapes of {doc['hf_id']} ({doc.get('variants_note', 'same architecture')})", *notes)
    return spec_from_config(doc["config"], name=variant.split("/")[-1] if variant else doc["name"],
                            hf_id=variant or doc["hf_id"], source=doc["source"], aliases=tuple(doc["aliases"]),
                            confidence=doc.get("confidence"), notes=notes)


def _read_json(path: Path) -> Any:
    return parse_config_json(read_bytes(path, "model config"), str(path))  # no FIFO, no /dev/zero


def load_local(path: str | os.PathLike[str]) -> ModelSpec:
    """A config.json file, or a model directory holding one."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
        if not p.exists():
            raise PlannerError(f"{p.parent} has no config.json")
    if not p.exists():
        raise PlannerError(f"no such file: {p}")
    name = p.parent.name if p.name == "config.json" else p.stem
    return spec_from_config(_read_json(p), name=name or str(p), source=str(p))


def _looks_like_path(name: str) -> bool:
    return name.endswith(".json") or name.startswith((".", "/", "~")) or os.path.exists(name)


def suggestions(name: str, n: int = 3) -> list[str]:
    """Close shipped names, aliases first."""
    aliases = sorted({a for doc in _shipped().values() for a in doc["aliases"]})
    others = sorted(_shipped().keys())
    key = name.lower()
    hits = difflib.get_close_matches(key, aliases, n=n, cutoff=0.5)
    if not hits:
        hits = difflib.get_close_matches(key, others, n=n, cutoff=0.5)
    return hits


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _fetch_from_hub(repo_id: str) -> ModelSpec:
    """Download a Hub model's config.json once (huggingface_hub keeps it in its cache, so later
    runs, online or offline, read that copy); offline, only the cache is read."""
    url = f"https://huggingface.co/{repo_id}/blob/main/config.json"
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise PlannerError(f"'{repo_id}' is not a shipped model; install the hub extra (pip install '.[hub]') "
                           f"to read its config.json from the Hub, or download {url} and pass its path") from None
    offline = _offline()
    try:
        path = hf_hub_download(repo_id, "config.json", local_files_only=offline,
                               cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    except Exception as exc:  # the hub client raises many types: network, auth, not found, not cached
        if offline:
            raise PlannerError(f"'{repo_id}' is not shipped and its config.json is not in the local Hugging Face "
                               "cache (HF_HUB_OFFLINE is set); run once online with the hub extra "
                               f"(pip install '.[hub]') to cache it, or download {url} and pass its path") from None
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PlannerError(f"cannot fetch config.json for '{repo_id}' from the Hugging Face Hub ({reason}); "
                           f"offline? download {url} and pass its path, or a local model directory") from None
    return spec_from_config(_read_json(Path(path)), name=repo_id, hf_id=repo_id, source=url)


def resolve(name: str) -> ModelSpec:
    """Turn what the user typed into a ModelSpec, or raise PlannerError with suggestions."""
    if not name or not name.strip():
        raise PlannerError("no model given; `plan models` lists the shipped ones")
    hit = _index().get(name.strip().lower())
    if hit is not None:
        return _from_doc(*hit)
    if _looks_like_path(name):
        return load_local(name)
    if "/" in name and name.count("/") == 1:
        return _fetch_from_hub(name)
    hint = suggestions(name)
    did_you_mean = f"; did you mean {' or '.join(hint)}?" if hint else ""
    raise PlannerError(f"unknown model '{name}'{did_you_mean} `plan models` lists all, "
                       "or pass a Hugging Face id or a config.json path")
