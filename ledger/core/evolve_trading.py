"""evolve for the trading events: orders, the book, fills, positions, liquidation outcomes.

The other half of evolve (ledger.core.evolve holds the dispatch table and the
account, market, oracle, funding and mode events). Same rules: apply only, no
validation, no I/O; mark the touched entities for the state hash (`dirty_a`,
`dirty_o`, `dirty_m`) and the accounts whose numbers changed for the
liquidation watch (`liq_dirty`). These functions run once per event on the
live path and on every rebuild, so they are written flat: fields unpacked from
the event tuple, enum members bound at module level, no helper call where an
expression does.
"""

from __future__ import annotations

from ledger.core.margin import av_imr
from ledger.core.members import BUY, BY_ADL, BY_VAULT, IOC, MARKET, TAKE_PROFIT
from ledger.core.positions import fill_realized
from ledger.core.state import (
    FEES,
    LIQ_VAULT,
    Account,
    ExchangeState,
    Market,
    Order,
    Position,
    effective_mode,
)
from ledger.events import outcomes as o
from ledger.events.enums import TP_SL, OrderType, Side


def new_position(st: ExchangeState, a: Account, mkt: str) -> Position:
    """The account's Position in `mkt`, created at the market index on first use."""
    pos = a.positions.get(mkt)
    if pos is None:
        m = st.markets[mkt]
        pos = a.positions[mkt] = Position(m.index)
        m.holders[a.id] = None
        st.dirty_a[a.id] = None
    return pos


def apply_to_position(st: ExchangeState, a: Account, mkt: str, q: int, v: int, realized: int,
                      fee: int, audit: bool = False) -> None:
    """Apply a fill (q, v) with its realized P&L and fee to an account (SPEC 5).

    `audit` (book fills only) records a fill that grew |size| and left AV < IMR
    for invariant 7; vault takeovers and ADL are not order-book fills.
    """
    pos = a.positions.get(mkt)
    if pos is None:
        pos = new_position(st, a, mkt)
    size = pos.size
    m = st.markets[mkt]
    if size == 0:
        # A flat position carries no funding; it (re)opens at the current index.
        pos.idx = m.index
    new = size + q
    pos.size = new
    m.oi_long += (new if new > 0 else 0) - (size if size > 0 else 0)
    pos.cost += v + realized
    pos.realized += realized
    a.balance += realized - fee
    acct = a.id
    st.dirty_a[acct] = None
    st.liq_dirty[acct] = None
    if audit and st.audit_fills and (new if new >= 0 else -new) > (size if size >= 0 else -size):
        av, imr = av_imr(st, a)
        if av < imr:
            st.block.margin_breaches.append((acct, mkt, av, imr))


def fires_below(otype: OrderType, side: Side) -> bool:
    """TP buy and SL sell fire when mark <= trigger; TP sell and SL buy when mark >= trigger."""
    return (otype == TAKE_PROFIT) == (side == BUY)


def book_add(st: ExchangeState, m: Market, od: Order) -> None:
    """Rest an order on its side of the book; count it in B or A unless reduce-only."""
    price = od.price
    assert price is not None
    if od.side == BUY:
        m.bids.add(price, od.id)
    else:
        m.asks.add(price, od.id)
    od.on_book = True
    if not od.reduce_only:
        a = st.accounts[od.acct]
        pos = a.positions.get(od.mkt)
        if pos is None:
            pos = new_position(st, a, od.mkt)
        if od.side == BUY:
            pos.buy_open += od.rem
        else:
            pos.sell_open += od.rem


def order_placed(st: ExchangeState, ev: o.OrderPlaced) -> None:
    oid = ev.order_id
    acct = ev.acct
    mkt = ev.mkt
    side = ev.side
    price = ev.price_st
    otype = ev.type
    tif = ev.tif
    trigger = ev.trigger_st
    od = Order(oid, acct, mkt, side, ev.qty_bq, price, otype, tif, ev.reduce_only, trigger,
               ev.stp)
    st.orders[oid] = od
    st.accounts[acct].orders[oid] = None
    if otype in TP_SL:
        assert trigger is not None
        st.markets[mkt].triggers.add(fires_below(otype, side), trigger, oid)
        od.armed = True
    elif price is not None and tif != IOC and otype != MARKET:
        # A resting-type taker enters the book before it matches; matching only
        # walks the opposite side, and any remainder is simply already resting.
        book_add(st, st.markets[mkt], od)
    st.dirty_o[oid] = None


def _rests(od: Order) -> bool:
    return od.price is not None and od.tif != IOC and od.type != MARKET


def drop_order(st: ExchangeState, od: Order) -> None:
    """Take an open order off the book or the trigger list and forget it."""
    m = st.markets[od.mkt]
    if od.on_book:
        price = od.price
        assert price is not None
        if od.side == BUY:
            m.bids.remove(price, od.id)
        else:
            m.asks.remove(price, od.id)
        od.on_book = False
        if not od.reduce_only:
            a = st.accounts[od.acct]
            pos = a.positions[od.mkt]
            if od.side == BUY:
                pos.buy_open -= od.rem
            else:
                pos.sell_open -= od.rem
    if od.armed:
        assert od.trigger is not None
        m.triggers.remove(fires_below(od.type, od.side), od.trigger, od.id)
        od.armed = False
    del st.orders[od.id]
    del st.accounts[od.acct].orders[od.id]
    st.dirty_o[od.id] = None


