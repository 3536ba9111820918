"""The OpenAI-compatible request shapes as pydantic models, and the checked sampling parameters.

Field names, defaults and ranges follow the OpenAI API reference
(https://platform.openai.com/docs/api-reference/completions and .../chat), which vLLM's server
accepts too. Every model forbids unknown fields, so a parameter this server does not implement
(``tools``, ``logit_bias``, ``response_format``, ``echo``, ...) is a 400 that names it, never
silently ignored. The models are also the OpenAPI document (``GET /openapi.json``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.errors import PlannerError

DEFAULT_COMPLETION_TOKENS = 16   # OpenAI's default for /v1/completions
DEFAULT_CHAT_TOKENS = 256        # OpenAI's default is "up to the context"; capped here
MAX_STOP_SEQUENCES = 4           # as in the OpenAI API
MAX_CHOICES = 16                 # n: more choices are more rows of one batch; refuse beyond
GREEDY_BELOW = 1e-5              # temperatures below this decode greedily (vLLM's _SAMPLING_EPS)
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)   # what torch.Generator.manual_seed accepts


MAX_NAME_CHARS = 256            # a model or adapter name
MAX_PATH_CHARS = 1024           # lora_path: well under PATH_MAX (4096), so the OS never answers ENAMETOOLONG


def _text(value: str) -> str:
    """Text the tokenizer can encode: no lone surrogate (JSON's "\\ud800" decodes to one; the fast
    tokenizers' UTF-8 conversion raises on it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"holds a lone surrogate (U+{ord(value[exc.start]):04X}) at {exc.start}; "
                         "send valid UTF-8 text") from None
    return value


def _path_text(value: str) -> str:
    """A path the filesystem can take: text without NUL (os calls raise on it)."""
    if "\0" in _text(value):
        raise ValueError("holds a NUL character")
    return value


Text = Annotated[str, AfterValidator(_text)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS), AfterValidator(_path_text)]
PathText = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(_path_text)]


class ApiError(PlannerError):
    """A request the server refuses: HTTP status plus an OpenAI-style error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


class _Strict(BaseModel):
    # strict: "1" is not 1 and 1.5 is not a bool; extra="forbid": unknown parameters are refused
    model_config = ConfigDict(extra="forbid", strict=True)


Penalty = Annotated[float, Field(ge=-2.0, le=2.0, allow_inf_nan=False)]
Stop = Union[Annotated[Text, Field(min_length=1)],
             Annotated[list[Annotated[Text, Field(min_length=1)]], Field(max_length=MAX_STOP_SEQUENCES)]]


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """The fields both endpoints share."""

    model: Annotated[Name, Field(description="an adapter name, or the base model's name")]
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    temperature: Optional[Annotated[float, Field(ge=0.0, le=2.0, allow_inf_nan=False)]] = None
    top_p: Optional[Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)]] = None
    n: Optional[Annotated[int, Field(ge=1, le=MAX_CHOICES)]] = None
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    stop: Optional[Stop] = None
    seed: Optional[Annotated[int, Field(ge=SEED_RANGE[0], le=SEED_RANGE[1])]] = None
    presence_penalty: Optional[Penalty] = None
    frequency_penalty: Optional[Penalty] = None
    user: Optional[Text] = Field(None, description="accepted for compatibility; it does not change the output")

    @model_validator(mode="after")
    def _stream_options_need_stream(self) -> "_Sampling":
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self


class CompletionRequest(_Sampling):
    """``POST /v1/completions``: one choice per prompt (times ``n``)."""

    prompt: Union[Text, Annotated[list[Text], Field(min_length=1)]] = Field(
        description="a string or a list of strings (token-id prompts are not supported)")
    logprobs: Optional[Annotated[int, Field(ge=0, le=5)]] = None
    echo: Optional[bool] = None
    best_of: Optional[int] = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: Optional[bool]) -> Optional[bool]:
        if v:
            raise ValueError("echo is not supported")
        return v

    @field_validator("best_of")
    @classmethod
    def _no_best_of(cls, v: Optional[int]) -> Optional[int]:
        if v not in (None, 1):
            raise ValueError("best_of is not supported (use n)")
        return v


class TextPart(_Strict):
    type: Literal["text"]
    text: Text


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[Text, list[TextPart]]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_Sampling):
    """``POST /v1/chat/completions``: the tokenizer's chat template makes the prompt."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    logprobs: Optional[bool] = False
    top_logprobs: Optional[Annotated[int, Field(ge=0, le=20)]] = None

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> "ChatRequest":
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self


class LoadLoraRequest(_Strict):
    """vLLM's ``POST /v1/load_lora_adapter``."""

    lora_name: Name
    lora_path: Annotated[PathText, Field(description="a folder inside one of the --adapter-root folders")]


class UnloadLoraRequest(_Strict):
    """vLLM's ``POST /v1/unload_lora_adapter`` (``lora_path`` is accepted and not needed)."""

    lora_name: Name
    lora_path: Optional[PathText] = None


@dataclass(frozen=True)
class SamplingParams:
    """How to generate one choice. ``temperature`` below GREEDY_BELOW means greedy decoding."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None   # None: no logprobs; k >= 0: the chosen token's and the top k

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW

    def to_dict(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": list(self.stop), "seed": self.seed, "presence_penalty": self.presence_penalty,
                "frequency_penalty": self.frequency_penalty, "logprobs": self.logprobs}


def sampling_params(req: CompletionRequest | ChatRequest, prompt_tokens: int, context: int) -> SamplingParams:
    """The checked parameters for one prompt of ``prompt_tokens`` tokens on a model of ``context``."""
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"the prompt is {prompt_tokens} tokens; this model's context is {context}",
                       param="messages" if isinstance(req, ChatRequest) else "prompt")
    if isinstance(req, ChatRequest):
        asked = req.max_completion_tokens or req.max_tokens
        name = "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
        default = min(DEFAULT_CHAT_TOKENS, room)
        logprobs = (req.top_logprobs or 0) if req.logprobs else None
    else:
        asked, name, default, logprobs = req.max_tokens, "max_tokens", min(DEFAULT_COMPLETION_TOKENS, room), req.logprobs
    if asked is not None and asked > room:
        raise ApiError(400, f"'{name}' is {asked}, but the prompt is {prompt_tokens} tokens and the context "
                            f"{context}: at most {room}", param=name)
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return SamplingParams(max_tokens=asked or default,
                          temperature=1.0 if req.temperature is None else req.temperature,
                          top_p=1.0 if req.top_p is None else req.top_p, stop=stop, seed=req.seed,
                          presence_penalty=req.presence_penalty or 0.0,
                          frequency_penalty=req.frequency_penalty or 0.0, logprobs=logprobs)


def _validator_step(part: str) -> bool:
    return "[" in part or part in ("str", "int", "float", "bool", "list", "dict")


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """pydantic's errors as one OpenAI-style 400 naming the first offending parameter."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    # pydantic names the validators of a union or an Annotated type in the path ("function-after[...]",
    # "list[str]", "str"): only field names and indices are the client's
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _validator_step(str(p))]
    param = loc[0] if loc and not loc[0].isdigit() else None
    where = ".".join(loc)
    if first.get("type") == "extra_forbidden":
        return ApiError(400, f"unsupported parameter '{where}': this server does not implement it", param=param)
    if first.get("type") == "json_invalid":
        return ApiError(400, "the request body is not valid JSON")
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ApiError(400, f"'{where}': {msg}" if where else msg, param=param)
