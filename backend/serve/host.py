"""One base model in memory with any number of LoRA adapters beside it, switched per request.

Concurrency rule: PEFT's active adapter (``set_adapter``) and ``disable_adapter()`` are state of
the one shared model, so two requests generating at once could see each other's adapter. Every
use of the model (select adapter + generate, load, unload) therefore runs under one lock: requests
are served one at a time, each with exactly the adapter it named. Simple and correct; the price
is no batching across requests (use vLLM for throughput: ``planner.vllm``).
"""
from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from planner.errors import PlannerError

from ..adapter_io import default_device, load_base
from ..store import check_adapter_dir
from .protocol import ApiError, SamplingParams

ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Generation:
    """What one prompt produced."""

    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def _StopOnText(tokenizer: Any, stops: tuple[str, ...], prompt_len: int) -> Any:
    """A stopping criterion: stop once the decoded new text holds any of ``stops``."""
    from transformers import StoppingCriteria

    class StopOnText(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            text = tokenizer.decode(input_ids[0, prompt_len:], skip_special_tokens=True)
            done = any(s in text for s in stops)
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StopOnText()


class AdapterHost:
    """The base model, its tokenizer and the loaded adapters, behind one lock.

    ``model`` names in requests: ``base_name`` for the base alone, else an adapter name.
    """

    def __init__(self, base_model: str, *, base_name: str | None = None, dtype: str = "auto",
                 device: str | None = None) -> None:
        self.base_model = base_model
        self.base_name = base_name or base_model
        self.device = device or default_device()
        self._lock = threading.Lock()
        self._paths: dict[str, str] = {}
        self._load_base = lambda: load_base(base_model, dtype, self.device)[0]
        self.model, self.tokenizer = load_base(base_model, dtype, self.device)

    # ---- adapters -------------------------------------------------------------------------

    def adapters(self) -> dict[str, str]:
        """Loaded adapters: name -> directory."""
        with self._lock:
            return dict(self._paths)

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load a LoRA adapter beside the base; refuses a taken or malformed name (409/400)."""
        if not ADAPTER_NAME.match(name):
            raise ApiError(400, f"bad adapter name '{name}': use letters, digits, '.', '_' or '-' "
                                "(at most 64, starting with a letter or digit)", param="name")
        if name == self.base_name:
            raise ApiError(409, f"'{name}' is the base model's name; pick another adapter name", param="name")
        directory = check_adapter_dir(Path(path).expanduser()).resolve()
        with self._lock:
            if name in self._paths:
                raise ApiError(409, f"adapter '{name}' is already loaded (from {self._paths[name]}); "
                                    f"unload it first", param="name", code="adapter_exists")
            self._load_locked(name, directory)
            self._paths[name] = str(directory)

    def _load_locked(self, name: str, directory: Path) -> None:
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
            raise PlannerError(f"cannot load adapter '{name}' from {directory} onto {self.base_model}: "
                               f"{str(exc).splitlines()[0][:300]}") from None

    def unload_adapter(self, name: str) -> None:
        """Drop an adapter (404 when not loaded); the base is left exactly as it was."""
        with self._lock:
            if name not in self._paths:
                raise ApiError(404, f"adapter '{name}' is not loaded", param="name", code="model_not_found")
            if len(self._paths) == 1:
                self.model = self.model.unload()  # last one: back to the plain base model
            else:
                self.model.delete_adapter(name)
            del self._paths[name]

    def model_ids(self) -> list[tuple[str, str | None, str]]:
        """(id, parent, root) for /v1/models: the base first, then the adapters."""
        with self._lock:
            return [(self.base_name, None, self.base_model)] + [(n, self.base_name, p) for n, p in self._paths.items()]

    # ---- generation -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _selected(self, model: str) -> Iterator[None]:
        """Inside the lock: make ``model`` (an adapter, or the base) the one the weights use."""
        if model == self.base_name:
            ctx = self.model.disable_adapter() if self._paths else contextlib.nullcontext()
            with ctx:
                yield
            return
        if model not in self._paths:
            known = ", ".join([self.base_name, *self._paths])
            raise ApiError(404, f"unknown model '{model}'; this server has: {known}", param="model",
                           code="model_not_found")
        self.model.set_adapter(model)
        yield

    def chat_prompt(self, messages: list[dict[str, str]] | tuple[dict[str, str], ...]) -> str:
        """The prompt text the tokenizer's chat template makes of ``messages``."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise ApiError(400, f"the tokenizer of {self.base_model} has no chat template; "
                                "use /v1/completions with a plain prompt")
        return self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)

    def generate(self, model: str, prompt: str, params: SamplingParams, *,
                 add_special_tokens: bool = True) -> Generation:
        """Generate for one prompt with adapter ``model`` (or the base), under the lock."""
        import torch

        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=add_special_tokens)
        input_ids = enc["input_ids"].to(self.device)
        if input_ids.shape[1] == 0:
            raise ApiError(400, "the prompt is empty after tokenization", param="prompt")
        kwargs: dict[str, Any] = {"max_new_tokens": params.max_tokens, "do_sample": params.temperature > 0,
                                  "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if params.temperature > 0:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        if params.stop:  # transformers' own stop_strings fails on some tokenizers' vocabularies
            kwargs["stopping_criteria"] = [_StopOnText(self.tokenizer, params.stop, input_ids.shape[1])]
        with self._lock, self._selected(model), torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(input_ids=input_ids, attention_mask=enc["attention_mask"].to(self.device),
                                      **kwargs)
        new = out[0, input_ids.shape[1]:].tolist()
        eos = self.tokenizer.eos_token_id
        hit_eos = eos is not None and eos in new
        if hit_eos:
            new = new[: new.index(eos)]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        cut = [text.index(s) for s in params.stop if s in text]
        if cut:
            text = text[: min(cut)]
        finish = "stop" if hit_eos or cut else "length"
        return Generation(text=text, finish_reason=finish, prompt_tokens=int(input_ids.shape[1]),
                          completion_tokens=len(new))
