"""Matching (SPEC 5, 6, 8): price-time priority, fills at the maker's price.

For each best maker, in this order: self-trade prevention, the stale-price
(x2 band) check, reduce-only capping, funding settlement of both sides, the
match-time margin check (maker fails -> cancelled UNDERCOLLATERALIZED and
matching goes on; taker fails -> its remainder is cancelled), then Filled.
A taker that never rests (MARKET, IOC, triggered without price) has its
remainder cancelled IOC_REMAINDER. Fills happen in OK mode only.
"""

from __future__ import annotations

from ledger.core.bands import stale_band, trading_band
from ledger.core.cancels import after_position_change, cancel, crosses, reduces
from ledger.core.context import Ctx
from ledger.core.fixedpoint import fee_amount, value
from ledger.core.funding import settle
from ledger.core.margin import margin_after_fill
from ledger.core.members import (
    BUY,
    EXPIRE_BOTH,
    EXPIRE_MAKER,
    IOC_REMAINDER,
    OK,
    OUT_OF_BAND,
    POST_ONLY,
    POST_ONLY_CROSS,
    REDUCE_ONLY,
    SELF_TRADE,
    STALE_PRICE,
    UNDERCOLLATERALIZED,
)
from ledger.core.positions import fill_realized, grows
from ledger.core.state import Market, Order, effective_mode
from ledger.events import outcomes as o


def match(ctx: Ctx, od: Order, limit: int) -> None:
    """Match taker `od` against the opposite side up to `limit`."""
    st = ctx.st
    m = st.markets[od.mkt]
    # Fills happen in OK mode only; most takers that meet nothing are told so by the
    # best opposite level alone.
    if effective_mode(st, m) == OK and crosses(m, od.side, limit):
        _walk(ctx, m, od, limit)
    if od.id in st.orders and not od.on_book:
        cancel(ctx, od, IOC_REMAINDER)


def _walk(ctx: Ctx, m: Market, od: Order, limit: int) -> None:
    """Fill taker `od` from the best makers while they cross `limit` (market in OK mode)."""
    st = ctx.st
    orders = st.orders
    oid = od.id
    accounts = st.accounts
    buy = od.side == BUY
    opp = m.asks if buy else m.bids
    keys = opp.keys
    levels = opp.levels
    p = m.params
    mfee_ppm = p.maker_fee_ppm
    tfee_ppm = p.taker_fee_ppm
    qce = m.qce
    lo2 = hi2 = -1  # the x2 band, looked up at the first maker met
    taker_acct = od.acct
    taker = accounts[taker_acct]
    mkt = od.mkt
    while oid in orders:
        if not keys:
            break
        key = keys[0]
        # keys are prices for asks and negated prices for bids (ledger.core.book)
        best = key if buy else -key
        if (best > limit) if buy else (best < limit):
            break
        mk = orders[next(iter(levels[key]))]
        if mk.acct == taker_acct:
            stp = od.stp
            if stp == EXPIRE_MAKER:
                cancel(ctx, mk, SELF_TRADE)
                continue
            if stp == EXPIRE_BOTH:
                cancel(ctx, mk, SELF_TRADE)
            cancel(ctx, od, SELF_TRADE)
            return
        if lo2 < 0:
            lo2, hi2 = stale_band(m)
        if not lo2 <= best <= hi2:
            cancel(ctx, mk, STALE_PRICE)
            continue
        maker = accounts[mk.acct]
        mpos = maker.positions.get(mkt)
        msize = mpos.size if mpos is not None else 0
        tpos = taker.positions.get(mkt)
        tsize = tpos.size if tpos is not None else 0
        k = od.rem if od.rem < mk.rem else mk.rem
        # reduce-only: each fill is min(remaining, |size|), and only while it reduces
        if mk.reduce_only:
            if not reduces(msize, mk.side):
                cancel(ctx, mk, REDUCE_ONLY)
                continue
            k = min(k, abs(msize))
        if od.reduce_only:
            if not reduces(tsize, od.side):
                cancel(ctx, od, REDUCE_ONLY)
                return
            k = min(k, abs(tsize))
        v = value(k, best, qce)
        # the taker applies (tq, tv), the maker (-tq, -tv) (signs: ledger.core.positions)
        tq = k if buy else -k
        tv = v if buy else -v
        # funding is settled before any size change (SPEC 4)
        settle(ctx, maker, mkt)
        settle(ctx, taker, mkt)
        mfee = fee_amount(v, mfee_ppm)
        tfee = fee_amount(v, tfee_ppm)
        # SPEC 6 at match time: a fill that grows |size| must leave AV' >= IMR'
        if grows(msize, -tq):
            av, imr = margin_after_fill(st, maker, mkt, -tq, -tv, mfee)
            if av < imr:
                cancel(ctx, mk, UNDERCOLLATERALIZED)
                continue
        if grows(tsize, tq):
            av, imr = margin_after_fill(st, taker, mkt, tq, tv, tfee)
            if av < imr:
                cancel(ctx, od, UNDERCOLLATERALIZED)
                return
        mr = fill_realized(msize, mpos.cost, -tq, -tv) if mpos is not None else 0
        tr = fill_realized(tsize, tpos.cost, tq, tv) if tpos is not None else 0
        ctx.emit(o.Filled(mkt, mk.id, oid, mk.acct, taker_acct, od.side, k, best, v, mfee,
                          tfee, mr, tr))
        after_position_change(ctx, maker, mkt, msize)
        after_position_change(ctx, taker, mkt, tsize)


def run_triggers(ctx: Ctx, mkt: str) -> None:
    """Fire the TP/SL orders the current mark triggers, in original seq order (OK mode only)."""
    st = ctx.st
    m = st.markets[mkt]
    if not len(m.triggers) or effective_mode(st, m) != OK:
        return
    for oid in m.triggers.fired(m.mark):
        od = st.orders.get(oid)
        if od is None or not od.armed:
            continue  # cancelled by an earlier trigger's housekeeping
        ctx.emit(o.OrderTriggered(oid, od.acct, mkt, m.mark))
        pos = st.accounts[od.acct].positions.get(mkt)
        if not reduces(pos.size if pos is not None else 0, od.side):
            cancel(ctx, od, REDUCE_ONLY)
            continue
        lo, hi = trading_band(m)
        if od.price is None:
            match(ctx, od, hi if od.side == BUY else lo)
            continue
        if crosses(m, od.side, od.price):
            if not lo <= od.price <= hi:
                cancel(ctx, od, OUT_OF_BAND)
                continue
            if od.tif == POST_ONLY:
                cancel(ctx, od, POST_ONLY_CROSS)
                continue
        match(ctx, od, od.price)
