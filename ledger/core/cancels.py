"""Order housekeeping shared by the rules: cancels, reduce-only cleanup, out-of-band cancels."""

from __future__ import annotations

from ledger.core.bands import in_recovery, recovery_band
from ledger.core.context import Ctx
from ledger.core.members import BUY, OUT_OF_BAND, REDUCE_ONLY
from ledger.core.state import Account, Market, Order, effective_mode
from ledger.events import outcomes as o
from ledger.events.enums import CancelReason, Side


def cancel(ctx: Ctx, od: Order, reason: CancelReason) -> None:
    """Cancel an open order with its remaining quantity."""
    ctx.emit(o.OrderCancelled(od.id, od.acct, od.mkt, od.rem, reason))


def reduces(size: int, side: Side) -> bool:
    """Would an order on `side` reduce a position of `size`?"""
    return size < 0 if side == BUY else size > 0


def cleanup_reduce_only(ctx: Ctx, a: Account, mkt: str) -> None:
    """Cancel the account's reduce-only orders in `mkt` (TP/SL included) that no longer reduce."""
    pos = a.positions.get(mkt)
    size = pos.size if pos is not None else 0
    orders = ctx.st.orders
    for oid in list(a.orders):
        od = orders.get(oid)
        if od is None or od.mkt != mkt or not od.reduce_only:
            continue
        if not reduces(size, od.side):
            cancel(ctx, od, REDUCE_ONLY)


def after_position_change(ctx: Ctx, a: Account, mkt: str, before: int) -> None:
    """Reduce-only housekeeping: only a flattened or flipped position can strand one."""
    pos = a.positions.get(mkt)
    after = pos.size if pos is not None else 0
    if before != 0 and (after == 0 or (after > 0) != (before > 0)):
        cleanup_reduce_only(ctx, a, mkt)


def crosses(m: Market, side: Side, price: int) -> bool:
    """Would an order at `price` on `side` meet the opposite side of `m`'s book?

    A buy crosses when price >= the best ask, a sell when price <= the best bid.
    """
    if side == BUY:
        ask = m.asks.best()
        return ask is not None and price >= ask
    bid = m.bids.best()
    return bid is not None and price <= bid


def cancel_out_of_band(ctx: Ctx, mkts: list[str]) -> None:
    """After a mode change: cancel resting orders outside the recovery band (SPEC 9)."""
    st = ctx.st
    for mkt in mkts:
        m = st.markets[mkt]
        if not in_recovery(effective_mode(st, m)):
            continue
        lo, hi = recovery_band(st, m)
        for side in (m.bids, m.asks):
            for oid in list(side.order_ids()):
                od = st.orders[oid]
                assert od.price is not None
                if not lo <= od.price <= hi:
                    cancel(ctx, od, OUT_OF_BAND)
