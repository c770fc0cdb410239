"""Order housekeeping shared by the rules: cancels, reduce-only cleanup, out-of-band cancels."""

from __future__ import annotations

from ledger.core.bands import recovery_band
from ledger.core.context import Ctx
from ledger.core.state import Account, Order, effective_mode
from ledger.events import outcomes as o
from ledger.events.enums import CancelReason, Mode, Side


def cancel(ctx: Ctx, od: Order, reason: CancelReason) -> None:
    """Cancel an open order with its remaining quantity."""
    ctx.emit(o.OrderCancelled(od.id, od.acct, od.mkt, od.rem, reason))


def reduces(size: int, side: Side) -> bool:
    """Would an order on `side` reduce a position of `size`?"""
    return size < 0 if side == Side.BUY else size > 0


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
            cancel(ctx, od, CancelReason.REDUCE_ONLY)


def after_position_change(ctx: Ctx, a: Account, mkt: str, before: int) -> None:
    """Reduce-only housekeeping: only a flattened or flipped position can strand one."""
    pos = a.positions.get(mkt)
    after = pos.size if pos is not None else 0
    if before != 0 and (after == 0 or (after > 0) != (before > 0)):
        cleanup_reduce_only(ctx, a, mkt)


def crosses(m_bids_best: int | None, m_asks_best: int | None, side: Side, price: int) -> bool:
    if side == Side.BUY:
        return m_asks_best is not None and price >= m_asks_best
    return m_bids_best is not None and price <= m_bids_best


def cancel_out_of_band(ctx: Ctx, mkts: list[str]) -> None:
    """After a mode change: cancel resting orders outside the recovery band (SPEC 9)."""
    st = ctx.st
    for mkt in mkts:
        m = st.markets[mkt]
        if effective_mode(st, m) not in (Mode.POST_ONLY, Mode.CANCEL_ONLY):
            continue
        lo, hi = recovery_band(st, m)
        for side in (m.bids, m.asks):
            for oid in list(side.order_ids()):
                od = st.orders[oid]
                assert od.price is not None
                if not lo <= od.price <= hi:
                    cancel(ctx, od, CancelReason.OUT_OF_BAND)
