"""A replay of PyTorch's CUDA caching allocator: what ``torch.cuda.max_memory_reserved()`` shows
after a given sequence of allocations and frees.

Rules (c10/cuda/CUDACachingAllocator.cpp; "CUDA memory management" in PyTorch's CUDA semantics
notes; E. Yang, "When does fragmentation occur in the CUDA caching allocator?", pytorch/devlogs
2026-06-01):

- every request is rounded up to a multiple of 512 B (``kMinBlockSize``);
- requests of at most 1 MiB (``kSmallSize``) live in the small pool, whose segments are 2 MiB
  (``kSmallBuffer``); larger ones live in the large pool;
- a large-pool request below 10 MiB (``kMinLargeAlloc``) that no cached block serves gets a
  20 MiB segment (``kLargeBuffer``); larger ones get a segment rounded up to 2 MiB (``kRoundLarge``);
- a request takes the smallest free cached block of its pool that is big enough (best fit,
  lowest address on ties); the block is split when the remainder is >= 512 B (small pool) or
  > 1 MiB (large pool), else the request keeps the whole block;
- a freed block merges with free neighbours of the same segment only; segments are never
  returned to the driver during a run without memory pressure (no ``empty_cache``), so the
  reserved figure only grows;
- ``max_split_size_mb`` (default unlimited): blocks at least that large are never split for a
  smaller request;
- ``expandable_segments:True``: one segment per pool that grows by pages (2 MiB small, 20 MiB
  large) mapped at its end; blocks anywhere in it can merge, so only live-block pinning
  fragments it.

Pure Python, no torch: the planner runs this on ``plan``'s path.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

MIB = 1024**2
MIN_BLOCK = 512
SMALL_SIZE = 1 * MIB
SMALL_BUFFER = 2 * MIB
LARGE_BUFFER = 20 * MIB
MIN_LARGE_ALLOC = 10 * MIB
ROUND_LARGE = 2 * MIB
POLICIES = ("caching", "expandable")


def round_size(size: int) -> int:
    return MIN_BLOCK if size < MIN_BLOCK else -(-size // MIN_BLOCK) * MIN_BLOCK


def segment_size(size: int) -> int:
    """Bytes cudaMalloc'd for a request no cached block serves (get_allocation_size)."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


@dataclass(frozen=True)
class AllocatorReplay:
    """Result of replaying a trace: the reserved peak and the allocated peak it saw."""

    policy: str
    reserved_bytes: int
    peak_allocated_bytes: int
    segments: int

    def to_dict(self) -> dict:
        return {"policy": self.policy, "reserved_bytes": self.reserved_bytes,
                "peak_allocated_bytes": self.peak_allocated_bytes, "segments": self.segments}


class _Block:
    __slots__ = ("free", "next", "offset", "prev", "seg", "size")

    def __init__(self, seg: int, offset: int, size: int):
        self.seg, self.offset, self.size, self.free = seg, offset, size, True
        self.prev: _Block | None = None
        self.next: _Block | None = None


