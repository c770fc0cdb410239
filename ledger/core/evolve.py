"""evolve(state, event): apply one decided event to the state. No validation, no I/O.

One small function per event type. The live path (decide's `emit`) and every
rebuild (`apply_envelope` over stored envelopes) call exactly these functions,
so live and rebuilt state cannot drift. Besides the canonical state, each
function marks the entities it touched (`state.dirty`, for the incremental
state hash) and feeds the derived liquidation watch (`liq_dirty`,
`move_counter`); neither affects what decide emits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.core.fixedpoint import PPM, S, pow10_neg
from ledger.core.margin import account_margin
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
    mmf_ppm,
)
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import LiquidationMethod, Mode, OrderType, Side, TimeInForce
from ledger.events.record import BY_CODE

G = ("g",)


def _position(st: ExchangeState, a: Account, mkt: str) -> Position:
    pos = a.positions.get(mkt)
    if pos is None:
        m = st.markets[mkt]
        pos = a.positions[mkt] = Position(m.index)
        m.holders[a.id] = None
        st.dirty[("a", a.id)] = None
    return pos


def apply_to_position(st: ExchangeState, a: Account, mkt: str, q: int, v: int, realized: int,
                      fee: int, audit: bool = False) -> None:
    """Apply a fill (q, v) with its realized P&L and fee to an account (SPEC 5).

    `audit` (book fills only) records a fill that grew |size| and left AV < IMR
    for invariant 7; vault takeovers and ADL are not order-book fills.
    """
    pos = _position(st, a, mkt)
    size = pos.size
    if size == 0:
        # A flat position carries no funding; it (re)opens at the current index.
        pos.idx = st.markets[mkt].index
    pos.size = size + q
    pos.cost += v + realized
    pos.realized += realized
    a.balance += realized - fee
    st.dirty[("a", a.id)] = None
    st.liq_dirty[a.id] = None
    if audit and st.audit_fills and abs(size + q) > abs(size):
        av, imr, _ = account_margin(st, a)
        if av < imr:
            st.block.margin_breaches.append((a.id, mkt, av, imr))


def _credit(st: ExchangeState, a: Account, amount: int) -> None:
    """Add to a balance, first repaying any bad debt the account carries."""
    a.balance += amount
    if a.debt and amount > 0:
        repay = min(amount, a.debt)
        a.debt -= repay
        st.bad_debt -= repay


def _dirty_holders(st: ExchangeState, m: Market) -> None:
    """A market became able to liquidate again: re-check everyone holding a position in it."""
    for acct in m.holders:
        st.liq_dirty[acct] = None


def _noop(st: ExchangeState, ev: Any) -> None:
    return None


def _begin_block(st: ExchangeState, ev: c.BeginBlock) -> None:
    st.time = ev.time
    st.block.__init__()  # type: ignore[misc]
    # Funding reads its inputs as of the block start (ledger.core.funding).
    for m in st.markets.values():
        m.fbase = (m.oracle, m.premium_acc, m.premium_dt, m.basis)


def _consume_premium(m: Market) -> None:
    """A tick used the block-start premium: keep only what this block's updates added."""
    oracle, acc, dt, basis = m.fbase
    m.premium_acc -= acc
    m.premium_dt -= dt
    m.fbase = (oracle, 0, 0, basis)


def _account_created(st: ExchangeState, ev: o.AccountCreated) -> None:
    st.accounts[ev.acct] = Account(ev.acct)
    st.dirty[("a", ev.acct)] = None


def _deposited(st: ExchangeState, ev: o.Deposited) -> None:
    _credit(st, st.accounts[ev.acct], ev.amount_qq)
    st.ext_in += ev.amount_qq
    st.dirty[("a", ev.acct)] = None
    st.dirty[G] = None


def _withdrew(st: ExchangeState, ev: o.Withdrew) -> None:
    st.accounts[ev.acct].balance -= ev.amount_qq
    st.ext_out += ev.amount_qq
    st.dirty[("a", ev.acct)] = None
    st.dirty[G] = None
    st.liq_dirty[ev.acct] = None


def _market_listed(st: ExchangeState, ev: o.MarketListed) -> None:
    st.markets[ev.mkt] = Market(ev.mkt, ev.params, ev.oracle_st, ev.funding_index, st.time)
    st.dirty[("m", ev.mkt)] = None


def _params_updated(st: ExchangeState, ev: o.MarketParamsUpdated) -> None:
    m = st.markets[ev.mkt]
    m.params = ev.params
    m.imf = ev.params.imf_ppm
    m.mmf = mmf_ppm(ev.params)
    st.dirty[("m", ev.mkt)] = None
    for acct in m.holders:
        st.liq_dirty[acct] = None


