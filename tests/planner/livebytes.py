"""A CPU stand-in for torch.cuda.max_memory_allocated: counts the bytes of live tensor storages
(rounded to 512 B like the CUDA caching allocator) as ops create and free them.

Used to check the memory model's mechanisms (what autograd saves, when it frees) on real
transformers/PEFT code without a GPU. No mock: every tensor is a real one.
"""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    def __init__(self, existing=()):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        for t in existing:  # parameters and buffers allocated before tracking
            self._add(t)

    def _add(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self.live:  # views share their base's storage
            return
        size = (storage.nbytes() + 511) // 512 * 512
        self.live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._add(t)
        return out
