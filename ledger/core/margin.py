"""Margin (SPEC 6): account value, IMR/MMR, free collateral, the order-acceptance W check.

Sums run over an account's positions; integer sums do not depend on the
order. Positions of size 0 contribute nothing. These are the hottest
functions of the core, so the SPEC formulas are inlined (ce(a, b) is
-((-a) // b), value(q, p) is q*p // 10^-qce with the divisor cached on the
market as `qdiv`).
"""

from __future__ import annotations

from ledger.core.fixedpoint import PPM, S, ceil_div, value
from ledger.core.positions import fill_realized, pending_funding
from ledger.core.state import Account, ExchangeState
from ledger.events.enums import Side


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
            r = fill_realized(size, cost, q, v)
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


def order_imr_pair(state: ExchangeState, a: Account, mkt: str, side: Side,
                   extra: int) -> tuple[int, int]:
    """IMR_ord of SPEC 6 with and without `extra` bq added to B (buy) or A (sell) in `mkt`.

    IMR_ord = sum of ce(|value(W, mark)|*imf, PPM) with W = max(|s+B|, |s-A|).
    Only `mkt`'s term differs between the two, so the rest is summed once.
    """
    rest = 0
    markets = state.markets
    pos = a.positions.get(mkt)
    for pm, p in a.positions.items():
        if pm == mkt:
            continue
        w = max(abs(p.size + p.buy_open), abs(p.size - p.sell_open))
        if w:
            m = markets[pm]
            rest -= (-(w * m.mark // m.qdiv) * m.imf) // PPM
    size, b, s_ = (pos.size, pos.buy_open, pos.sell_open) if pos is not None else (0, 0, 0)
    m = markets[mkt]
    w0 = max(abs(size + b), abs(size - s_))
    if side == Side.BUY:
        b += extra
    else:
        s_ += extra
    w1 = max(abs(size + b), abs(size - s_))
    i0 = -((-(w0 * m.mark // m.qdiv) * m.imf) // PPM)
    i1 = -((-(w1 * m.mark // m.qdiv) * m.imf) // PPM)
    return rest + i1, rest + i0


def order_check(state: ExchangeState, a: Account, mkt: str, side: Side,
                extra: int) -> tuple[int, int, int]:
    """(IMR_ord with, IMR_ord without, AV) in one pass over the positions (SPEC 6)."""
    rest = 0
    av = a.balance
    markets = state.markets
    size = b = s_ = 0
    for pm, p in a.positions.items():
        sz = p.size
        m = markets[pm]
        if pm == mkt:
            size, b, s_ = sz, p.buy_open, p.sell_open
        else:
            w = max(abs(sz + p.buy_open), abs(sz - p.sell_open))
            if w:
                rest -= (-(w * m.mark // m.qdiv) * m.imf) // PPM
        if sz:
            av += sz * m.mark // m.qdiv - p.cost + (-sz * (m.index - p.idx)) // S
        else:
            av -= p.cost
    m = markets[mkt]
    w0 = max(abs(size + b), abs(size - s_))
    if side == Side.BUY:
        b += extra
    else:
        s_ += extra
    w1 = max(abs(size + b), abs(size - s_))
    i0 = -((-(w0 * m.mark // m.qdiv) * m.imf) // PPM)
    i1 = -((-(w1 * m.mark // m.qdiv) * m.imf) // PPM)
    return rest + i1, rest + i0, av


def order_imr(state: ExchangeState, a: Account, mkt: str, side: Side, extra: int) -> int:
    """IMR_ord with `extra` bq added on `side` in `mkt` (see order_imr_pair)."""
    return order_imr_pair(state, a, mkt, side, extra)[0]


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
