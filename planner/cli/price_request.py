"""Glue between ``plan MODEL`` and the pricing core: check the options, load the catalog, count
tokens (backend/tokens.py), price, and show the warnings on stderr. Pure logic lives in
pricing/catalog, fit, choose and costs."""
from __future__ import annotations

import math
import re

from planner.errors import PlannerError

from pricing.catalog import load_catalog
from pricing.costs import Money, PlanCosts, plan_costs
from pricing.regions import ANY

from .output import warn
from .validate import RULES, check_number

PLATFORM_CHOICES = ("ec2", "sagemaker", "any")
TOKEN_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9, "t": 10**12}


def parse_tokens(text: str | int | None) -> int | None:
    """``--tokens``: 50000000, 50,000,000, 50M, 2B, 1.5e9, 10k (SI suffixes, case-insensitive); whole and positive."""
    if text is None or isinstance(text, int):
        return text
    text = str(text)
    plain = text.replace("_", "")
    if "," in plain:
        # A comma is only a thousands separator (50,000,000); "1,5" could mean 1.5 or 15, so it is refused.
        grouped = re.fullmatch(r"\s*[+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?\s*[kmbgt]?\s*", plain, re.I)
        plain = plain.replace(",", "") if grouped else "?"
    m = re.fullmatch(r"\s*([+-]?[0-9]*\.?[0-9]+(?:e[+]?[0-9]+)?)\s*([kmbgt]?)\s*", plain, re.I)
    if m is None:
        raise PlannerError(f"--tokens must be a positive number of tokens such as 50000000, 50M, 2B or 1.5e9, "
                           f"got '{text}'")
    value = float(m.group(1)) * TOKEN_SUFFIXES[m.group(2).lower()]
    if not math.isfinite(value) or value < 1:
        raise PlannerError(f"--tokens must be a positive integer (training tokens per epoch), got '{text}'")
    tokens = int(round(value))
    check_number("--tokens", tokens, RULES["--tokens"])  # a string flag, so check_flags does not see it
    return tokens


def check_options(*, platform: str, max_gpus: int | None, tokens: int | None, epochs: float) -> None:
    if platform not in PLATFORM_CHOICES:
        raise PlannerError(f"unknown platform '{platform}'; choose ec2, sagemaker or any")
    if max_gpus is not None and max_gpus <= 0:
        raise PlannerError(f"--max-gpus must be a positive integer, got {max_gpus}")
    if tokens is not None and tokens <= 0:
        raise PlannerError(f"--tokens must be a positive integer (training tokens per epoch), got {tokens}")
    if not math.isfinite(epochs) or epochs <= 0:
        raise PlannerError(f"--epochs must be a positive number, got {epochs}")


def price_request(est, *, platform: str = "any", region: str = "us-east-1", spot: bool = False,
                  gpu: str | None = None, max_gpus: int | None = None, tokens: str | int | None = None,
                  dataset: str | None = None, epochs: float = 1.0, currency: str | None = None,
                  usd_rate: float | None = None, objective: str | None = None, max_hours: float | None = None,
                  max_cost: float | None = None) -> PlanCosts | None:
    """Price ``est`` as the ``plan`` flags ask; warnings go to stderr, the result to the caller."""
    tokens = parse_tokens(tokens)
    check_options(platform=platform, max_gpus=max_gpus, tokens=tokens, epochs=epochs)
    money = Money.parse(currency, usd_rate)
    catalog = load_catalog()
    if region != ANY:
        catalog.check_region(region)
    notes: list[str] = []
    source = "--tokens" if tokens is not None else None
    if tokens is not None and dataset:
        notes.append("--tokens given: --dataset is not counted")
    elif dataset and est.job.is_training:
        from backend.tokens import count_dataset_tokens
        counted = count_dataset_tokens(dataset, hf_id=est.model.hf_id, source=est.model.source,
                                       seq_len=est.job.seq_len)
        tokens, source = counted.tokens, f"--dataset ({counted.method})"
        notes.append(counted.note)
    if gpu is not None:
        if objective is not None or max_hours is not None or spot or region == ANY:
            used = [f for f, v in (("--objective", objective), ("--max-hours", max_hours), ("--spot", spot),
                                   ("--region any", region == ANY)) if v]
            raise PlannerError(f"{', '.join(used)}: rank cloud machines and do not apply to --gpu (your own GPU); "
                               "drop them or drop --gpu")
        from pricing.localgpu import local_costs
        costs = local_costs(est, catalog, gpu, tokens=tokens, tokens_source=source, epochs=epochs, money=money,
                            notes=tuple(notes))
    else:
        costs = plan_costs(est, catalog, platform=platform, region=region, spot=spot, max_gpus=max_gpus,
                           tokens=tokens, tokens_source=source, epochs=epochs, money=money, notes=tuple(notes),
                           objective=objective, max_hours=max_hours, max_cost=max_cost)
    for line in costs.warnings:
        warn(line)
    return costs
