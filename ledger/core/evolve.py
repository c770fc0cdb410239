"""evolve(state, event): apply one decided event to the state. No validation, no I/O.

One small function per event type. The live path (decide's `emit`) and every
rebuild (`apply_envelope` over stored envelopes) call exactly these functions,
so live and rebuilt state cannot drift. Besides the canonical state, each
function marks the entities it touched (`dirty_a`/`dirty_o`/`dirty_m`, for the
incremental state hash; the globals are re-digested at every hash update) and
feeds the derived liquidation watch (`liq_dirty`, `move_counter`); neither
affects what decide emits.

This module holds the dispatch table and the account, market, oracle, funding,
mode and transfer events; orders, fills, positions and liquidation outcomes
are in ledger.core.evolve_trading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.core import evolve_trading as tr
from ledger.core.fixedpoint import PPM, S
from ledger.core.members import HALTED, OK
from ledger.core.state import Account, ExchangeState, Market
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.record import BY_CODE

#: re-exported for ledger.core.snapshot and older imports
book_add = tr.book_add
fires_below = tr.fires_below
apply_to_position = tr.apply_to_position


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
    st.dirty_a[ev.acct] = None


def _deposited(st: ExchangeState, ev: o.Deposited) -> None:
    _credit(st, st.accounts[ev.acct], ev.amount_qq)
    st.ext_in += ev.amount_qq
    st.dirty_a[ev.acct] = None


def _withdrew(st: ExchangeState, ev: o.Withdrew) -> None:
    a = st.accounts[ev.acct]
    a.balance -= ev.amount_qq
    st.ext_out += ev.amount_qq
    st.dirty_a[ev.acct] = None
    st.liq_dirty[ev.acct] = None


def _market_listed(st: ExchangeState, ev: o.MarketListed) -> None:
    st.markets[ev.mkt] = Market(ev.mkt, ev.params, ev.oracle_st, ev.funding_index, st.time)
    st.dirty_m[ev.mkt] = None


def _params_updated(st: ExchangeState, ev: o.MarketParamsUpdated) -> None:
    m = st.markets[ev.mkt]
    m.set_params(ev.params)
    st.dirty_m[ev.mkt] = None
    for acct in m.holders:
        st.liq_dirty[acct] = None


def _oracle_updated(st: ExchangeState, ev: o.OraclePriceUpdated) -> None:
    m = st.markets[ev.mkt]
    d = ev.mark_st - m.mark
    if d:
        m.move_counter += abs(d) * (PPM + m.mmf) * S
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
    st.dirty_m[ev.mkt] = None


def _oracle_rejected(st: ExchangeState, ev: o.OracleUpdateRejected) -> None:
    st.markets[ev.mkt].pending_oracle = ev.pending_st
    st.dirty_m[ev.mkt] = None


def _funding_ticked(st: ExchangeState, ev: o.FundingTicked) -> None:
    m = st.markets[ev.mkt]
    d = ev.new_index - m.index
    if d:
        m.move_counter += abs(d) * PPM * m.qdiv
    m.index = ev.new_index
    m.last_funding_time = ev.time
    _consume_premium(m)
    st.block.ticks.append((ev, st.guards))
    st.dirty_m[ev.mkt] = None


def _funding_resumed(st: ExchangeState, ev: o.FundingResumed) -> None:
    m = st.markets[ev.mkt]
    m.funding_gap = False
    m.last_funding_time = ev.time
    _consume_premium(m)
    st.dirty_m[ev.mkt] = None


def _funding_settled(st: ExchangeState, ev: o.FundingSettled) -> None:
    a = st.accounts[ev.acct]
    a.balance += ev.amount_qq
    pos = a.positions[ev.mkt]
    pos.idx = ev.idx_to
    st.funding_dust += ev.dust
    st.dirty_a[ev.acct] = None


def _market_halted(st: ExchangeState, ev: o.MarketHalted) -> None:
    m = st.markets[ev.mkt]
    m.mode = HALTED
    m.mode_reason = ev.reason
    st.dirty_m[ev.mkt] = None
    _dirty_holders(st, m)


def _market_resumed(st: ExchangeState, ev: o.MarketResumed) -> None:
    m = st.markets[ev.mkt]
    m.mode = OK
    m.mode_band = 0
    m.mode_reason = ""
    st.dirty_m[ev.mkt] = None
    _dirty_holders(st, m)


def _mode_changed(st: ExchangeState, ev: o.ModeChanged) -> None:
    if ev.scope == c.ALL:
        st.mode = ev.mode
        st.mode_band = ev.band_ppm
        st.mode_reason = ev.reason
        for m in st.markets.values():
            _dirty_holders(st, m)
    else:
        m = st.markets[ev.scope]
        m.mode = ev.mode
        m.mode_band = ev.band_ppm
        m.mode_reason = ev.reason
        if ev.reason.startswith("G4"):
            m.funding_gap = True
        st.dirty_m[ev.scope] = None
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
        st.dirty_a[f.acct] = None
        st.liq_dirty[f.acct] = None


def _refund_issued(st: ExchangeState, ev: o.RefundIssued) -> None:
    src = st.accounts[ev.source]
    src.balance -= ev.amount_qq
    _credit(st, st.accounts[ev.acct], ev.amount_qq)
    st.dirty_a[ev.source] = None
    st.dirty_a[ev.acct] = None
    st.liq_dirty[ev.source] = None


def _guards_set(st: ExchangeState, ev: o.GuardsSet) -> None:
    st.guards = ev.enabled
    for m in st.markets.values():
        _dirty_holders(st, m)  # G5's suspension of liquidations may have ended


def _loss_mode_set(st: ExchangeState, ev: o.LossModeSet) -> None:
    st.loss_mode = ev.mode


def _key_registered(st: ExchangeState, ev: o.KeyRegistered) -> None:
    st.chain_id = ev.chain_id
    st.keys[ev.key_id] = (int(ev.role), ev.name, ev.public_key, ev.active)


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
    o.OrderPlaced: tr.order_placed,
    o.OrderRejected: _noop,
    o.OrderCancelled: tr.order_cancelled,
    o.OrderTriggered: tr.order_triggered,
    o.Filled: tr.filled,
    o.FundingTicked: _funding_ticked,
    o.FundingTickRejected: _noop,
    o.FundingResumed: _funding_resumed,
    o.FundingSettled: _funding_settled,
    o.Liquidated: tr.liquidated,
    o.Deleveraged: tr.deleveraged,
    o.SocializedLossApplied: tr.socialized,
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
    o.KeyRegistered: _key_registered,
    o.CommandUnauthorized: _noop,
})


def evolve(state: ExchangeState, event: Any) -> None:
    """Apply one event (IN or OUT) whose seq is already `state.seq`."""
    EVOLVE[type(event)](state, event)


def apply_envelope(state: ExchangeState, env: Envelope) -> None:
    """Rebuild path: take the envelope's seq, then evolve its event."""
    state.seq = env.seq
    EVOLVE[type(env.event)](state, env.event)
