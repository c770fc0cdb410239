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
from ledger.core.cancels import cancel, cleanup_reduce_only, crosses, reduces
from ledger.core.context import Ctx
from ledger.core.fixedpoint import PPM, fee_amount
from ledger.core.funding import settle
from ledger.core.margin import margin_after_fill
from ledger.core.positions import fill_realized
from ledger.core.state import Order, effective_mode
from ledger.events import outcomes as o
from ledger.events.enums import CancelReason, Mode, SelfTrade, Side, TimeInForce

_tnew = tuple.__new__


def match(ctx: Ctx, od: Order, limit: int) -> None:
    """Match taker `od` against the opposite side up to `limit`."""
    st = ctx.st
    m = st.markets[od.mkt]
    orders = st.orders
    accounts = st.accounts
    buy = od.side == Side.BUY
    opp = m.asks if buy else m.bids
    p = m.params
    qdiv = m.qdiv
    mfee_ppm, tfee_ppm = p.maker_fee_ppm, p.taker_fee_ppm
    lo2 = hi2 = -1  # the x2 band, computed at the first maker met
    taker = accounts[od.acct]
    mkt = od.mkt
    emit = ctx.emit
    if (m.mode if m.mode >= st.mode else st.mode) == Mode.OK:
        while od.id in orders:
            best = opp.best()
            if best is None or (best > limit if buy else best < limit):
                break
            mk = orders[opp.first_at_best()]
            if mk.acct == od.acct:
                stp = od.stp
                if stp == SelfTrade.EXPIRE_MAKER:
                    cancel(ctx, mk, CancelReason.SELF_TRADE)
                    continue
                if stp == SelfTrade.EXPIRE_BOTH:
                    cancel(ctx, mk, CancelReason.SELF_TRADE)
                cancel(ctx, od, CancelReason.SELF_TRADE)
                return
            if lo2 < 0:
                lo2, hi2 = stale_band(m)
            if not lo2 <= best <= hi2:
                cancel(ctx, mk, CancelReason.STALE_PRICE)
                continue
            maker = accounts[mk.acct]
            mpos = maker.positions.get(mkt)
            msize = mpos.size if mpos is not None else 0
            tpos = taker.positions.get(mkt)
            tsize = tpos.size if tpos is not None else 0
            k = od.rem if od.rem < mk.rem else mk.rem
            if mk.reduce_only:
                if not reduces(msize, mk.side):
                    cancel(ctx, mk, CancelReason.REDUCE_ONLY)
                    continue
                k = min(k, abs(msize))
            if od.reduce_only:
                if not reduces(tsize, od.side):
                    cancel(ctx, od, CancelReason.REDUCE_ONLY)
                    return
                k = min(k, abs(tsize))
            v = k * best // qdiv
            tq, tv = (k, v) if buy else (-k, -v)
            # funding is settled before any size change (SPEC 4)
            if msize and mpos is not None and mpos.idx != m.index:
                settle(ctx, maker, mkt)
            if tsize and tpos is not None and tpos.idx != m.index:
                settle(ctx, taker, mkt)
            mfee = fee_amount(v, mfee_ppm)
            tfee = -((-v * tfee_ppm) // PPM) if tfee_ppm >= 0 else fee_amount(v, tfee_ppm)
            if abs(msize - tq) > abs(msize):
                av, imr = margin_after_fill(st, maker, mkt, -tq, -tv, mfee)
                if av < imr:
                    cancel(ctx, mk, CancelReason.UNDERCOLLATERALIZED)
                    continue
            if abs(tsize + tq) > abs(tsize):
                av, imr = margin_after_fill(st, taker, mkt, tq, tv, tfee)
                if av < imr:
                    cancel(ctx, od, CancelReason.UNDERCOLLATERALIZED)
                    return
            mr = fill_realized(msize, mpos.cost, -tq, -tv) if mpos is not None else 0
            tr = fill_realized(tsize, tpos.cost, tq, tv) if tpos is not None else 0
            emit(_tnew(o.Filled, (mkt, mk.id, od.id, mk.acct, od.acct, od.side, k, best, v,
                                  mfee, tfee, mr, tr)))
            # reduce-only housekeeping: only a flattened or flipped position strands one
            if msize and (msize - tq == 0 or (msize > 0) != (msize - tq > 0)):
                cleanup_reduce_only(ctx, maker, mkt)
            if tsize and (tsize + tq == 0 or (tsize > 0) != (tsize + tq > 0)):
                cleanup_reduce_only(ctx, taker, mkt)
    if od.id in orders and not od.on_book:
        cancel(ctx, od, CancelReason.IOC_REMAINDER)


def run_triggers(ctx: Ctx, mkt: str) -> None:
    """Fire the TP/SL orders the current mark triggers, in original seq order (OK mode only)."""
    st = ctx.st
    m = st.markets[mkt]
    if not len(m.triggers) or effective_mode(st, m) != Mode.OK:
        return
    for oid in m.triggers.fired(m.mark):
        od = st.orders.get(oid)
        if od is None or not od.armed:
            continue  # cancelled by an earlier trigger's housekeeping
        ctx.emit(o.OrderTriggered(oid, od.acct, mkt, m.mark))
        pos = st.accounts[od.acct].positions.get(mkt)
        if not reduces(pos.size if pos is not None else 0, od.side):
            cancel(ctx, od, CancelReason.REDUCE_ONLY)
            continue
        lo, hi = trading_band(m)
        if od.price is None:
            match(ctx, od, hi if od.side == Side.BUY else lo)
            continue
        if crosses(m.bids.best(), m.asks.best(), od.side, od.price):
            if not lo <= od.price <= hi:
                cancel(ctx, od, CancelReason.OUT_OF_BAND)
                continue
            if od.tif == TimeInForce.POST_ONLY:
                cancel(ctx, od, CancelReason.POST_ONLY_CROSS)
                continue
        match(ctx, od, od.price)