def _oracle_updated(st: ExchangeState, ev: o.OraclePriceUpdated) -> None:
    m = st.markets[ev.mkt]
    d = ev.mark_st - m.mark
    if d:
        m.move_counter += abs(d) * (PPM + mmf_ppm(m.params)) * S
    if m.pending_oracle or st.time - m.last_oracle_time > m.params.oracle_max_age_s:
        _dirty_holders(st, m)  # liquidation was suspended here (G5); it may resume
    m.oracle = ev.oracle_st
    m.ext_basis = ev.ext_basis_ppm
    m.basis = ev.basis_ppm
    m.mark = ev.mark_st
    m.premium_acc = ev.premium_acc
    m.premium_dt = ev.premium_dt
    m.last_oracle_time = st.time
    m.pending_oracle = 0
    st.dirty[("m", ev.mkt)] = None


def _oracle_rejected(st: ExchangeState, ev: o.OracleUpdateRejected) -> None:
    st.markets[ev.mkt].pending_oracle = ev.pending_st
    st.dirty[("m", ev.mkt)] = None


def fires_below(otype: OrderType, side: Side) -> bool:
    """TP buy and SL sell fire when mark <= trigger; TP sell and SL buy when mark >= trigger."""
    return (otype == OrderType.TAKE_PROFIT) == (side == Side.BUY)


def _rests(o_: Order) -> bool:
    return o_.price is not None and o_.tif != TimeInForce.IOC and o_.type != OrderType.MARKET


def _book_add(st: ExchangeState, m: Market, o_: Order) -> None:
    assert o_.price is not None
    (m.bids if o_.side == Side.BUY else m.asks).add(o_.price, o_.id)
    o_.on_book = True
    if not o_.reduce_only:
        pos = _position(st, st.accounts[o_.acct], o_.mkt)
        if o_.side == Side.BUY:
            pos.buy_open += o_.rem
        else:
            pos.sell_open += o_.rem


def _order_placed(st: ExchangeState, ev: o.OrderPlaced) -> None:
    od = Order(ev.order_id, ev.acct, ev.mkt, ev.side, ev.qty_bq, ev.price_st, ev.type, ev.tif,
               ev.reduce_only, ev.trigger_st, ev.stp)
    st.orders[od.id] = od
    st.accounts[od.acct].orders[od.id] = None
    m = st.markets[od.mkt]
    if ev.type == OrderType.STOP_LOSS or ev.type == OrderType.TAKE_PROFIT:
        assert od.trigger is not None
        m.triggers.add(fires_below(od.type, od.side), od.trigger, od.id)
        od.armed = True
    elif _rests(od):
        # A resting-type taker enters the book before it matches; matching only
        # walks the opposite side, and any remainder is simply already resting.
        _book_add(st, m, od)
    st.dirty[("o", od.id)] = None


def _drop_order(st: ExchangeState, od: Order) -> None:
    m = st.markets[od.mkt]
    if od.on_book:
        assert od.price is not None
        (m.bids if od.side == Side.BUY else m.asks).remove(od.price, od.id)
        od.on_book = False
        if not od.reduce_only:
            pos = st.accounts[od.acct].positions[od.mkt]
            if od.side == Side.BUY:
                pos.buy_open -= od.rem
            else:
                pos.sell_open -= od.rem
    if od.armed:
        assert od.trigger is not None
        m.triggers.remove(fires_below(od.type, od.side), od.trigger, od.id)
        od.armed = False
    del st.orders[od.id]
    del st.accounts[od.acct].orders[od.id]
    st.dirty[("o", od.id)] = None


def _order_cancelled(st: ExchangeState, ev: o.OrderCancelled) -> None:
    _drop_order(st, st.orders[ev.order_id])


def _order_triggered(st: ExchangeState, ev: o.OrderTriggered) -> None:
    od = st.orders[ev.order_id]
    m = st.markets[od.mkt]
    assert od.trigger is not None
    m.triggers.remove(fires_below(od.type, od.side), od.trigger, od.id)
    od.armed = False
    od.prio = st.seq  # the OrderTriggered seq is its new time priority
    if _rests(od):
        _book_add(st, m, od)
    st.dirty[("o", od.id)] = None


def _reduce_order(st: ExchangeState, od: Order, k: int) -> None:
    if od.on_book and not od.reduce_only:
        pos = st.accounts[od.acct].positions[od.mkt]
        if od.side == Side.BUY:
            pos.buy_open -= k
        else:
            pos.sell_open -= k
    od.rem -= k
    if od.rem == 0:
        if od.on_book:
            # buy_open/sell_open were already reduced above; remove from the side only.
            m = st.markets[od.mkt]
            assert od.price is not None
            (m.bids if od.side == Side.BUY else m.asks).remove(od.price, od.id)
            od.on_book = False
        del st.orders[od.id]
        del st.accounts[od.acct].orders[od.id]
    st.dirty[("o", od.id)] = None


