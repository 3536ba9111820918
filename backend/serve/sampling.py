"""Next-token choice for a batch whose rows each have their own sampling parameters.

Vectorized over rows: penalties, temperature, top-p, then inverse-CDF sampling with one uniform
number per row. Each row draws its uniform from its own ``torch.Generator`` when the request
gave a ``seed``, so a seeded reply does not depend on what else shares the batch.

Penalties as the OpenAI API defines them (https://platform.openai.com/docs/advanced-usage,
"frequency and presence penalties"): ``logit[j] -= count[j] * frequency + (count[j] > 0) * presence``
over the tokens generated so far.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .protocol import SamplingParams


@dataclass
class RowSampler:
    """Per-row sampling state for one batch (tensors are [rows] or [rows, vocab])."""

    temperature: Any
    top_p: Any
    greedy: Any
    presence: Any
    frequency: Any
    counts: Any | None          # generated-token counts, only when some row has a penalty
    generators: list[Any]       # one torch.Generator per row

    @classmethod
    def build(cls, params: list[SamplingParams], vocab: int, device: Any, fallback: Any) -> "RowSampler":
        import torch

        def col(values: list[float]) -> Any:
            return torch.tensor(values, dtype=torch.float32, device=device)

        gens = []
        for p in params:
            if p.seed is None:
                gens.append(fallback)
            else:
                g = torch.Generator()
                g.manual_seed(p.seed)
                gens.append(g)
        penalised = any(p.presence_penalty or p.frequency_penalty for p in params)
        return cls(temperature=col([max(p.temperature, 1e-5) for p in params]),
                   top_p=col([p.top_p for p in params]),
                   greedy=torch.tensor([p.greedy for p in params], device=device),
                   presence=col([p.presence_penalty for p in params]),
                   frequency=col([p.frequency_penalty for p in params]),
                   counts=torch.zeros(len(params), vocab, device=device) if penalised else None,
                   generators=gens)

    def select(self, keep: Any, keep_list: list[int]) -> None:
        """Keep only the rows ``keep`` (a tensor of indices; ``keep_list`` the same as a list)."""
        self.temperature, self.top_p, self.greedy = self.temperature[keep], self.top_p[keep], self.greedy[keep]
        self.presence, self.frequency = self.presence[keep], self.frequency[keep]
        if self.counts is not None:
            self.counts = self.counts[keep]
        self.generators = [self.generators[i] for i in keep_list]

    def choose(self, logits: Any) -> Any:
        """Token ids [rows] for the last-position ``logits`` [rows, vocab]."""
        import torch

        x = logits.float()
        if self.counts is not None:
            x = x - self.counts * self.frequency[:, None] - (self.counts > 0).float() * self.presence[:, None]
        tokens = x.argmax(dim=-1)
        if not bool(self.greedy.all()):
            probs = torch.softmax(x / self.temperature[:, None], dim=-1)
            sorted_p, order = probs.sort(dim=-1, descending=True)
            cum = sorted_p.cumsum(dim=-1)
            sorted_p = sorted_p.masked_fill(cum - sorted_p >= self.top_p[:, None], 0.0)  # top-p nucleus
            cum = sorted_p.cumsum(dim=-1)
            u = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(cum.device)
            pick = torch.searchsorted(cum, (u * cum[:, -1])[:, None]).clamp(max=cum.shape[1] - 1)
            sampled = order.gather(1, pick).squeeze(1)
            tokens = torch.where(self.greedy, tokens, sampled)
        if self.counts is not None:
            self.counts.scatter_add_(1, tokens[:, None], torch.ones_like(tokens[:, None], dtype=self.counts.dtype))
        return tokens
