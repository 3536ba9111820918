"""The batch scheduler: requests that arrive together are generated together, whatever adapter each names.

One scheduler thread owns the model. It waits for a first sequence, collects more for up to
``window_s`` (or until ``max_batch_size``), then runs them as one batch: a left-padded prefill and
one batched forward per new token, every row with its own adapter (PEFT's mixed-adapter batch,
``adapter_names=`` per row, ``"__base__"`` for the base), its own sampling parameters and its own
stop conditions. Finished rows leave the batch (their KV-cache rows are dropped). Sequences that
arrive during a batch wait for the next one: static batching, not vLLM's continuous batching;
simple, and it is what makes 16 concurrent clients several times faster than one.

Events go back through each sequence's ``sink`` (called on this thread): ``Token`` per generated
token, then ``Finish``; or one ``Failure``.
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .host import AdapterHost
from .protocol import ApiError, SamplingParams
from .sampling import RowSampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float


@dataclass(frozen=True)
class Token:
    """One generated token: its text delta (held back while it may start a stop string)."""

    index: int
    text: str
    token: str
    logprob: float | None = None
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class Finish:
    index: int
    reason: str          # "stop" (EOS or a stop string) or "length"
    text: str            # held-back text released at the end ("" usually)
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Failure:
    index: int
    error: ApiError


Event = Token | Finish | Failure


@dataclass
class Sequence:
    """One choice to generate: an adapter row name, prompt ids, sampling, and where events go."""

    index: int
    model: str
    prompt_ids: list[int]
    params: SamplingParams
    sink: Callable[[Event], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    arrived: float = field(default_factory=time.monotonic)


class _Row:
    """Decoding state of one sequence inside a running batch."""

    def __init__(self, seq: Sequence) -> None:
        self.seq, self.ids, self.emitted, self.text = seq, [], 0, ""

    def held_back(self) -> int:
        """Characters at the end of the text that might be the start of a stop string."""
        best = 0
        for stop in self.seq.params.stop:
            for k in range(min(len(stop) - 1, len(self.text)), 0, -1):
                if self.text.endswith(stop[:k]):
                    best = max(best, k)
                    break
        return best


class BatchScheduler:
    """Collects sequences and generates them in batches on one thread; ``close()`` stops it."""

    def __init__(self, host: AdapterHost, *, max_batch_size: int = 32, window_s: float = 0.002) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.host, self.max_batch_size, self.window_s = host, max_batch_size, max(0.0, window_s)
        self._queue: collections.deque[Sequence] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batch_sizes: collections.Counter[int] = collections.Counter()  # for tests and the benchmark
        import torch

        self._fallback = torch.Generator()
        self._fallback.seed()
        self._thread = threading.Thread(target=self._loop, name="plan-serve-batches", daemon=True)
        self._thread.start()

    def submit(self, seqs: list[Sequence]) -> None:
        with self._cv:
            if self._closed:
                raise ApiError(503, "the server is shutting down", kind="server_error")
            self._queue.extend(seqs)
            self._cv.notify()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=30)

    # ---- the loop -------------------------------------------------------------------------

    def _take(self) -> list[Sequence] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if self._closed:
                return None
            deadline = self._queue[0].arrived + self.window_s
            while len(self._queue) < self.max_batch_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            n = min(self.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._run(batch)
            except Exception as exc:  # a bug: fail this batch's requests, keep serving
                log.exception("batch failed")
                for seq in batch:
                    _send(seq, Failure(seq.index, ApiError(500, f"internal error: {type(exc).__name__}",
                                                           kind="server_error")))

    def _run(self, batch: list[Sequence]) -> None:
        import torch

        host = self.host
        with host.lock, torch.inference_mode():
            rows, names = self._admit(batch)
            if not rows:
                return
            self.batch_sizes[len(rows)] += 1
            with host.batch_adapters(names) as mixed:
                self._generate(rows, names, mixed)

    def _admit(self, batch: list[Sequence]) -> tuple[list["_Row"], list[str]]:
        """The rows to run (cancelled ones dropped, unknown models failed) and their adapter names."""
        rows, names = [], []
        for seq in batch:
            if seq.cancelled.is_set():
                continue
            try:
                names.append(self.host.row_name(seq.model))
            except ApiError as err:
                _send(seq, Failure(seq.index, err))
                continue
            rows.append(_Row(seq))
        return rows, names

    def _generate(self, rows: list["_Row"], names: list[str], mixed: bool) -> None:
        """Prefill, then one batched forward per token until every row has finished."""
        import torch

        host = self.host
        device = host.device
        width = max(len(r.seq.prompt_ids) for r in rows)
        ids = torch.tensor([[host.pad_id] * (width - len(r.seq.prompt_ids)) + r.seq.prompt_ids for r in rows],
                           device=device)
        mask = torch.tensor([[0] * (width - len(r.seq.prompt_ids)) + [1] * len(r.seq.prompt_ids) for r in rows],
                            device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = host.forward(ids, mask, positions, None, names if mixed else None)
        sampler = RowSampler.build([r.seq.params for r in rows], logits.shape[-1], device, self._fallback)
        want_top = max((r.seq.params.logprobs or 0 for r in rows if r.seq.params.logprobs is not None),
                       default=None)
        for _ in itertools.count():
            tokens = sampler.choose(logits)
            logp = torch.log_softmax(logits.float(), dim=-1) if want_top is not None else None
            keep = [i for i, row in enumerate(rows) if self._advance(row, int(tokens[i]), logp, i)]
            if not keep:
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                sampler.select(index, keep)
                rows, names = [rows[i] for i in keep], [names[i] for i in keep]
                tokens, mask, positions = tokens[index], mask[index], positions[index]
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            logits, cache = host.forward(tokens[:, None], mask, positions, cache, names if mixed else None)

    def _advance(self, row: _Row, token: int, logp: Any, i: int) -> bool:
        """Take ``token`` for ``row``; send its events; True while the row goes on."""
        seq, host = row.seq, self.host
        if seq.cancelled.is_set():
            return False
        prompt_n = len(seq.prompt_ids)
        if token in host.eos_ids:
            return self._finish(row, "stop", prompt_n)
        row.ids.append(token)
        row.text = host.decode(row.ids)
        cut = min((p for p in (row.text.find(s) for s in seq.params.stop) if p >= 0), default=-1)
        end = cut if cut >= 0 else len(row.text) - row.held_back()
        if row.text.endswith("\ufffd") and cut < 0:  # half of a multi-byte character: wait for the rest
            end = min(end, len(row.text) - 1)
        delta, row.emitted = row.text[row.emitted:max(end, row.emitted)], max(end, row.emitted)
        chosen, top = None, ()
        if seq.params.logprobs is not None and logp is not None:
            chosen = float(logp[i, token])
            if seq.params.logprobs:
                values, idx = logp[i].topk(seq.params.logprobs)
                top = tuple(TopLogprob(host.token_text(int(t)), float(v)) for v, t in zip(values, idx))
        _send(seq, Token(seq.index, delta, host.token_text(token), chosen, top))
        if cut >= 0:
            row.text = row.text[:cut]
            return self._finish(row, "stop", prompt_n)
        if len(row.ids) >= seq.params.max_tokens or prompt_n + len(row.ids) >= host.context:
            return self._finish(row, "length", prompt_n)
        return True

    def _finish(self, row: _Row, reason: str, prompt_n: int) -> bool:
        tail = row.text[row.emitted:]  # what was held back (after a stop string's cut: nothing)
        _send(row.seq, Finish(row.seq.index, reason, tail, prompt_n, len(row.ids)))
        return False


def _send(seq: Sequence, event: Event) -> None:
    try:
        seq.sink(event)
    except Exception:  # the client's event loop is gone (server stopping): nothing to tell
        seq.cancelled.set()
