"""Order placement, cancels and order housekeeping (SPEC 8 and 9).

Placement validates in the SPEC order mode -> step/tick -> reduce-only side ->
band -> post-only -> margin; the first failure emits OrderRejected with one of
the stable reasons below. An accepted order gets OrderPlaced (its id is the
seq of the PlaceOrder IN event) and then matches (ledger.core.matching).

Reasons: UNKNOWN_ACCOUNT, UNKNOWN_MARKET, INVALID (a shape the door refuses),
MODE, STEP, TICK, REDUCE_ONLY_SIDE, BAND, POST_ONLY_CROSS, MARGIN, UNKNOWN_ORDER.

Choices: TP/SL are implicitly reduce-only, so placing one needs an opposite
position (REDUCE_ONLY_SIDE otherwise) and they are cancelled REDUCE_ONLY like
any reduce-only order once the position no longer allows them to reduce.
Reduce-only orders are never resized by an event: each fill is capped at
min(remaining, |size|) and an order that can no longer reduce is cancelled.
A MARKET order (and a triggered TP/SL without a price) uses the band edge as
its limit and never rests; it counts as its own quantity in the W margin check.
In POST_ONLY only LIMIT POST_ONLY orders are accepted, and every order, passive
ones included, must lie inside the recovery band (reason BAND).
"""

from __future__ import annotations

from ledger.core.bands import in_recovery, recovery_band, trading_band
from ledger.core.cancels import cancel, crosses, reduces
from ledger.core.context import Ctx
from ledger.core.margin import order_accepted
from ledger.core.matching import match
from ledger.core.members import (
    BUY,
    CANCEL_ONLY,
    HALTED,
    LIMIT,
    OPERATOR,
    POST_ONLY,
    USER,
)
from ledger.core.shape import order_problem
from ledger.core.state import Account, ExchangeState, Market, effective_mode
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import TP_SL


def _validate(st: ExchangeState, a: Account | None, m: Market | None,
              cmd: c.PlaceOrder) -> str:
    """The first failed placement rule's reason, or "" (SPEC 8 validation order)."""
    if a is None:
        return "UNKNOWN_ACCOUNT"
    if m is None:
        return "UNKNOWN_MARKET"
    # the command's own shape (the door's rules, ledger.core.shape)
    if order_problem(cmd) is not None:
        return "INVALID"
    side = cmd.side
    qty = cmd.qty_bq
    price = cmd.price_st
    otype = cmd.type
    tif = cmd.tif
    is_trig = otype in TP_SL
    p = m.params
    mode = effective_mode(st, m)
    # 1. mode
    if mode and (mode >= CANCEL_ONLY or tif != POST_ONLY or otype != LIMIT):
        return "MODE"
    # 2. step / tick
    if qty % p.step_bq:
        return "STEP"
    if price is not None and price % p.tick_st:
        return "TICK"
    # 3. reduce-only side
    ro = cmd.reduce_only or is_trig
    if ro:
        pos = a.positions.get(m.id)
        if not reduces(pos.size if pos is not None else 0, side):
            return "REDUCE_ONLY_SIDE"
    # 4. band (the recovery band in POST_ONLY; the trading band for crossing orders)
    if in_recovery(mode):
        assert price is not None
        lo, hi = recovery_band(st, m)
        if not lo <= price <= hi:
            return "BAND"
    crossing = not is_trig and price is not None and crosses(m, side, price)
    if crossing:
        assert price is not None
        lo, hi = trading_band(m)
        if not lo <= price <= hi:
            return "BAND"
    # 5. post-only
    if crossing and tif == POST_ONLY:
        return "POST_ONLY_CROSS"
    # 6. margin (reduce-only orders never raise IMR_ord: they are not in B or A)
    if not ro and not order_accepted(st, a, m, side, qty):
        return "MARGIN"
    return ""


def place_order(ctx: Ctx, cmd: c.PlaceOrder) -> None:
    st = ctx.st
    acct = cmd.acct
    mkt = cmd.mkt
    side = cmd.side
    price = cmd.price_st
    otype = cmd.type
    a = st.accounts.get(acct)
    m = st.markets.get(mkt)
    reason = _validate(st, a, m, cmd)
    if reason:
        ctx.reject(o.OrderRejected(acct, mkt, reason))
        return
    assert m is not None
    oid = ctx.cause
    # The event's flag is True for TP/SL, which are implicitly reduce-only.
    if otype in TP_SL:
        ctx.emit(o.OrderPlaced(oid, acct, mkt, side, cmd.qty_bq, price, otype, cmd.tif, True,
                               cmd.trigger_st, cmd.stp))
        return
    ctx.emit(o.OrderPlaced(oid, acct, mkt, side, cmd.qty_bq, price, otype, cmd.tif,
                           cmd.reduce_only, cmd.trigger_st, cmd.stp))
    od = st.orders[oid]
    if price is None:
        lo, hi = trading_band(m)
        match(ctx, od, hi if side == BUY else lo)
        return
    if od.on_book and not crosses(m, side, price):
        return  # a resting order that does not cross has nothing to match
    match(ctx, od, price)


def cancel_order(ctx: Ctx, cmd: c.CancelOrder) -> None:
    st = ctx.st
    od = st.orders.get(cmd.order_id)
    if od is None or od.acct != cmd.acct:
        ctx.reject(o.OrderRejected(cmd.acct, "", "UNKNOWN_ORDER"))
        return
    if effective_mode(st, st.markets[od.mkt]) == HALTED:
        ctx.reject(o.OrderRejected(cmd.acct, od.mkt, "MODE"))
        return
    cancel(ctx, od, USER)


def bulk_cancel(ctx: Ctx, cmd: c.BulkCancel) -> None:
    """Cancel every open order in scope except the kept types, by ascending id (operator)."""
    st = ctx.st
    keep = set(cmd.keep_types)
    for oid in sorted(st.orders):
        od = st.orders.get(oid)
        if od is None or (cmd.scope != c.ALL and od.mkt != cmd.scope) or od.type in keep:
            continue
        cancel(ctx, od, OPERATOR)


