"""Funding (SPEC 4) and guards G1-G4: ticks, resume after a gap, lazy settlement.

A FundingTick carries the index the funding service published. With guards
off the machine trusts it, exactly as on 19 Jan 2026 (a zeroed index is
applied). With guards on it is checked in this order:

- G1 compare-and-set on (prev_index, prev_time): mismatch -> rejected, market HALTED.
- G4 bounded dt: dt <= 0 or a tick from the future -> rejected; dt > max_gap ->
  rejected, market CANCEL_ONLY until FundingResume (ticks are refused meanwhile).
- G3 no zeroing: new index 0 over a non-zero one -> rejected, market HALTED.
- G2 recompute: the published index must equal prev + ΔI(R, dt, oracle) and
  |ΔI| must respect the cap bound -> else rejected, market CANCEL_ONLY.

Choices: a tick reads its inputs (oracle, premium accumulator, basis) as of
the start of its block, before that block's oracle updates, so the index a
funding service publishes from the state it has seen (Engine.
expected_funding_index) is exactly the one G2 recomputes; the block's own
oracle updates count toward the next tick. P is tr(premium_acc, premium_dt),
or the basis when no time has accumulated; a HALTED market's funding is frozen (ticks are
rejected with HALTED whatever the guards); FundingResume ACCRUE_CAPPED accrues
the gap at the current rate over at most max_gap seconds, SKIP accrues nothing;
both restart the funding clock at the block time and lift a G4 CANCEL_ONLY back
to OK.
"""

from __future__ import annotations

from ledger.core.context import Ctx
from ledger.core.fixedpoint import PPM, S, ceil_div, clamp, pow10_neg, trunc_div
from ledger.core.guards import leave_ok
from ledger.core.members import ACCRUE_CAPPED, CANCEL_ONLY, HALTED, OK
from ledger.core.positions import funding_due
from ledger.core.state import Account, Market, effective_mode, mmf_ppm
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.payloads import MarketParams


def premium_ppm(m: Market, live: bool = False) -> int:
    """P: the time-weighted premium since the last tick, or the basis when none accrued.

    Inside a block the inputs are as of the block start (`fbase`); between blocks
    (`live`, for the read view) the current values are what the next block starts with.
    """
    _, acc, dt, basis = ((m.oracle, m.premium_acc, m.premium_dt, m.basis) if live
                         else m.fbase)
    if dt > 0:
        return trunc_div(acc, dt)
    return basis


