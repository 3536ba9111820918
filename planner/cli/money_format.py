"""Digit grouping for amounts in a currency the user chose with --currency.

Hand-written because the one library that knows every locale's grouping (babel) is not a dependency
of `plan`, and the one grouping the founding notes need differs from Python's ``,`` format spec.
"""
from __future__ import annotations

# Currencies whose amounts are conventionally written in the Indian numbering system.
INDIAN_GROUPING = frozenset({"INR"})


def indian_grouping(amount: float, decimals: int = 2) -> str:
    """``1970000`` -> ``'19,70,000.00'``: the Indian numbering system (lakh = 1,00,000; crore = 1,00,00,000).

    The last three digits of the whole part form one group, every group above them has two digits
    (Unicode CLDR's ``#,##,##0.###`` pattern for the en_IN / hi_IN locales; Reserve Bank of India
    notes and Indian rupee price tags are written so). Rounding is Python's, as ``f"{x:.2f}"``.
    """
    text = f"{abs(amount):.{decimals}f}"
    whole, dot, frac = text.partition(".")
    head, groups = whole[:-3], [whole[-3:]]
    while head:
        groups.insert(0, head[-2:])
        head = head[:-2]
    sign = "-" if text.strip("0.") and amount < 0 else ""
    return sign + ",".join(groups) + dot + frac


def group_amount(amount: float, code: str, decimals: int = 2) -> str:
    """An amount in currency ``code``: Indian grouping for INR, else thousands grouping (1,234,567.89)."""
    if code.upper() in INDIAN_GROUPING:
        return indian_grouping(amount, decimals)
    return f"{amount:,.{decimals}f}"
