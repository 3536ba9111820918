"""Placeholder until the pricing package lands: ``plan`` shows the memory estimate only."""
from __future__ import annotations


def price_request(est, **options):  # noqa: ANN001 - replaced by the pricing implementation
    return None