def cap_ppm(p: MarketParams) -> int:
    """cap = min(max_rate, fl(clamp_factor*(imf - mmf), PPM))."""
    return min(p.max_rate_ppm, (p.clamp_factor_ppm * (p.imf_ppm - mmf_ppm(p))) // PPM)


def rate_ppm(p: MarketParams, prem: int) -> int:
    """R = clamp(P + clamp(interest - P, -clamp, clamp), -cap, cap); R > 0: longs pay."""
    cap = cap_ppm(p)
    r = prem + clamp(p.interest_ppm - prem, -p.clamp_ppm, p.clamp_ppm)
    return clamp(r, -cap, cap)


def delta_index(p: MarketParams, r: int, dt: int, oracle: int) -> int:
    """ΔI = tr(R*dt*oracle*S, PPM*funding_period_s*10^-qce)."""
    return trunc_div(r * dt * oracle * S, PPM * p.funding_period_s * pow10_neg(p.qce))


def cap_bound(p: MarketParams, dt: int, oracle: int) -> int:
    """G2's bound on |ΔI|: ce(cap*dt*oracle*S, PPM*period*10^-qce)."""
    return ceil_div(cap_ppm(p) * abs(dt) * abs(oracle) * S,
                    PPM * p.funding_period_s * pow10_neg(p.qce))


def expected_tick(m: Market, time: int, live: bool = False) -> tuple[int, int, int, int]:
    """(P, R, dt, new index) of a correct tick at `time` (see premium_ppm for `live`)."""
    p = m.params
    dt = time - m.last_funding_time
    prem = premium_ppm(m, live)
    r = rate_ppm(p, prem)
    return prem, r, dt, m.index + delta_index(p, r, dt, m.oracle if live else m.fbase[0])


def settle(ctx: Ctx, a: Account, mkt: str) -> None:
    """Settle one position's funding up to the market index (emits FundingSettled)."""
    pos = a.positions.get(mkt)
    if pos is None or pos.size == 0:
        return
    index = ctx.st.markets[mkt].index
    if pos.idx == index:
        return
    pay, dust = funding_due(pos.size, index, pos.idx)
    ctx.emit(o.FundingSettled(a.id, mkt, pay, pos.idx, index, dust))


def settle_all(ctx: Ctx, a: Account) -> None:
    """Settle every position of the account, in market-id order."""
    for mkt in sorted(a.positions):
        settle(ctx, a, mkt)


def _reject(ctx: Ctx, cmd: c.FundingTick, m: Market, reason: str, expected: int) -> None:
    ctx.reject(o.FundingTickRejected(cmd.mkt, cmd.time, reason, cmd.new_index, expected,
                                     m.index, m.last_funding_time))


def funding_tick(ctx: Ctx, cmd: c.FundingTick) -> None:
    st = ctx.st
    m = st.markets.get(cmd.mkt)
    if m is None:
        return
    prem, r, dt, expected = expected_tick(m, cmd.time)
    if effective_mode(st, m) == HALTED:
        _reject(ctx, cmd, m, "HALTED", expected)
        return
    if st.guards:
        if cmd.prev_index != m.index or cmd.prev_time != m.last_funding_time:
            _reject(ctx, cmd, m, "G1_PREV_MISMATCH", expected)
            leave_ok(ctx, m, HALTED, "G1_PREV_MISMATCH", "G1")
            return
        if m.funding_gap:
            _reject(ctx, cmd, m, "G4_AWAITING_RESUME", expected)
            return
        if dt <= 0 or cmd.time > st.time:
            _reject(ctx, cmd, m, "G4_BAD_DT", expected)
            return
        if dt > m.params.max_gap_s:
            _reject(ctx, cmd, m, "G4_GAP", expected)
            leave_ok(ctx, m, CANCEL_ONLY, "G4_GAP", "G4")
            return
        if cmd.new_index == 0 and m.index != 0:
            _reject(ctx, cmd, m, "G3_ZEROED", expected)
            leave_ok(ctx, m, HALTED, "G3_ZEROED", "G3")
            return
        if cmd.new_index != expected or abs(expected - m.index) > cap_bound(m.params, dt,
                                                                             m.fbase[0]):
            _reject(ctx, cmd, m, "G2_MISMATCH", expected)
            leave_ok(ctx, m, CANCEL_ONLY, "G2_MISMATCH", "G2")
            return
    apply_tick(ctx, m, cmd, prem, r, dt)


def apply_tick(ctx: Ctx, m: Market, cmd: c.FundingTick, prem: int, r: int, dt: int) -> None:
    """Apply a tick that passed the guards (or whose index a counterfactual recomputed).

    `prem`, `r`, `dt` are `expected_tick`'s for it: the record says how the index moved.
    """
    ctx.emit(o.FundingTicked(cmd.mkt, cmd.time, m.index, cmd.new_index, r, prem, dt,
                             m.fbase[0]))


def funding_resume(ctx: Ctx, cmd: c.FundingResume) -> None:
    st = ctx.st
    m = st.markets.get(cmd.mkt)
    if m is None:
        return
    if cmd.action == ACCRUE_CAPPED:
        p = m.params
        dt = min(st.time - m.last_funding_time, p.max_gap_s)
        if dt > 0:
            prem = premium_ppm(m)
            r = rate_ppm(p, prem)
            new = m.index + delta_index(p, r, dt, m.fbase[0])
            ctx.emit(o.FundingTicked(m.id, st.time, m.index, new, r, prem, dt, m.fbase[0]))
    ctx.emit(o.FundingResumed(m.id, cmd.action, st.time))
    if m.mode == CANCEL_ONLY and m.mode_reason.startswith("G4"):
        ctx.emit(o.ModeChanged(m.id, OK, 0, "G4_RESUMED", "guard:G4"))
