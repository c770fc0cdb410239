"""Auto-deleveraging (SPEC 7 step 5): rank opposite-side accounts and offset at bankruptcy.

Ranking [H3]: key = (mark/entry for longs, entry/mark for shorts) x |notional|/AV,
as exact fractions.Fraction values (entry/mark = cost/notional). Profitable
accounts (uPnL > 0) with AV > 0 come first, then the other accounts with
AV > 0, then those with AV <= 0; within a group the higher score first, ties by
id. The vault and FEES are ordinary accounts and may be offset.
"""

from __future__ import annotations

from fractions import Fraction

from ledger.core.cancels import after_position_change
from ledger.core.context import Ctx
from ledger.core.fixedpoint import value
from ledger.core.funding import settle
from ledger.core.margin import account_margin
from ledger.core.positions import fill_realized, pending_funding
from ledger.core.state import Account, ExchangeState
from ledger.events import outcomes as o


def rank_offsets(st: ExchangeState, liquidated: str, mkt: str,
                 want_long: bool) -> list[str]:
    """Accounts holding the opposite side of `mkt`, in ADL order."""
    m = st.markets[mkt]
    keyed: list[tuple[int, Fraction, str]] = []
    for acct in m.holders:
        if acct == liquidated:
            continue
        a = st.accounts[acct]
        pos = a.positions[mkt]
        if pos.size == 0 or (pos.size > 0) != want_long:
            continue
        av = account_margin(st, a)[0]
        notional = value(pos.size, m.mark, m.params.qce)
        upnl = notional - pos.cost + pending_funding(pos.size, m.index, pos.idx)
        score = Fraction(0)
        if av > 0 and pos.cost != 0 and notional != 0:
            ratio = Fraction(notional, pos.cost) if pos.size > 0 else Fraction(pos.cost, notional)
            score = ratio * Fraction(abs(notional), av)
        group = 0 if (upnl > 0 and av > 0) else 1 if av > 0 else 2
        keyed.append((group, -score, acct))
    keyed.sort()
    return [acct for _, _, acct in keyed]


def deleverage(ctx: Ctx, a: Account, mkt: str, bv: int) -> None:
    """Close `a`'s position in `mkt` against ranked offsets; chunks carry shares of `bv`."""
    st = ctx.st
    pos = a.positions[mkt]
    size = pos.size
    total = abs(size)
    sign = 1 if size > 0 else -1
    remaining = total
    allocated = 0
    for acct in rank_offsets(st, a.id, mkt, want_long=size < 0):
        if remaining == 0:
            break
        off = st.accounts[acct]
        settle(ctx, off, mkt)
        opos = off.positions[mkt]
        before = opos.size
        c = min(remaining, abs(before))
        remaining -= c
        chunk = bv - allocated if remaining == 0 else (bv * c) // total
        allocated += chunk
        q = sign * c
        ctx.emit(o.Deleveraged(mkt, a.id, acct, q, chunk,
                               fill_realized(before, opos.cost, q, chunk)))
        after_position_change(ctx, off, mkt, before)
