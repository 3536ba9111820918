"""``plan bench``: drive a live OpenAI-compatible endpoint at set concurrencies and measure it.

The load generator is aiohttp (vLLM's own benchmark client) with a small closed-loop driver (why not
guidellm, aiperf or ``vllm bench serve``: docs/decisions.md, issue 21). The metrics are defined as
vLLM's own benchmark defines them (vllm/benchmarks/lib/endpoint_request_func.py and
vllm/benchmarks/serve.py ``calculate_metrics``, vLLM 0.19.0), so a figure here reads like a
``vllm bench serve`` figure:

- TTFT: request sent -> first streamed chunk that carries a token;
- ITL: the gap between consecutive token chunks (pooled over all requests);
- TPOT: per request, (E2E - TTFT) / (output tokens - 1);
- E2E: request sent -> the last token chunk;
- output tokens: the server's own ``usage.completion_tokens`` (``stream_options.include_usage``);
- output tokens/s and requests/s: totals over the level's wall time (first send -> last answer).

Each concurrency level is a closed loop: ``concurrency`` workers send requests back to back until
``num_prompts`` are done or ``max_seconds`` pass; then unfinished requests are cancelled (counted,
not measured). Everything is bounded, so a run always stops by itself.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from planner.errors import PlannerError

from .bench_results import LevelResult, RequestRecord, summarize

# Bounds of this tool (docs/decisions.md, issue 21): a typo must not start an hour-long load test.
MAX_CONCURRENCY = 4096
MAX_PROMPTS = 100_000        # per level
MAX_SECONDS = 3600.0         # per level
MAX_TOKENS = 2**20
# Prompt text: short common English words (one token each in the tests' word-level tokenizer; the
# probes measure what they cost in the served model's own). Each request draws its own sequence, so
# no two prompts share a prefix (vLLM's prefix cache would otherwise make TTFT look better than a
# real workload's).
WORDS = ("the", "a", "is", "are", "was", "of", "to", "in", "on", "and", "or", "what", "who", "where", "which",
         "how", "why", "when", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "cat", "dog", "bird", "fish", "sky", "sea", "sun", "moon", "fire", "blue", "green", "red", "white",
         "black", "yes", "no", "good", "bad", "it", "this", "that", "you", "we", "they", "he", "she", "my",
         "your", "our", "name", "word", "words", "number", "hello", "please", "thanks", "model", "data", "test")
PROBE_WORDS = (16, 32)       # two probe prompts: tokens per word and the fixed overhead (BOS, ...)
# Prompt seeds: request i of a level uses index i; the probes and the full-size check use negatives.


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. ``base_url`` is the server root or its ``/v1``; ``model`` None: the first served."""

    base_url: str
    concurrencies: tuple[int, ...]
    input_tokens: int
    output_tokens: int
    num_prompts: int | None = None     # per level; None: max(10, 4 x concurrency)
    max_seconds: float = 300.0         # per level
    request_timeout_s: float = 300.0
    model: str | None = None
    ignore_eos: bool = False           # vLLM's extension: every request runs to output_tokens
    api_key: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise PlannerError(f"--url must start with http:// or https://, got '{self.base_url}'")
        if not self.concurrencies:
            raise PlannerError("--concurrency needs at least one level, e.g. 1,4,16")
        for c in self.concurrencies:
            if not 1 <= c <= MAX_CONCURRENCY:
                raise PlannerError(f"--concurrency must be from 1 to {MAX_CONCURRENCY:,} (a bound of this tool), got {c}")
        if len(set(self.concurrencies)) != len(self.concurrencies):
            raise PlannerError(f"--concurrency lists a level twice: {','.join(map(str, self.concurrencies))}")
        for flag, v in (("--input-tokens", self.input_tokens), ("--output-tokens", self.output_tokens)):
            if not 1 <= v <= MAX_TOKENS:
                raise PlannerError(f"{flag} must be from 1 to {MAX_TOKENS:,}, got {v}")
        if self.num_prompts is not None and not 1 <= self.num_prompts <= MAX_PROMPTS:
            raise PlannerError(f"--num-prompts must be from 1 to {MAX_PROMPTS:,} (a bound of this tool), "
                               f"got {self.num_prompts}")
        for flag, s in (("--max-seconds", self.max_seconds), ("--request-timeout", self.request_timeout_s)):
            if not 0 < s <= MAX_SECONDS:  # also refuses nan
                raise PlannerError(f"{flag} must be above 0 and at most {MAX_SECONDS:g} s, got {s}")

    @property
    def v1_url(self) -> str:
        url = self.base_url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"

    def prompts_at(self, concurrency: int) -> int:
        return self.num_prompts if self.num_prompts is not None else max(10, 4 * concurrency)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("api_key")  # never written to a report or a calibration file
        d["concurrencies"] = list(self.concurrencies)
        return d


