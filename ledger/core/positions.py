"""Position arithmetic of SPEC 4 (lazy funding settlement) and SPEC 5 (fills): the one place.

Pure functions on integers, shared by decide (to compute event payloads), evolve
(to apply them) and margin (to value positions), so every side does the identical
integer work. Signs, as dYdX writes them in perpetuals/lib/lib.go:

- `size` is signed: > 0 long, < 0 short (bq).
- `cost` is the signed quote paid into the position (Paradex's Position Cost):
  a long's cost is > 0, a short's < 0, so `value - cost` is its unrealized P&L.
- A fill (q, v) is signed the same way: the buyer applies (+k, +v), the seller
  (-k, -v) of the same integers, so what one gains the other loses exactly.
- The funding index I accrues what a LONG pays per bq (x S): when I rises, longs
  pay and shorts receive. A position settled at `idx` owes -size*(I - idx)/S.
"""

from __future__ import annotations

from ledger.core.fixedpoint import S, trunc_div


def fill_realized(size: int, cost: int, q: int, v: int) -> int:
    """Realized P&L of applying (q, v) to a position (size, cost) (SPEC 5).

    Opening or adding realizes nothing. Reducing or flipping closes
    c = min(|q|, |size|) with cr = tr(cost*c, |size|), vc = tr(v*c, |q|) and
    realizes -(vc + cr): the closed part's cost comes back, its value goes out.
    The new cost is then cost + v + realized, so that `balance - cost` moves by
    exactly -v under any rounding (`apply_fill`).
    """
    if size == 0 or (size > 0) == (q > 0):
        return 0
    aq = q if q > 0 else -q
    asz = size if size > 0 else -size
    c = aq if aq < asz else asz
    return -(trunc_div(v * c, aq) + trunc_div(cost * c, asz))


def apply_fill(size: int, cost: int, q: int, v: int) -> tuple[int, int, int]:
    """(new size, new cost, realized) of applying fill (q, v) to (size, cost) (SPEC 5).

    The realized P&L moves from the position's cost to the balance, so balance
    minus cost moves by exactly -v: an account's value after a fill never
    depends on how the realized part was rounded.
    """
    r = fill_realized(size, cost, q, v)
    return size + q, cost + v + r, r


def funding_x(size: int, index: int, idx: int) -> int:
    """x = -size*(I - idx): what a position settled at `idx` receives at index I, times S.

    Negative for a long when I rose (longs pay), positive for a short.
    """
    return -size * (index - idx)


def funding_due(size: int, index: int, idx: int) -> tuple[int, int]:
    """(pay, dust) of settling a position at index I (SPEC 4).

    pay = fl(x, S) moves to the balance (never in the holder's favour); the
    dust x - pay*S (in [0, S)) goes to the funding_dust ledger, so conservation
    stays exact.
    """
    x = funding_x(size, index, idx)
    pay = x // S
    return pay, x - pay * S


def pending_funding(size: int, index: int, idx: int) -> int:
    """Unsettled funding valued as fl(-size*(I - idx), S): what settling would pay now."""
    return funding_x(size, index, idx) // S


def grows(size: int, q: int) -> bool:
    """Does applying q to a position of `size` increase |size|? (SPEC 6's match-time test)."""
    new = size + q
    return (new if new >= 0 else -new) > (size if size >= 0 else -size)