class _Pool:
    """One pool's segments. Free blocks sit in one sorted list of (size, segment, offset, block):
    best fit is a bisection, ties go to the lowest address, as in the allocator's BlockComparator."""

    def __init__(self, small: bool, expandable: bool, max_split: int | None):
        self.small, self.expandable = small, expandable
        self.max_split = None if expandable else max_split  # expandable segments ignore max_split_size
        self.free: list[tuple[int, int, int, _Block]] = []
        self.reserved = 0
        self.segments = 0
        self.tail: _Block | None = None  # expandable: last block of the one segment
        self.min_rest = MIN_BLOCK if small else SMALL_SIZE + 1  # smallest remainder that is split off

    def _add_free(self, b: _Block) -> None:
        b.free = True
        bisect.insort(self.free, (b.size, b.seg, b.offset, b))

    def _remove_free(self, b: _Block) -> None:
        del self.free[bisect.bisect_left(self.free, (b.size, b.seg, b.offset))]

    def _find(self, size: int) -> _Block | None:
        free = self.free
        i = bisect.bisect_left(free, (size,))
        if i == len(free):
            return None
        if self.max_split is None:
            return free[i][3]
        while i < len(free):
            b = free[i][3]
            # oversize blocks serve only oversize requests, and not much smaller ones
            if size < self.max_split <= b.size:
                i += 1
                continue
            if size >= self.max_split and b.size >= size + LARGE_BUFFER:
                return None
            return b
        return None

    def _grow(self, size: int) -> _Block:
        if not self.expandable:
            seg = segment_size(size)
            self.reserved += seg
            self.segments += 1
            return _Block(self.segments, 0, seg)
        page = SMALL_BUFFER if self.small else LARGE_BUFFER
        if self.segments == 0:
            self.segments = 1
        tail = self.tail
        have = tail.size if tail is not None and tail.free else 0
        extra = -(-(size - have) // page) * page
        self.reserved += extra
        if have:
            self._remove_free(tail)
            tail.size += extra
            return tail
        offset = tail.offset + tail.size if tail is not None else 0
        b = _Block(1, offset, extra)
        b.prev = tail
        if tail is not None:
            tail.next = b
        self.tail = b
        return b

    def malloc(self, size: int) -> _Block:
        b = self._find(size)
        if b is not None:
            del self.free[bisect.bisect_left(self.free, (b.size, b.seg, b.offset))]
        else:
            b = self._grow(size)
        b.free = False
        rest_size = b.size - size
        if rest_size >= self.min_rest and (self.max_split is None or b.size < self.max_split or self.small):
            rest = _Block(b.seg, b.offset + size, rest_size)
            nxt = b.next
            rest.prev, rest.next = b, nxt
            if nxt is not None:
                nxt.prev = rest
            b.next = rest
            if self.tail is b:
                self.tail = rest
            b.size = size
            bisect.insort(self.free, (rest_size, rest.seg, rest.offset, rest))
        return b

    def release(self, b: _Block) -> None:
        free = self.free
        prev, nxt = b.prev, b.next
        if prev is not None and prev.free:
            del free[bisect.bisect_left(free, (prev.size, prev.seg, prev.offset))]
            prev.size += b.size
            prev.next = nxt
            if nxt is not None:
                nxt.prev = prev
            if self.tail is b:
                self.tail = prev
            b = prev
        if nxt is not None and nxt.free:
            del free[bisect.bisect_left(free, (nxt.size, nxt.seg, nxt.offset))]
            b.size += nxt.size
            b.next = nxt.next
            if nxt.next is not None:
                nxt.next.prev = b
            if self.tail is nxt:
                self.tail = b
        b.free = True
        bisect.insort(free, (b.size, b.seg, b.offset, b))


def replay(events: Iterable[tuple[str, int, int]], policy: str = "caching",
           max_split_size: int | None = None) -> AllocatorReplay:
    """Replay ``events``: ("alloc", id, bytes), ("free", id, 0) and ("reset", 0, 0) (like
    ``torch.cuda.reset_peak_memory_stats``: the allocated peak restarts; reserved never shrinks)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown allocator policy {policy!r}")
    expandable = policy == "expandable"
    small, large = _Pool(True, expandable, max_split_size), _Pool(False, expandable, max_split_size)
    live: dict[int, tuple[_Pool, _Block, int]] = {}
    allocated = peak = 0
    for op, key, size in events:
        if op == "alloc":
            r = MIN_BLOCK if size < MIN_BLOCK else -(-size // MIN_BLOCK) * MIN_BLOCK
            pool = small if r <= SMALL_SIZE else large
            block = pool.malloc(r)
            live[key] = (pool, block, block.size)
            allocated += block.size
            if allocated > peak:
                peak = allocated
        elif op == "reset":
            peak = allocated
        else:
            pool, block, size = live.pop(key)
            allocated -= size
            pool.release(block)
    return AllocatorReplay(policy, small.reserved + large.reserved, peak, small.segments + large.segments)


class Trace:
    """Builds an event list: ``t = Trace(); a = t.alloc(n); t.free(a)``."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []
        self._next = 0

    def alloc(self, size: int) -> int:
        self._next += 1
        self.events.append(("alloc", self._next, max(int(size), 1)))
        return self._next

    def reset_peak(self) -> None:
        self.events.append(("reset", 0, 0))

    def free(self, *keys: int) -> None:
        for k in keys:
            self.events.append(("free", k, 0))


ALLOC_CONF_VAR = "PYTORCH_CUDA_ALLOC_CONF"


def allocator_env(policy: str, current: str | None = None) -> dict[str, str]:
    """The environment a run needs for the allocator policy the plan modelled (``--allocator``):
    ``expandable`` is PyTorch's ``expandable_segments:True`` (torch.cuda memory-management docs),
    added to the user's own ``current`` options unless they already say expandable_segments;
    ``caching`` is the default and sets nothing. The backends add this to the trainer's environment."""
    if policy != "expandable" or (current and "expandable_segments" in current):
        return {}
    return {ALLOC_CONF_VAR: ",".join(o for o in (current, "expandable_segments:True") if o)}
