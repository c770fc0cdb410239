"""The rounding helpers equal their SPEC definitions on every integer, big or small.

Each is checked against the floor-division formula it is written as (which the
compiled core must keep on ints beyond 64 bits) and against an independent
oracle: exact rationals (`fractions.Fraction`) rounded by `math.floor`,
`math.ceil` and `math.trunc`.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.fixedpoint import ceil_div, fee_amount, trunc_div, value

BIG = st.integers(-(10**30), 10**30)


@settings(max_examples=500, deadline=None)
@given(q=BIG, p=BIG, qce=st.integers(-18, 0))
def test_value_is_the_floor_of_q_times_p_over_ten_to_minus_qce(q: int, p: int, qce: int) -> None:
    assert value(q, p, qce) == (q * p) // 10 ** (-qce)
    assert value(q, p, qce) == math.floor(Fraction(q * p, 10 ** (-qce)))


@settings(max_examples=300, deadline=None)
@given(a=BIG, b=st.integers(1, 10**18))
def test_ceil_and_trunc_division(a: int, b: int) -> None:
    assert ceil_div(a, b) == -((-a) // b) and ceil_div(a, b) * b >= a
    assert ceil_div(a, b) == math.ceil(Fraction(a, b))
    t = trunc_div(a, b)
    assert abs(t) == abs(a) // b and (t >= 0) == (a >= 0 or t == 0)
    assert t == math.trunc(Fraction(a, b))


@settings(max_examples=300, deadline=None)
@given(v=st.integers(0, 10**20), fee=st.integers(-10**6, 10**6))
def test_fees_round_against_the_trader(v: int, fee: int) -> None:
    got = fee_amount(v, fee)
    exact = v * fee
    assert got * 10**6 >= exact  # a fee rounds up, a rebate's magnitude down
    assert got * 10**6 - exact < 10**6
    assert got == math.ceil(Fraction(exact, 10**6))  # rounds up, whatever the sign