def order_cancelled(st: ExchangeState, ev: o.OrderCancelled) -> None:
    drop_order(st, st.orders[ev.order_id])


def order_triggered(st: ExchangeState, ev: o.OrderTriggered) -> None:
    od = st.orders[ev.order_id]
    m = st.markets[od.mkt]
    assert od.trigger is not None
    m.triggers.remove(fires_below(od.type, od.side), od.trigger, od.id)
    od.armed = False
    od.prio = st.seq  # the OrderTriggered seq is its new time priority
    if _rests(od):
        book_add(st, m, od)
    st.dirty_o[od.id] = None


def _reduce_order(st: ExchangeState, m: Market, a: Account, od: Order, k: int) -> None:
    """Take a fill of `k` off order `od` of account `a` in market `m`; forget it when done."""
    on_book = od.on_book
    if on_book and not od.reduce_only:
        pos = a.positions[od.mkt]
        if od.side == BUY:
            pos.buy_open -= k
        else:
            pos.sell_open -= k
    rem = od.rem - k
    od.rem = rem
    oid = od.id
    if rem == 0:
        if on_book:
            # buy_open/sell_open were already reduced above; remove from the side only.
            price = od.price
            assert price is not None
            if od.side == BUY:
                m.bids.remove(price, oid)
            else:
                m.asks.remove(price, oid)
            od.on_book = False
        del st.orders[oid]
        del a.orders[oid]
    st.dirty_o[oid] = None


def filled(st: ExchangeState, ev: o.Filled) -> None:
    """evolve of Filled: look up the fill's entities and apply it (audited for invariant 7
    unless the live engine just checked the fill's margins, `ExchangeState.audit_fills`)."""
    orders = st.orders
    accts = st.accounts
    apply_fill(st, ev, st.markets[ev.mkt], orders[ev.maker_order], orders[ev.taker_order],
               accts[ev.maker], accts[ev.taker], st.audit_fills)


def apply_fill(st: ExchangeState, ev: o.Filled, m: Market, maker_o: Order, taker_o: Order,
               maker_a: Account, taker_a: Account, audit: bool) -> None:
    """Apply a book fill whose market, orders and accounts are given (`filled`'s body)."""
    mkt = ev.mkt
    k = ev.qty_bq
    v = ev.value_qq
    mfee = ev.maker_fee_qq
    tfee = ev.taker_fee_qq
    st.block.fills.append((ev, maker_o.prio, taker_o.prio, taker_o.tif,
                           effective_mode(st, m), m.mark, maker_o.price or 0))
    if ev.taker_side == BUY:
        tq, tv = k, v
    else:
        tq, tv = -k, -v
    apply_to_position(st, taker_a, mkt, tq, tv, ev.taker_realized_qq, tfee, audit)
    apply_to_position(st, maker_a, mkt, -tq, -tv, ev.maker_realized_qq, mfee, audit)
    fees = st.accounts[FEES]
    fees.balance += mfee + tfee
    st.dirty_a[FEES] = None
    _reduce_order(st, m, maker_a, maker_o, k)
    _reduce_order(st, m, taker_a, taker_o, k)
    m.last_trade = ev.price_st
    st.dirty_m[mkt] = None


def _close_to_vault(st: ExchangeState, a: Account, vault: Account, mkt: str,
                    notional: int) -> None:
    pos = a.positions[mkt]
    q, v = -pos.size, -notional
    apply_to_position(st, a, mkt, q, v, fill_realized(pos.size, pos.cost, q, v), 0)
    vpos = new_position(st, vault, mkt)
    apply_to_position(st, vault, mkt, -q, -v, fill_realized(vpos.size, vpos.cost, -q, -v), 0)


def liquidated(st: ExchangeState, ev: o.Liquidated) -> None:
    a = st.accounts[ev.acct]
    st.liq_dirty[ev.acct] = None
    st.dirty_a[ev.acct] = None
    if ev.method == BY_ADL:
        return  # positions move through the Deleveraged events that follow
    vault = st.accounts[LIQ_VAULT]
    for lp in ev.positions:
        _close_to_vault(st, a, vault, lp.mkt, lp.notional_qq)
    cash = ev.fee_qq - (ev.deficit_qq if ev.method == BY_VAULT else 0)
    a.balance -= cash
    vault.balance += cash
    st.dirty_a[LIQ_VAULT] = None


def deleveraged(st: ExchangeState, ev: o.Deleveraged) -> None:
    # The offset takes (qty, value); the liquidated account applies the opposite.
    a = st.accounts[ev.liquidated]
    pos = a.positions[ev.mkt]
    q, v = -ev.qty_bq, -ev.value_qq
    apply_to_position(st, a, ev.mkt, q, v, fill_realized(pos.size, pos.cost, q, v), 0)
    apply_to_position(st, st.accounts[ev.offset], ev.mkt, ev.qty_bq, ev.value_qq,
                      ev.offset_realized_qq, 0)


def socialized(st: ExchangeState, ev: o.SocializedLossApplied) -> None:
    a = st.accounts[ev.acct]
    vault = st.accounts[LIQ_VAULT]
    vault.balance -= ev.vault_paid_qq
    a.balance += ev.vault_paid_qq
    a.debt += ev.bad_debt_qq
    st.bad_debt += ev.bad_debt_qq
    st.dirty_a[ev.acct] = None
    st.dirty_a[LIQ_VAULT] = None
