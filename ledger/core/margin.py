"""Margin (SPEC 6): account value, IMR/MMR, free collateral, the order-acceptance W check.

Sums run over an account's positions; integer sums do not depend on the
order. Positions of size 0 contribute nothing but -cost to AV (and their
resting orders to the W sum). These are the hottest functions of the core, so
the SPEC formulas are inlined (ce(a, b) is -((-a) // b), value(q, p) is
q*p // 10^-qce with the divisor cached on the market as `qdiv`).

No cached running sums: every block moves every market's mark, which would
invalidate any per-account cache, and a typical account is touched about once
per block, so each evaluation is a fresh sum over its (few) positions. The
cheap cases are cut short instead (`order_accepted`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.core.fixedpoint import PPM, S, ceil_div, value
from ledger.core.positions import fill_realized, pending_funding
from ledger.core.state import Account, ExchangeState, Market
from ledger.events.enums import Side

BUY = Side.BUY


def account_margin(state: ExchangeState, a: Account) -> tuple[int, int, int]:
    """(AV, IMR, MMR) of an account at the current marks and indices."""
    av = a.balance
    imr = 0
    mmr = 0
    markets = state.markets
    for mkt, pos in a.positions.items():
        size = pos.size
        if size == 0:
            av -= pos.cost
            continue
        m = markets[mkt]
        notional = size * m.mark // m.qdiv
        av += notional - pos.cost + (-size * (m.index - pos.idx)) // S
        n = notional if notional >= 0 else -notional
        imr -= (-n * m.imf) // PPM
        mmr -= (-n * m.mmf) // PPM
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
    """(AV, IMR) of an account (the one margin definition, `account_margin`)."""
    av, imr, _ = account_margin(state, a)
    return av, imr


def market_mmr(state: ExchangeState, mkt: str, size: int) -> int:
    """Maintenance requirement of one position: ce(|notional|*mmf, PPM)."""
    m = state.markets[mkt]
    n = abs(value(size, m.mark, m.params.qce))
    return ceil_div(n * m.mmf, PPM)


def margin_after_fill(state: ExchangeState, a: Account, mkt: str, q: int, v: int,
                      fee: int) -> tuple[int, int]:
    """(AV', IMR') the account would have after applying fill (q, v) and paying `fee`."""
    av = a.balance - fee
    imr = 0
    markets = state.markets
    seen = False
    for pm, pos in a.positions.items():
        size, cost = pos.size, pos.cost
        m = markets[pm]
        pend = (-size * (m.index - pos.idx)) // S if size else 0
        if pm == mkt:
            seen = True
            # fill_realized, called only where it is not 0 (a reduce or a flip)
            r = fill_realized(size, cost, q, v) if size and (size > 0) != (q > 0) else 0
            av += r
            cost = cost + v + r
            size += q
        if size == 0:
            av += pend - cost
            continue
        notional = size * m.mark // m.qdiv
        av += notional - cost + pend
        imr -= (-(notional if notional >= 0 else -notional) * m.imf) // PPM
    if not seen:
        m = markets[mkt]
        notional = q * m.mark // m.qdiv
        av += notional - v
        imr -= (-(notional if notional >= 0 else -notional) * m.imf) // PPM
    return av, imr


def order_accepted(state: ExchangeState, a: Account, m: Market, side: Side, qty: int) -> bool:
    """The SPEC 6 acceptance test: AV >= IMR_ord(with) or IMR_ord(with) <= IMR_ord(without).

    IMR_ord = sum over markets of ce(|value(W, mark)|*imf, PPM), W = max(|s+B|, |s-A|),
    with `qty` added to B (buy) or A (sell) in `m` for "with". The two sums
    differ only in `m`'s term, so when that term does not grow the order passes
    without the sum over the other positions or AV.
    """
    mkt = m.id
    pos = a.positions.get(mkt)
    if pos is None:
        w0 = 0
        w1 = qty if qty >= 0 else -qty
    else:
        size = pos.size
        x, y = size + pos.buy_open, size - pos.sell_open
        ax = x if x >= 0 else -x
        ay = y if y >= 0 else -y
        w0 = ax if ax >= ay else ay
        if side == BUY:
            x += qty
            ax = x if x >= 0 else -x
        else:
            y -= qty
            ay = y if y >= 0 else -y
        w1 = ax if ax >= ay else ay
    mark, qdiv, imf = m.mark, m.qdiv, m.imf
    i0 = -((-(w0 * mark // qdiv) * imf) // PPM) if w0 else 0
    i1 = -((-(w1 * mark // qdiv) * imf) // PPM)
    if i1 <= i0:
        return True
    av = a.balance
    rest = 0
    markets = state.markets
    for pm, p in a.positions.items():
        sz = p.size
        mm = markets[pm]
        if pm != mkt:
            x, y = sz + p.buy_open, sz - p.sell_open
            ax = x if x >= 0 else -x
            ay = y if y >= 0 else -y
            w = ax if ax >= ay else ay
            if w:
                rest -= (-(w * mm.mark // mm.qdiv) * mm.imf) // PPM
        if sz:
            av += sz * mm.mark // mm.qdiv - p.cost + (-sz * (mm.index - p.idx)) // S
        else:
            av -= p.cost
    return av >= rest + i1


def margin_after_many(state: ExchangeState, a: Account, fills: dict[str, tuple[int, int]],
                      cash: int) -> tuple[int, int]:
    """(AV', IMR') after applying several fills {mkt: (q, v)} and adding `cash` to the balance."""
    av = a.balance + cash
    imr = 0
    markets = state.markets
    for pm in sorted(set(a.positions) | set(fills)):
        pos = a.positions.get(pm)
        size, cost, idx = (pos.size, pos.cost, pos.idx) if pos is not None else (0, 0, 0)
        m = markets[pm]
        pend = pending_funding(size, m.index, idx)
        if pm in fills:
            q, v = fills[pm]
            r = fill_realized(size, cost, q, v)
            av += r
            cost = cost + v + r
            size += q
        if size == 0:
            av += -cost + pend
            continue
        notional = value(size, m.mark, m.params.qce)
        av += notional - cost + pend
        imr += ceil_div(abs(notional) * m.params.imf_ppm, PPM)
    return av, imr