def _filled(st: ExchangeState, ev: o.Filled) -> None:
    m = st.markets[ev.mkt]
    maker_o = st.orders[ev.maker_order]
    taker_o = st.orders[ev.taker_order]
    scratch = st.block
    scratch.fills.append((ev, maker_o.prio, taker_o.prio, int(taker_o.tif),
                          int(effective_mode(st, m)), m.mark, maker_o.price or 0))
    k = ev.qty_bq
    tq, tv = (k, ev.value_qq) if ev.taker_side == Side.BUY else (-k, -ev.value_qq)
    accts = st.accounts
    apply_to_position(st, accts[ev.taker], ev.mkt, tq, tv, ev.taker_realized_qq, ev.taker_fee_qq,
                      True)
    apply_to_position(st, accts[ev.maker], ev.mkt, -tq, -tv, ev.maker_realized_qq,
                      ev.maker_fee_qq, True)
    fees = accts[FEES]
    fees.balance += ev.maker_fee_qq + ev.taker_fee_qq
    st.dirty[("a", FEES)] = None
    _reduce_order(st, maker_o, k)
    _reduce_order(st, taker_o, k)
    m.last_trade = ev.price_st
    st.dirty[("m", ev.mkt)] = None


def _funding_ticked(st: ExchangeState, ev: o.FundingTicked) -> None:
    m = st.markets[ev.mkt]
    d = ev.new_index - m.index
    if d:
        m.move_counter += abs(d) * PPM * pow10_neg(m.params.qce)
    m.index = ev.new_index
    m.last_funding_time = ev.time
    _consume_premium(m)
    st.block.ticks.append((ev, st.guards))
    st.dirty[("m", ev.mkt)] = None


def _funding_resumed(st: ExchangeState, ev: o.FundingResumed) -> None:
    m = st.markets[ev.mkt]
    m.funding_gap = False
    m.last_funding_time = ev.time
    _consume_premium(m)
    st.dirty[("m", ev.mkt)] = None


def _funding_settled(st: ExchangeState, ev: o.FundingSettled) -> None:
    a = st.accounts[ev.acct]
    a.balance += ev.amount_qq
    a.positions[ev.mkt].idx = ev.idx_to
    st.funding_dust += ev.dust
    st.dirty[("a", ev.acct)] = None
    st.dirty[G] = None


def _close_to_vault(st: ExchangeState, a: Account, vault: Account, mkt: str,
                    notional: int) -> None:
    pos = a.positions[mkt]
    q, v = -pos.size, -notional
    apply_to_position(st, a, mkt, q, v, fill_realized(pos.size, pos.cost, q, v), 0)
    vpos = _position(st, vault, mkt)
    apply_to_position(st, vault, mkt, -q, -v, fill_realized(vpos.size, vpos.cost, -q, -v), 0)


def _liquidated(st: ExchangeState, ev: o.Liquidated) -> None:
    a = st.accounts[ev.acct]
    st.liq_dirty[ev.acct] = None
    st.dirty[("a", ev.acct)] = None
    if ev.method == LiquidationMethod.ADL:
        return  # positions move through the Deleveraged events that follow
    vault = st.accounts[LIQ_VAULT]
    for lp in ev.positions:
        _close_to_vault(st, a, vault, lp.mkt, lp.notional_qq)
    a.balance -= ev.fee_qq
    vault.balance += ev.fee_qq
    if ev.method == LiquidationMethod.VAULT:
        vault.balance -= ev.deficit_qq
        a.balance += ev.deficit_qq
    st.dirty[("a", LIQ_VAULT)] = None


def _deleveraged(st: ExchangeState, ev: o.Deleveraged) -> None:
    # The offset takes (qty, value); the liquidated account applies the opposite.
    a = st.accounts[ev.liquidated]
    pos = a.positions[ev.mkt]
    q, v = -ev.qty_bq, -ev.value_qq
    apply_to_position(st, a, ev.mkt, q, v, fill_realized(pos.size, pos.cost, q, v), 0)
    apply_to_position(st, st.accounts[ev.offset], ev.mkt, ev.qty_bq, ev.value_qq,
                      ev.offset_realized_qq, 0)


def _socialized(st: ExchangeState, ev: o.SocializedLossApplied) -> None:
    a = st.accounts[ev.acct]
    vault = st.accounts[LIQ_VAULT]
    vault.balance -= ev.vault_paid_qq
    a.balance += ev.vault_paid_qq
    a.debt += ev.bad_debt_qq
    st.bad_debt += ev.bad_debt_qq
    st.dirty[("a", ev.acct)] = None
    st.dirty[("a", LIQ_VAULT)] = None
    st.dirty[G] = None


