"""Integer fixed-point helpers: the only places the core rounds (SPEC section 1).

Every money, size and price value is a Python int in the units of SPEC 1
(qq, bq, st, ppm). Rounding happens here and nowhere else, so each rounding
direction is named at its call site.
"""

from __future__ import annotations

PPM = 10**6
#: Funding index scale (qq per bq x S).
S = 10**12


def floor_div(a: int, b: int) -> int:
    """Floor of a / b (b > 0)."""
    return a // b


def ceil_div(a: int, b: int) -> int:
    """Ceiling of a / b (b > 0)."""
    return -((-a) // b)


def trunc_div(a: int, b: int) -> int:
    """a / b truncated toward zero (b > 0)."""
    q = abs(a) // b
    return q if a >= 0 else -q


_POW10: list[int] = [10**i for i in range(64)]


def pow10_neg(qce: int) -> int:
    """10^-qce, the divisor turning size x subticks into quote quanta (qce <= 0)."""
    return _POW10[-qce]


def value(q: int, p: int, qce: int) -> int:
    """Quote value of q bq at p st: floor(q*p / 10^-qce), never in the holder's favour."""
    return (q * p) // _POW10[-qce]


def clamp(x: int, lo: int, hi: int) -> int:
    """x limited to [lo, hi]."""
    return lo if x < lo else hi if x > hi else x


def median3(a: int, b: int, c: int) -> int:
    """The middle one of three integers."""
    if a > b:
        a, b = b, a
    if b > c:
        b = c
    return a if a > b else b


def tick_up(p: int, tick: int) -> int:
    """Smallest multiple of tick that is >= p."""
    return ceil_div(p, tick) * tick


def tick_down(p: int, tick: int) -> int:
    """Largest multiple of tick that is <= p."""
    return (p // tick) * tick


def fee_amount(v: int, fee_ppm: int) -> int:
    """Fee charged on a fill of value v >= 0: ceil for fees, floor of the magnitude for rebates.

    A positive result is paid by the trader to FEES, a negative one is a rebate
    paid by FEES; both roundings are against the trader.
    """
    if fee_ppm >= 0:
        return ceil_div(v * fee_ppm, PPM)
    return -((v * -fee_ppm) // PPM)
