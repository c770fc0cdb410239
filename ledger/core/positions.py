"""Position arithmetic of SPEC 4 (lazy funding settlement) and SPEC 5 (fills).

Pure functions on integers, shared by decide (to compute event payloads) and
evolve (to apply them), so both sides do the identical integer work.
"""

from __future__ import annotations

from ledger.core.fixedpoint import S, trunc_div


def fill_realized(size: int, cost: int, q: int, v: int) -> int:
    """Realized P&L of applying (q, v) to a position (size, cost) (SPEC 5).

    Opening or adding realizes nothing. Reducing or flipping closes
    c = min(|q|, |size|) with cr = tr(cost*c, |size|), vc = tr(v*c, |q|) and
    realizes -(vc + cr). The new cost is then cost + v + realized, so that
    `balance - cost` moves by exactly -v under any rounding.
    """
    if size == 0 or (size > 0) == (q > 0):
        return 0
    aq = q if q > 0 else -q
    asz = size if size > 0 else -size
    c = aq if aq < asz else asz
    return -(trunc_div(v * c, aq) + trunc_div(cost * c, asz))


def funding_due(size: int, index: int, idx: int) -> tuple[int, int]:
    """(pay, dust) of settling a position at index I (SPEC 4).

    x = -size*(I - idx); pay = fl(x, S) moves to the balance; dust = x - pay*S
    (in [0, S)) goes to the funding_dust ledger, so conservation stays exact.
    """
    x = -size * (index - idx)
    pay = x // S
    return pay, x - pay * S


def pending_funding(size: int, index: int, idx: int) -> int:
    """Unsettled funding valued as fl(-size*(I - idx), S)."""
    return (-size * (index - idx)) // S
