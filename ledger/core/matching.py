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
from ledger.core.evolve_trading import apply_fill
from ledger.core.fixedpoint import PPM
from ledger.core.funding import settle
from ledger.core.margin import margin_after_fill
from ledger.core.positions import fill_realized
from ledger.core.state import Market, Order, effective_mode
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import CancelReason, Mode, SelfTrade, Side, TimeInForce

BUY = Side.BUY
OK = Mode.OK
EXPIRE_MAKER = SelfTrade.EXPIRE_MAKER
EXPIRE_BOTH = SelfTrade.EXPIRE_BOTH
STALE_PRICE = CancelReason.STALE_PRICE
SELF_TRADE = CancelReason.SELF_TRADE
R_REDUCE_ONLY = CancelReason.REDUCE_ONLY
UNDERCOLLATERALIZED = CancelReason.UNDERCOLLATERALIZED
IOC_REMAINDER = CancelReason.IOC_REMAINDER


def match(ctx: Ctx, od: Order, limit: int) -> None:
    """Match taker `od` against the opposite side up to `limit`."""
    st = ctx.st
    m = st.markets[od.mkt]
    gm = st.mode
    if (m.mode if m.mode >= gm else gm) == OK:
        # Most takers that meet nothing are told by the best opposite level alone.
        if od.side == BUY:
            keys = m.asks.keys
            if keys and keys[0] <= limit:
                _walk(ctx, m, od, limit)
        else:
            keys = m.bids.keys
            if keys and -keys[0] >= limit:
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
    qdiv = m.qdiv
    mfee_ppm, tfee_ppm = p.maker_fee_ppm, p.taker_fee_ppm
    lo2 = hi2 = -1  # the x2 band, looked up at the first maker met
    taker_acct = od.acct
    taker = accounts[taker_acct]
    mkt = od.mkt
    # Filled is emitted inline (what ctx.emit does, with the entities at hand).
    out = ctx.out
    height = ctx.height
    cause = ctx.cause
    while oid in orders:
        if not keys:
            break
        key = keys[0]
        if buy:
            best = key
            if best > limit:
                break
        else:
            best = -key
            if best < limit:
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
        rem = od.rem
        k = rem if rem < mk.rem else mk.rem
        if mk.reduce_only:
            if not (msize < 0 if mk.side == BUY else msize > 0):
                cancel(ctx, mk, R_REDUCE_ONLY)
                continue
            a_ms = msize if msize >= 0 else -msize
            if a_ms < k:
                k = a_ms
        if od.reduce_only:
            if not (tsize < 0 if buy else tsize > 0):
                cancel(ctx, od, R_REDUCE_ONLY)
                return
            a_ts = tsize if tsize >= 0 else -tsize
            if a_ts < k:
                k = a_ts
        v = k * best // qdiv
        if buy:
            tq, tv = k, v
        else:
            tq, tv = -k, -v
        # funding is settled before any size change (SPEC 4)
        if msize and mpos is not None and mpos.idx != m.index:
            settle(ctx, maker, mkt)
        if tsize and tpos is not None and tpos.idx != m.index:
            settle(ctx, taker, mkt)
        # fees: ce(v*fee, PPM), or the floor of the magnitude for a rebate (v >= 0)
        mfee = -((-v * mfee_ppm) // PPM) if mfee_ppm >= 0 else -((v * -mfee_ppm) // PPM)
        tfee = -((-v * tfee_ppm) // PPM) if tfee_ppm >= 0 else -((v * -tfee_ppm) // PPM)
        mnew = msize - tq
        if (mnew if mnew >= 0 else -mnew) > (msize if msize >= 0 else -msize):
            av, imr = margin_after_fill(st, maker, mkt, -tq, -tv, mfee)
            if av < imr:
                cancel(ctx, mk, UNDERCOLLATERALIZED)
                continue
        tnew = tsize + tq
        if (tnew if tnew >= 0 else -tnew) > (tsize if tsize >= 0 else -tsize):
            av, imr = margin_after_fill(st, taker, mkt, tq, tv, tfee)
            if av < imr:
                cancel(ctx, od, UNDERCOLLATERALIZED)
                return
        # realized P&L only where the fill reduces (fill_realized is 0 otherwise)
        mr = (fill_realized(msize, mpos.cost, -tq, -tv)
              if mpos is not None and msize and (msize > 0) == (tq > 0) else 0)
        tr = (fill_realized(tsize, tpos.cost, tq, tv)
              if tpos is not None and tsize and (tsize > 0) != (tq > 0) else 0)
        ev = o.Filled(mkt, mk.id, oid, mk.acct, taker_acct, od.side, k, best, v, mfee, tfee,
                      mr, tr)
        seq = st.seq + 1
        st.seq = seq
        # both margins were just checked: no audit re-evaluation (see apply_fill)
        apply_fill(st, ev, m, mk, od, maker, taker, False)
        out.append(Envelope(seq, height, cause, ev))
        # reduce-only housekeeping: only a flattened or flipped position strands one
        if msize and (mnew == 0 or (msize > 0) != (mnew > 0)):
            cleanup_reduce_only(ctx, maker, mkt)
        if tsize and (tnew == 0 or (tsize > 0) != (tnew > 0)):
            cleanup_reduce_only(ctx, taker, mkt)


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
