"""Human units: exact renderings of fixed-point integers (no float on the way)."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.markets import DEMO_MARKETS
from projections.units import (
    Fmt,
    decimal,
    index,
    market_units,
    ppm,
    price,
    size,
    units_from_listings,
    usd,
)

BTC = market_units("BTC-PERP", DEMO_MARKETS[0].params)
PAXG = market_units("PAXG-PERP", DEMO_MARKETS[3].params)


def test_the_issue_figures_read_as_a_person_reads_them() -> None:
    # `audit account u00012` printed `size (bq) 1,637,000,000` and `mark (st) 4,990,297,051`
    assert size(1_637_000_000, BTC) == "0.1637 BTC"
    assert price(4_990_297_051, BTC) == "$49,902.97051"
    assert usd(35_220_292_067) == "$35,220.292067"
    assert usd(-1_234_560_000) == "-$1,234.56"
    assert usd(0) == "$0.00" and usd(1) == "$0.000001"
    assert size(-17_831_000_000, PAXG) == "-17.831 PAXG"
    assert ppm(100) == "0.01%" and ppm(-50_000) == "-5.00%"


def test_funding_index_reads_as_cumulative_dollars_per_coin() -> None:
    # BTC lists with 600e9 (qq per bq x 1e12): 600e9 / 1e12 qq/bq * 1e10 bq/BTC = 6e9 qq
    assert index(600_000_000_000, BTC) == "$6,000.00"
    assert index(480_001_073_312, PAXG) == "$480.001073312"
    assert index(0, PAXG) == "$0.00"


@given(st.integers(min_value=-10**30, max_value=10**30), st.integers(min_value=-20, max_value=6))
def test_decimal_is_exact(n: int, exp: int) -> None:
    text = decimal(n, exp)
    assert Decimal(text.replace(",", "")) == Decimal(n).scaleb(exp, Context(prec=80))


def test_decimal_refuses_floats() -> None:
    with pytest.raises(TypeError):
        decimal(1.5, 0)  # type: ignore[arg-type]


def test_fmt_raw_shows_quanta_and_names_the_unit() -> None:
    units = units_from_listings([{"payload": {"mkt": "BTC-PERP", "params": {
        "atomic_resolution": -10, "qce": -9}}}])
    human, raw = Fmt(units), Fmt(units, raw=True)
    assert human.size(1_637_000_000, "BTC-PERP") == "0.1637 BTC"
    assert raw.size(1_637_000_000, "BTC-PERP") == "1,637,000,000"
    assert human.head("size", "bq") == "size" and raw.head("size", "bq") == "size (bq)"
    assert human.price(None, "BTC-PERP") == ""
    # an unknown market renders raw rather than guessing its exponents
    assert human.size(5, "XYZ-PERP") == "5"
