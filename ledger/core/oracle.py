"""Oracle updates: mark price and premium (SPEC 3), price sanity G5, mark rule G6, TP/SL triggers.

Mark: in OK mode basis = median(ext_basis, mid_basis, last_trade_basis), a
missing input (empty side, no trade yet) or a spread wider than max_spread
replaced by ext_basis; outside OK basis = ext_basis (G6); then clamped to
+-max_basis and mark = oracle + fl(oracle*basis, PPM). Each update adds the new
basis times the seconds since the previous update to the premium accumulator.

Choices: G6 is a guard, so with guards off the book feeds the mark in
POST_ONLY and CANCEL_ONLY too (reproducing the incident's skew); a HALTED
market's mark and premium are frozen but its oracle and ext_basis are still
recorded (the recovery band needs the external fair price). G5 with guards on:
oracle <= 0 (G5_ZERO), |ext_basis| > max_basis (G5_BASIS), or a move above
max_jump not confirmed by a second update within max_jump of the first
(G5_JUMP, the jump is held as `pending`) is rejected and puts the market in
CANCEL_ONLY; the next update that passes G5 lifts a G5-set CANCEL_ONLY back to
OK. Staleness (oracle older than oracle_max_age_s) suspends liquidations in the
market (ledger.core.liquidation) rather than changing its mode.
"""

from __future__ import annotations

from ledger.core.context import Ctx
from ledger.core.fixedpoint import PPM, clamp, median3, trunc_div
from ledger.core.guards import leave_ok
from ledger.core.matching import run_triggers
from ledger.core.members import CANCEL_ONLY, HALTED, OK
from ledger.core.state import ExchangeState, Market, effective_mode
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.payloads import MarketParams


def basis_for(st: ExchangeState, m: Market, oracle: int, ext_basis: int) -> int:
    """The mark basis (ppm) for an update of the oracle to `oracle` (SPEC 3, G6)."""
    p = m.params
    mb = p.max_basis_ppm
    mode = effective_mode(st, m)
    basis = ext_basis
    if oracle > 0 and (mode == OK or not st.guards):
        bid, ask = m.bids.best(), m.asks.best()
        if bid is None or ask is None or (ask - bid) * PPM > p.max_spread_ppm * oracle:
            mid_b = ext_basis
        else:
            mid_b = trunc_div((bid + ask - 2 * oracle) * PPM, 2 * oracle)
        last_b = trunc_div((m.last_trade - oracle) * PPM, oracle) if m.last_trade else ext_basis
        basis = median3(ext_basis, mid_b, last_b)
    return clamp(basis, -mb, mb)


def g5_failure(p: MarketParams, last_oracle: int, pending: int, oracle: int,
               ext_basis: int) -> tuple[str, int]:
    """G5 on one oracle input: (reason, pending after it), reason "" when it is sane.

    `last_oracle` is the market's current (last accepted) oracle and `pending` a
    jump awaiting confirmation (0: none). A move above max_jump is held as pending
    and accepted only when the next update lands within max_jump of it.
    """
    if oracle <= 0:
        return "G5_ZERO", pending
    if abs(ext_basis) > p.max_basis_ppm:
        return "G5_BASIS", pending
    if abs(oracle - last_oracle) * PPM > p.max_jump_ppm * last_oracle:
        if pending > 0 and abs(oracle - pending) * PPM <= p.max_jump_ppm * pending:
            return "", 0  # a second update confirms the jump
        return "G5_JUMP", oracle
    return "", 0


def update_oracle(ctx: Ctx, cmd: c.UpdateOracle) -> None:
    st = ctx.st
    m = st.markets.get(cmd.mkt)
    if m is None:
        return
    if st.guards:
        reason, pending = g5_failure(m.params, m.oracle, m.pending_oracle, cmd.oracle_st,
                                     cmd.ext_basis_ppm)
        if reason:
            ctx.reject(o.OracleUpdateRejected(m.id, cmd.oracle_st, cmd.ext_basis_ppm, reason,
                                              pending))
            leave_ok(ctx, m, CANCEL_ONLY, reason, "G5")
            return
    apply_oracle(ctx, m, cmd)


def apply_oracle(ctx: Ctx, m: Market, cmd: c.UpdateOracle) -> None:
    """An oracle input that passed G5 (or was screened by G5 elsewhere): mark, premium, TP/SL."""
    st = ctx.st
    oracle, ext = cmd.oracle_st, cmd.ext_basis_ppm
    if effective_mode(st, m) == HALTED:
        ctx.emit(o.OraclePriceUpdated(m.id, oracle, ext, m.basis, m.mark, m.premium_acc,
                                      m.premium_dt))
        return
    basis = basis_for(st, m, oracle, ext)
    mark = oracle + (oracle * basis) // PPM
    elapsed = st.time - m.last_oracle_time
    ctx.emit(o.OraclePriceUpdated(m.id, oracle, ext, basis, mark,
                                  m.premium_acc + basis * elapsed, m.premium_dt + elapsed))
    if st.guards and m.mode == CANCEL_ONLY and m.mode_reason.startswith("G5"):
        ctx.emit(o.ModeChanged(m.id, OK, 0, "G5_CLEARED", "guard:G5"))
    run_triggers(ctx, m.id)