@dataclass(frozen=True)
class BenchResult:
    """A whole run: what was asked, which model answered, one ``LevelResult`` per concurrency."""

    settings: BenchSettings
    model: str
    words_per_prompt: int
    levels: tuple[LevelResult, ...]
    started_at: str                 # ISO 8601, UTC
    load_generator: str             # the client library and version that sent the requests

    def level(self, concurrency: int) -> LevelResult | None:
        return next((lv for lv in self.levels if lv.concurrency == concurrency), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "settings": self.settings.to_dict(), "words_per_prompt": self.words_per_prompt,
                "started_at": self.started_at, "load_generator": self.load_generator,
                "levels": [lv.to_dict() for lv in self.levels]}


def prompt_text(words: int, index: int, seed: int) -> str:
    """Request ``index``'s prompt: ``words`` words drawn by its own seeded generator."""
    rng = random.Random(seed * 1_000_003 + index)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def words_for(input_tokens: int, probes: list[tuple[int, int]]) -> int:
    """Words giving ``input_tokens`` prompt tokens, from (words, tokens) of two probe prompts (linear fit)."""
    (w1, t1), (w2, t2) = probes
    per_word = (t2 - t1) / (w2 - w1)
    if per_word <= 0:
        raise PlannerError(f"the server counted {t1} prompt tokens for {w1} words and {t2} for {w2}: "
                           "cannot size prompts from that")
    overhead = t1 - per_word * w1
    return max(1, round((input_tokens - overhead) / per_word))


