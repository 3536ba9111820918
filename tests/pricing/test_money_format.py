"""Indian digit grouping (lakh / crore) checked against an arithmetic formulation of the same rule."""
from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from planner.cli.money_format import group_amount, indian_grouping


def _oracle(amount: float) -> str:
    """Independent: whole rupees split by divmod (1000 once, then 100s), never by slicing text."""
    cents = int((Decimal(repr(abs(amount))) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    whole, paise = divmod(cents, 100)
    whole, low = divmod(whole, 1000)
    parts = [f"{low:03d}" if whole else str(low)]
    while whole:
        whole, two = divmod(whole, 100)
        parts.insert(0, f"{two:02d}" if whole else str(two))
    sign = "-" if amount < 0 and cents else ""
    return f"{sign}{','.join(parts)}.{paise:02d}"


def test_known_amounts():
    assert indian_grouping(1_970_000) == "19,70,000.00"  # the founding notes' 19.7 lakh
    assert indian_grouping(10_000_000) == "1,00,00,000.00"  # one crore
    assert indian_grouping(999.5) == "999.50"
    assert indian_grouping(-123_456.789) == "-1,23,456.79"
    assert group_amount(1_970_000, "inr") == "19,70,000.00"
    assert group_amount(1_970_000, "EUR") == "1,970,000.00"


@given(st.integers(min_value=-10**15, max_value=10**15).map(lambda c: c / 100))
def test_matches_arithmetic_oracle(amount):
    assert indian_grouping(amount) == _oracle(amount)


@given(st.floats(min_value=0, max_value=1e12, allow_nan=False))
def test_same_digits_as_plain_format(amount):
    assert indian_grouping(amount).replace(",", "") == f"{amount:.2f}"
