"""One base model in memory with LoRA adapters beside it, and the rules for loading more.

The model is shared by every request: the batch scheduler (batching.py) runs each batch under
``lock``, and loading or unloading an adapter takes the same lock, so weights never change
under a forward pass. Requests pick adapters per row of a batch (PEFT's ``adapter_names=``), so
no "active adapter" state is involved in generation.

Runtime loads (``load_adapter(..., confined=True)``) must resolve, symlinks and ``..`` first,
inside one of the adapter roots, and their errors never say whether a path outside exists.
Responses name adapters, never directories.
"""
from __future__ import annotations

import contextlib
import inspect
import os
import re
import threading
from pathlib import Path
from typing import Any, Iterator

from planner.errors import PlannerError

from ..adapter_io import default_device, load_base
from ..store import check_adapter_dir
from .protocol import ApiError

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
BASE_ROW = "__base__"   # PEFT's name for "no adapter" in a mixed batch


def served_name(model: str) -> str:
    """The default name of the base in requests: a local folder's own name, else the Hub id."""
    path = Path(model).expanduser()
    return path.resolve().name if path.is_dir() else model


class AdapterHost:
    """The base model, its tokenizer and the loaded adapters (name -> directory, kept private)."""

    def __init__(self, base_model: str, *, base_name: str | None = None, dtype: str = "auto",
                 device: str | None = None, adapter_roots: tuple[str | Path, ...] = (),
                 max_loras: int | None = None) -> None:
        self.base_model = base_model
        self.base_name = base_name or served_name(base_model)
        self.device = device or default_device()
        self.lock = threading.RLock()
        self.roots = tuple(Path(os.path.realpath(Path(r).expanduser())) for r in adapter_roots)
        self.max_loras = max_loras
        self._paths: dict[str, Path] = {}
        self._load_base = lambda: load_base(base_model, dtype, self.device)[0]
        self.model, self.tokenizer = load_base(base_model, dtype, self.device)
        # transformers renamed past_key_values to cache (5.2x); speak whichever this version takes
        self._cache_kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self.context = int(getattr(self.model.config, "max_position_embeddings", 0) or 2048)
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tokenizer.eos_token_id
        self.eos_ids = frozenset(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)

    # ---- adapters -------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self.lock:
            return list(self._paths)

    def row_name(self, model: str) -> str:
        """The adapter name for a batch row (BASE_ROW for the base); 404 for an unknown model."""
        if model == self.base_name:
            return BASE_ROW
        if model not in self._paths:
            known = ", ".join([self.base_name, *self._paths])
            raise ApiError(404, f"the model '{model}' does not exist; this server has: {known}", param="model",
                           code="model_not_found", kind="NotFoundError")
        return model

    def confine(self, path: str) -> Path:
        """``path`` resolved inside an adapter root, or a 403 that is the same whether it exists or not."""
        refusal = ApiError(403, "lora_path must name a folder inside one of the server's --adapter-root "
                                "folders", param="lora_path", code="path_not_allowed")
        try:  # '~nobody/x' (RuntimeError), a NUL (ValueError), a name past NAME_MAX (OSError): refused alike
            given = Path(path).expanduser()
            inside = []
            for root in self.roots:  # a relative path is looked up in each root in turn
                real = Path(os.path.realpath(given if given.is_absolute() else root / given))
                if real == root or root in real.parents:
                    inside.append(real)
            if not inside:
                raise refusal
            return next((p for p in inside if p.is_dir()), inside[0])
        except (OSError, ValueError, RuntimeError):
            raise refusal from None

    def _shown(self, directory: Path) -> str:
        """A directory as responses may show it: relative to its root, never absolute."""
        for root in self.roots:
            if root in directory.parents:
                return str(directory.relative_to(root))
        return directory.name

    def load_adapter(self, name: str, path: str | Path, *, confined: bool = False) -> None:
        """Load a LoRA adapter beside the base (409 for a taken name or a full server)."""
        if not ADAPTER_NAME.match(name) or name == BASE_ROW:
            raise ApiError(400, f"bad adapter name '{name}': use letters, digits, '.', '_' or '-' "
                                "(at most 64, starting with a letter or digit)", param="lora_name")
        if name == self.base_name:
            raise ApiError(409, f"'{name}' is the base model's name; pick another adapter name", param="lora_name")
        directory = self.confine(str(path)) if confined else Path(os.path.realpath(Path(path).expanduser()))
        try:
            check_adapter_dir(directory)
        except PlannerError:
            shown = self._shown(directory) if confined else str(path)
            raise ApiError(400, f"'{shown}' is not a PEFT adapter folder (adapter_config.json and "
                                "adapter_model.safetensors)", param="lora_path") from None
        with self.lock:
            if name in self._paths:
                raise ApiError(409, f"adapter '{name}' is already loaded; unload it first", param="lora_name",
                               code="adapter_exists")
            if self.max_loras is not None and len(self._paths) >= self.max_loras:
                raise ApiError(409, f"this server holds at most {self.max_loras} adapters (--max-loras); "
                                    "unload one first", param="lora_name", code="too_many_adapters")
            self._load_locked(name, directory, shown=self._shown(directory) if confined else str(path))
            self._paths[name] = directory

    def _load_locked(self, name: str, directory: Path, shown: str) -> None:
        from peft import PeftModel

        first = not self._paths
        try:
            if first:
                self.model = PeftModel.from_pretrained(self.model, str(directory), adapter_name=name).eval()
            else:
                self.model.load_adapter(str(directory), adapter_name=name)
        except Exception as exc:  # a shape mismatch or a broken file: leave the model as it was
            if first:
                self.model = self._load_base()
            elif name in getattr(self.model, "peft_config", {}):
                self.model.delete_adapter(name)
            reason = str(exc).splitlines()[0][:300].replace(str(directory), shown)
            raise ApiError(400, f"cannot load adapter '{name}' from '{shown}' onto {self.base_name}: {reason}",
                           param="lora_path") from None

    def unload_adapter(self, name: str) -> None:
        """Drop an adapter (404 when not loaded); the base is left exactly as it was."""
        with self.lock:
            if name not in self._paths:
                raise ApiError(404, f"adapter '{name}' is not loaded", param="lora_name", code="model_not_found",
                               kind="NotFoundError")
            if len(self._paths) == 1:
                self.model = self.model.unload()  # last one: back to the plain base model
            else:
                self.model.delete_adapter(name)
            del self._paths[name]

    def model_ids(self) -> list[tuple[str, str | None]]:
        """(id, parent) for /v1/models: the base first, then the adapters."""
        with self.lock:
            return [(self.base_name, None)] + [(n, self.base_name) for n in self._paths]

    @property
    def has_adapters(self) -> bool:
        return bool(self._paths)

    # ---- prompts --------------------------------------------------------------------------

    def chat_prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The token ids the tokenizer's chat template makes of ``messages`` (BOS from the template)."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ApiError(400, f"the tokenizer of {self.base_name} has no chat template; "
                                "use /v1/completions with a plain prompt")
        try:
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja2's TemplateError from raise_exception(): "roles must alternate", ...
            if type(exc).__module__.split(".")[0] != "jinja2":
                raise
            raise ApiError(400, f"the chat template of {self.base_name} refused these messages: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                           param="messages") from None
        return self.prompt_ids(text, add_special_tokens=False, param="messages")

    def prompt_ids(self, text: str, *, add_special_tokens: bool = True, param: str = "prompt") -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        if not ids:
            raise ApiError(400, "the prompt is empty after tokenization", param=param)
        return ids

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @contextlib.contextmanager
    def batch_adapters(self, names: list[str]) -> Iterator[bool]:
        """Inside ``lock``, for one batch: yields whether rows need ``adapter_names`` (a mixed batch).

        A batch of one adapter (or of the base alone) selects it once instead: PEFT's mixed-batch
        path re-registers hooks on every module at every forward, several times slower on small models.
        """
        if not self._paths or len(set(names)) > 1:
            yield bool(self._paths)
        elif names[0] == BASE_ROW:
            with self.model.disable_adapter():
                yield False
        else:
            self.model.set_adapter(names[0])
            yield False

    def forward(self, ids: Any, mask: Any, positions: Any, cache: Any, adapter_names: list[str] | None) -> tuple[Any, Any]:
        """(last-position logits, KV cache) of one forward pass; with ``adapter_names`` each row uses its own."""
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": positions,
                                  "use_cache": True, "logits_to_keep": 1}
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if adapter_names is not None:
            kwargs["adapter_names"] = adapter_names
        out = self.model(**kwargs)
        return out.logits[:, -1, :], getattr(out, self._cache_kw)