class _Driver:
    """Sends the streamed completions over one aiohttp session, as vllm bench serve does.

    vLLM's own benchmark client (aiohttp, SSE lines parsed with json.loads): on this project's CPU it
    cost about 55 µs of client CPU per streamed token, the openai client's httpx transport 270-320 µs;
    that matters when one Python process must keep up with a GPU server (docs/decisions.md).
    """

    def __init__(self, settings: BenchSettings, on_level: Callable[[LevelResult], None] | None = None) -> None:
        self.s, self.on_level = settings, on_level
        self.headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self.session: Any = None

    async def _get_model(self) -> str:
        if self.s.model:
            return self.s.model
        url = f"{self.s.v1_url}/models"
        body, problem = None, None
        try:
            async with self.session.get(url) as resp:
                if resp.status == 200:
                    body = await resp.json(content_type=None)
                else:
                    problem = await _http_error(resp)
        except (self.aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            problem = _describe(exc)
        if problem:
            raise PlannerError(f"cannot list the models at {url}: {problem}")
        data = body.get("data") if isinstance(body, dict) else None
        if not data:
            raise PlannerError(f"{url} lists no model; name one with --model")
        return str(data[0].get("id"))

    async def one(self, model: str, prompt: str, max_tokens: int) -> RequestRecord:
        body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        if self.s.ignore_eos:
            body["ignore_eos"] = True
        ttft = last = None
        itl: list[float] = []
        chunks, usage = 0, None
        start = time.perf_counter()
        try:
            async with self.session.post(f"{self.s.v1_url}/completions", json=body) as resp:
                if resp.status != 200:
                    return RequestRecord(ok=False, error=await _http_error(resp))
                async for line in resp.content:  # one SSE line at a time
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    now = time.perf_counter() - start
                    event = json.loads(data)
                    if event.get("error") or event.get("object") == "error":  # OpenAI's shape, vLLM's older one
                        return RequestRecord(ok=False, error=_error_text(event), token_chunks=chunks)
                    if event.get("usage"):
                        usage = event["usage"]
                    if not event.get("choices"):
                        continue
                    choice = event["choices"][0]
                    carries_token = bool(choice.get("text")) or choice.get("finish_reason") is None
                    if not carries_token and ttft is not None:
                        continue  # a finish-only chunk after the tokens (plan serve sends one) is no token
                    chunks += carries_token  # (a finish-only first chunk: EOS came first; it still timed TTFT)
                    if ttft is None:
                        ttft = now
                    else:
                        itl.append(now - last)
                    last = now
        except (self.aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return RequestRecord(ok=False, error=_describe(exc), token_chunks=chunks)
        if ttft is None:
            return RequestRecord(ok=False, error="the stream ended before any choice", token_chunks=chunks)
        counts = [usage.get(k) if isinstance(usage, dict) else None for k in ("prompt_tokens", "completion_tokens")]
        if not all(isinstance(c, int) for c in counts):
            return RequestRecord(ok=False, error="the stream carried no usage (stream_options.include_usage)",
                                 token_chunks=chunks)
        return RequestRecord(ok=True, ttft_s=ttft, e2e_s=last, itl_s=tuple(itl), prompt_tokens=counts[0],
                             output_tokens=counts[1], token_chunks=chunks)

    async def probe(self, model: str) -> list[tuple[int, int]]:
        """Two short requests that size the prompts (and warm the server); a refusal stops the run here."""
        out = []
        for words in PROBE_WORDS:
            rec = await self.one(model, prompt_text(words, -1 - words, self.s.seed), 1)
            if not rec.ok:
                raise PlannerError(f"the first request to {self.s.v1_url} failed: {rec.error}")
            out.append((words, rec.prompt_tokens))
        return out

    async def level(self, model: str, concurrency: int, words: int) -> LevelResult:
        todo = iter(range(self.s.prompts_at(concurrency)))
        records: list[RequestRecord] = []
        in_flight = [0]

        async def worker() -> None:
            for i in todo:
                in_flight[0] += 1
                rec = await self.one(model, prompt_text(words, i, self.s.seed), self.s.output_tokens)
                in_flight[0] -= 1
                records.append(rec)

        start, cpu = time.perf_counter(), time.process_time()
        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        _, pending = await asyncio.wait(tasks, timeout=self.s.max_seconds)
        cancelled = in_flight[0]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        wall = time.perf_counter() - start
        return summarize(concurrency, records, cancelled, wall, client_cpu_fraction=(time.process_time() - cpu) / wall)

    async def run(self) -> tuple[str, int, list[LevelResult]]:
        import aiohttp

        self.aiohttp = aiohttp
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ssl=self.s.v1_url.startswith("https://"))
        timeout = aiohttp.ClientTimeout(total=self.s.request_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=self.headers,
                                         read_bufsize=2**20) as self.session:
            model = await self._get_model()
            words = words_for(self.s.input_tokens, await self.probe(model))
            # one request at the real sizes before any level (vllm bench serve's initial test run too)
            rec = await self.one(model, prompt_text(words, -1, self.s.seed), self.s.output_tokens)
            if not rec.ok:
                raise PlannerError(f"a request of {self.s.input_tokens} input and {self.s.output_tokens} output "
                                   f"tokens to {self.s.v1_url} failed: {rec.error}")
            levels = []
            for c in self.s.concurrencies:
                levels.append(await self.level(model, c, words))
                if self.on_level is not None:
                    self.on_level(levels[-1])
            return model, words, levels


def _error_text(body: Any) -> str | None:
    """The message of an OpenAI-style error body ({"error": {"message"}}) or vLLM's older {"message"}."""
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        return err.get("message")
    return err if isinstance(err, str) else body.get("message")


async def _http_error(resp: Any) -> str:
    text = await resp.text()
    try:
        message = _error_text(json.loads(text))
    except ValueError:
        message = None
    message = message or text.strip()[:200] or resp.reason
    return f"HTTP {resp.status}: {message}".replace("\n", " ")


def _describe(exc: BaseException) -> str:
    """A client-side failure (connection, timeout, a malformed stream) as one line."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out (--request-timeout)"
    os_error = getattr(exc, "os_error", None)
    if os_error is not None:
        return f"cannot connect: {os_error.strerror or os_error}"
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__).replace("\n", " ")


def run_bench(settings: BenchSettings, on_level: Callable[[LevelResult], None] | None = None) -> BenchResult:
    """Measure every level of ``settings`` against the live endpoint; PlannerError when it cannot start.

    ``on_level`` (if given) gets each level's result as soon as it is measured (the CLI's progress line)."""
    import datetime
    from importlib.metadata import version

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    model, words, levels = asyncio.run(_Driver(settings, on_level).run())
    return BenchResult(settings=settings, model=model, words_per_prompt=words, levels=tuple(levels),
                       started_at=started, load_generator=f"aiohttp {version('aiohttp')} (plan bench driver)")