def _market_halted(st: ExchangeState, ev: o.MarketHalted) -> None:
    m = st.markets[ev.mkt]
    m.mode = Mode.HALTED
    m.mode_reason = ev.reason
    st.dirty[("m", ev.mkt)] = None
    _dirty_holders(st, m)


def _market_resumed(st: ExchangeState, ev: o.MarketResumed) -> None:
    m = st.markets[ev.mkt]
    m.mode = Mode.OK
    m.mode_band = 0
    m.mode_reason = ""
    st.dirty[("m", ev.mkt)] = None
    _dirty_holders(st, m)


def _mode_changed(st: ExchangeState, ev: o.ModeChanged) -> None:
    if ev.scope == c.ALL:
        st.mode = ev.mode
        st.mode_band = ev.band_ppm
        st.mode_reason = ev.reason
        st.dirty[G] = None
        for m in st.markets.values():
            _dirty_holders(st, m)
    else:
        m = st.markets[ev.scope]
        m.mode = ev.mode
        m.mode_band = ev.band_ppm
        m.mode_reason = ev.reason
        if ev.reason.startswith("G4"):
            m.funding_gap = True
        st.dirty[("m", ev.scope)] = None
        _dirty_holders(st, m)


def _rolled_back(st: ExchangeState, ev: o.RolledBack) -> None:
    for f in ev.flows:
        a = st.accounts[f.acct]
        if f.amount_qq >= 0:
            _credit(st, a, f.amount_qq)
            st.ext_in += f.amount_qq
        else:
            a.balance += f.amount_qq
            st.ext_out -= f.amount_qq
        st.dirty[("a", f.acct)] = None
        st.liq_dirty[f.acct] = None
    st.dirty[G] = None


def _refund_issued(st: ExchangeState, ev: o.RefundIssued) -> None:
    st.accounts[ev.source].balance -= ev.amount_qq
    _credit(st, st.accounts[ev.acct], ev.amount_qq)
    st.dirty[("a", ev.source)] = None
    st.dirty[("a", ev.acct)] = None
    st.liq_dirty[ev.source] = None
    st.dirty[G] = None


def _guards_set(st: ExchangeState, ev: o.GuardsSet) -> None:
    st.guards = ev.enabled
    st.dirty[G] = None
    for m in st.markets.values():
        _dirty_holders(st, m)  # G5's suspension of liquidations may have ended


def _loss_mode_set(st: ExchangeState, ev: o.LossModeSet) -> None:
    st.loss_mode = ev.mode
    st.dirty[G] = None


EVOLVE: dict[type[Any], Callable[[ExchangeState, Any], None]] = {
    cls: _noop for code, cls in BY_CODE.items() if code < 64
}
EVOLVE.update({
    c.BeginBlock: _begin_block,
    o.AccountCreated: _account_created,
    o.Deposited: _deposited,
    o.Withdrew: _withdrew,
    o.WithdrawRejected: _noop,
    o.MarketListed: _market_listed,
    o.MarketParamsUpdated: _params_updated,
    o.OraclePriceUpdated: _oracle_updated,
    o.OracleUpdateRejected: _oracle_rejected,
    o.OrderPlaced: _order_placed,
    o.OrderRejected: _noop,
    o.OrderCancelled: _order_cancelled,
    o.OrderTriggered: _order_triggered,
    o.Filled: _filled,
    o.FundingTicked: _funding_ticked,
    o.FundingTickRejected: _noop,
    o.FundingResumed: _funding_resumed,
    o.FundingSettled: _funding_settled,
    o.Liquidated: _liquidated,
    o.Deleveraged: _deleveraged,
    o.SocializedLossApplied: _socialized,
    o.MarketHalted: _market_halted,
    o.MarketResumed: _market_resumed,
    o.ModeChanged: _mode_changed,
    o.SnapshotTaken: _noop,
    o.RolledBack: _rolled_back,
    o.RefundIssued: _refund_issued,
    o.RefundRejected: _noop,
    o.BlockCommitted: _noop,
    o.GuardsSet: _guards_set,
    o.LossModeSet: _loss_mode_set,
})


def evolve(state: ExchangeState, event: Any) -> None:
    """Apply one event (IN or OUT) whose seq is already `state.seq`."""
    EVOLVE[type(event)](state, event)


def apply_envelope(state: ExchangeState, env: Envelope) -> None:
    """Rebuild path: take the envelope's seq, then evolve its event."""
    state.seq = env.seq
    EVOLVE[type(env.event)](state, env.event)
