"""Margin (SPEC 6): account value, IMR/MMR, free collateral, the order-acceptance W check.

The formulas, each written once here (signs as in ledger.core.positions):

- a position's notional is `value(size, mark)`: signed, floored (never in the
  holder's favour);
- its AV term is `notional - cost + pending`: unrealized P&L plus unsettled
  funding (`positions.pending_funding`); a flat position contributes `-cost`;
- a requirement is `ce(|notional| * fraction, PPM)` (IMR with imf, MMR with
  mmf), rounded up against the holder;
- AV = balance + the AV terms; IMR and MMR are the sums of the requirements.

Sums run over an account's positions; integer sums do not depend on the order.
No cached running sums: every block moves every market's mark, which would
invalidate any per-account cache, and a typical account is touched about once
per block, so each evaluation is a fresh sum over its (few) positions. The
cheap cases are cut short instead (`order_accepted`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.core.fixedpoint import PPM, ceil_div, value
from ledger.core.members import BUY
from ledger.core.positions import pending_funding
from ledger.core.state import Account, ExchangeState, Market
from ledger.events.enums import Side


def requirement(notional: int, fraction_ppm: int) -> int:
    """A margin requirement ce(|notional| * fraction, PPM): rounded up, against the holder."""
    return ceil_div((notional if notional >= 0 else -notional) * fraction_ppm, PPM)


def av_term(notional: int, cost: int, pending: int) -> int:
    """A position's AV term: notional - cost + pending, its unrealized P&L plus unsettled
    funding (a flat position, notional and pending 0, contributes -cost)."""
    return notional - cost + pending


def account_margin(state: ExchangeState, a: Account) -> tuple[int, int, int]:
    """(AV, IMR, MMR) of an account at the current marks and indices."""
    av = a.balance
    imr = 0
    mmr = 0
    markets = state.markets
    for mkt, pos in a.positions.items():
        m = markets[mkt]
        size = pos.size
        notional = value(size, m.mark, m.qce)
        av += av_term(notional, pos.cost, pending_funding(size, m.index, pos.idx))
        imr += requirement(notional, m.imf)
        mmr += requirement(notional, m.mmf)
    return av, imr, mmr


def equity_at(state: ExchangeState, a: Account, marks: Mapping[str, int]) -> int:
    """E(a) of SPEC 13: AV with every position valued at the given marks (st per market).

    balance + sum over positions of (value(size, mark_m) - cost + pending), where
    pending uses this state's own funding index (pending_funding: the signed
    funding the position would settle now). Two worlds valued at the same
    `marks` differ only by what happened in them, never by where prices stood.
    """
    eq = a.balance
    markets = state.markets
    for mkt, pos in a.positions.items():
        size = pos.size
        eq -= pos.cost
        if size:
            m = markets[mkt]
            eq += value(size, marks[mkt], m.params.qce) + pending_funding(size, m.index,
                                                                           pos.idx)
    return eq


def av_imr(state: ExchangeState, a: Account) -> tuple[int, int]:
    """(AV, IMR) of an account (`account_margin`)."""
    av, imr, _ = account_margin(state, a)
    return av, imr


def market_mmr(state: ExchangeState, mkt: str, size: int) -> int:
    """Maintenance requirement of one position of `size` in `mkt`."""
    m = state.markets[mkt]
    return requirement(value(size, m.mark, m.qce), m.mmf)


def margin_after_many(state: ExchangeState, a: Account, fills: Mapping[str, tuple[int, int]],
                      cash: int) -> tuple[int, int]:
    """(AV', IMR') after applying fills {mkt: (q, v)} and adding `cash` to the balance.

    A fill moves balance - cost by exactly -v (positions.apply_fill: the realized
    part moves from cost to balance), so AV' takes the position at cost + v and
    needs no realized P&L. Unsettled funding is that of the position as it stands.
    """
    av = a.balance + cash
    imr = 0
    markets = state.markets
    positions = a.positions
    for mkt, pos in positions.items():
        m = markets[mkt]
        size = pos.size
        cost = pos.cost
        pending = pending_funding(size, m.index, pos.idx)
        fill = fills.get(mkt)
        if fill is not None:
            size += fill[0]
            cost += fill[1]
        notional = value(size, m.mark, m.qce)
        av += av_term(notional, cost, pending)
        imr += requirement(notional, m.imf)
    for mkt, (q, v) in fills.items():
        if mkt not in positions:  # a new position: no cost, no funding yet
            m = markets[mkt]
            notional = value(q, m.mark, m.qce)
            av += av_term(notional, v, 0)
            imr += requirement(notional, m.imf)
    return av, imr


def margin_after_fill(state: ExchangeState, a: Account, mkt: str, q: int, v: int,
                      fee: int) -> tuple[int, int]:
    """(AV', IMR') the account would have after applying fill (q, v) and paying `fee`."""
    return margin_after_many(state, a, {mkt: (q, v)}, -fee)


def order_w(size: int, buy_open: int, sell_open: int) -> int:
    """W = max(|s + B|, |s - A|): the largest size resting orders could leave (SPEC 6)."""
    x = size + buy_open
    y = size - sell_open
    ax = x if x >= 0 else -x
    ay = y if y >= 0 else -y
    return ax if ax >= ay else ay


def order_accepted(state: ExchangeState, a: Account, m: Market, side: Side, qty: int) -> bool:
    """The SPEC 6 acceptance test: AV >= IMR_ord(with) or IMR_ord(with) <= IMR_ord(without).

    IMR_ord = sum over markets of requirement(value(W, mark), imf), W = `order_w`,
    with `qty` added to B (buy) or A (sell) in `m` for "with". The two sums
    differ only in `m`'s term, so when that term does not grow the order passes
    without the sum over the other positions or AV.
    """
    mkt = m.id
    pos = a.positions.get(mkt)
    if pos is None:
        w0 = 0
        w1 = qty
    else:
        w0 = order_w(pos.size, pos.buy_open, pos.sell_open)
        if side == BUY:
            w1 = order_w(pos.size, pos.buy_open + qty, pos.sell_open)
        else:
            w1 = order_w(pos.size, pos.buy_open, pos.sell_open + qty)
    i0 = requirement(value(w0, m.mark, m.qce), m.imf)
    i1 = requirement(value(w1, m.mark, m.qce), m.imf)
    if i1 <= i0:
        return True
    av = a.balance
    rest = 0
    markets = state.markets
    for pm, p in a.positions.items():
        mm = markets[pm]
        if pm != mkt:
            rest += requirement(value(order_w(p.size, p.buy_open, p.sell_open), mm.mark,
                                      mm.qce), mm.imf)
        av += av_term(value(p.size, mm.mark, mm.qce), p.cost,
                      pending_funding(p.size, mm.index, p.idx))
    return av >= rest + i1
