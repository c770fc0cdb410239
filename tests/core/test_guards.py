"""Guards G1-G7 and the 19 Jan 2026 incident: a zeroed funding index."""

from __future__ import annotations

from ledger.core import LIQ_VAULT
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import FundingResumeAction, Mode
from tests.stubs import (
    BTC,
    BTC_1,
    BTC_MARK,
    BUY,
    PX,
    SELL,
    USD,
    Sim,
    limit,
    oracle,
    outs,
    reasons,
    simple_listing,
)

INDEX = 600_000_000_000  # the cumulative index BTC-PERP migrates with


def healthy_pair(guards: bool) -> Sim:
    """carol long 1 BTC, erin short 1 BTC, $5,000 each (AV ~ $4,985 vs MMR $1,500)."""
    s = Sim([simple_listing(index=INDEX)], guards=guards)
    s.block(c.Deposit(LIQ_VAULT, 1_000_000 * USD, "seed"))
    s.fund("carol", 5_000 * USD)
    s.fund("erin", 5_000 * USD)
    s.block(limit("erin", SELL, BTC_1, BTC_MARK))
    s.block(limit("carol", BUY, BTC_1, BTC_MARK))
    assert s.engine.position("erin", BTC)[2] == INDEX
    return s


def zeroed_tick(s: Sim) -> c.FundingTick:
    m = s.engine.market(BTC)
    return c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time, 0)


def test_zeroed_index_with_guards_off_is_applied_and_liquidates_a_healthy_short() -> None:
    s = healthy_pair(guards=False)
    r = s.block(zeroed_tick(s), dt=60)
    (t,) = outs(r, o.FundingTicked)
    assert (t.prev_index, t.new_index) == (INDEX, 0)
    # erin's pending funding: fl(-(-1e10) * (0 - 6e11), 1e12) = -$6,000 -> AV ~ -$1,015
    (liq,) = outs(r, o.Liquidated)
    assert liq.acct == "erin" and liq.av_qq == 5_000 * USD + 2_500_000 - 6_000 * USD
    # carol receives the mirror image: +$6,000 of bogus funding, unsettled until she acts
    assert s.engine.account_value("carol") == 5_000 * USD - 15 * USD + 6_000 * USD


def test_zeroed_index_with_guards_on_is_rejected_market_halts_no_liquidation() -> None:
    s = healthy_pair(guards=True)
    r = s.block(zeroed_tick(s), dt=60)
    (rej,) = outs(r, o.FundingTickRejected)
    assert (rej.reason, rej.published_index, rej.prev_index) == ("G3_ZEROED", 0, INDEX)
    assert rej.expected_index == INDEX + 1_041_666
    assert [(h.reason, h.by) for h in outs(r, o.MarketHalted)] == [("G3_ZEROED", "guard:G3")]
    assert outs(r, o.Liquidated) == [] and outs(r, o.FundingTicked) == []
    assert s.engine.market(BTC).funding_index == INDEX
    assert s.engine.effective_mode(BTC) == Mode.HALTED


def test_correct_tick_with_guards_on_is_accepted() -> None:
    s = healthy_pair(guards=True)
    m = s.engine.market(BTC)
    new = s.engine.expected_funding_index(BTC, s.time + 60)
    r = s.block(c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time, new),
                oracle(BTC_MARK), dt=60)
    (t,) = outs(r, o.FundingTicked)
    assert t.new_index == INDEX + 1_041_666


def test_g1_prev_index_mismatch_rejects_and_halts() -> None:
    s = healthy_pair(guards=True)
    m = s.engine.market(BTC)
    r = s.block(c.FundingTick(BTC, s.time + 60, m.funding_index - 1, m.last_funding_time,
                              m.funding_index + 1_041_666), dt=60)
    assert [x.reason for x in outs(r, o.FundingTickRejected)] == ["G1_PREV_MISMATCH"]
    assert s.engine.effective_mode(BTC) == Mode.HALTED


def test_g2_published_index_that_differs_from_the_recomputed_one_is_rejected() -> None:
    s = healthy_pair(guards=True)
    m = s.engine.market(BTC)
    r = s.block(c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time,
                              m.funding_index + 1_041_667), dt=60)
    assert [x.reason for x in outs(r, o.FundingTickRejected)] == ["G2_MISMATCH"]
    assert s.engine.effective_mode(BTC) == Mode.CANCEL_ONLY


def test_g4_gap_moves_to_cancel_only_until_funding_resume() -> None:
    s = healthy_pair(guards=True)
    m = s.engine.market(BTC)
    t = s.time + 600  # max_gap 120 s
    r = s.block(oracle(BTC_MARK),
                c.FundingTick(BTC, t, m.funding_index, m.last_funding_time,
                              s.engine.expected_funding_index(BTC, t)), dt=600)
    assert [x.reason for x in outs(r, o.FundingTickRejected)] == ["G4_GAP"]
    assert s.engine.effective_mode(BTC) == Mode.CANCEL_ONLY
    assert reasons(s.block(limit("carol", SELL, BTC_1 // 10, 50_100 * PX))) == ["MODE"]
    r = s.block(c.FundingResume(BTC, FundingResumeAction.ACCRUE_CAPPED), dt=10)
    (t2,) = outs(r, o.FundingTicked)
    assert t2.dt == 120  # accrued over at most max_gap
    assert [x.action for x in outs(r, o.FundingResumed)] == [FundingResumeAction.ACCRUE_CAPPED]
    assert s.engine.effective_mode(BTC) == Mode.OK
    assert s.engine.market(BTC).last_funding_time == s.time


def test_g4_resume_skip_accrues_nothing() -> None:
    s = healthy_pair(guards=True)
    m = s.engine.market(BTC)
    s.block(c.FundingTick(BTC, s.time + 600, m.funding_index, m.last_funding_time, 1), dt=600)
    r = s.block(c.FundingResume(BTC, FundingResumeAction.SKIP))
    assert outs(r, o.FundingTicked) == []
    assert s.engine.market(BTC).funding_index == INDEX


def test_g5_zero_oracle_is_rejected_and_suspends_trading_and_liquidation() -> None:
    s = healthy_pair(guards=True)
    r = s.block(oracle(0))
    (rej,) = outs(r, o.OracleUpdateRejected)
    assert rej.reason == "G5_ZERO"
    assert s.engine.effective_mode(BTC) == Mode.CANCEL_ONLY
    assert s.engine.market(BTC).oracle_st == BTC_MARK
    # the next sane update lifts the guard's CANCEL_ONLY
    s.block(oracle(BTC_MARK))
    assert s.engine.effective_mode(BTC) == Mode.OK


def test_g5_jump_needs_a_confirming_second_update() -> None:
    s = healthy_pair(guards=True)
    r = s.block(oracle(56_000 * PX))  # +12% > max_jump 10%
    (rej,) = outs(r, o.OracleUpdateRejected)
    assert (rej.reason, rej.pending_st) == ("G5_JUMP", 56_000 * PX)
    assert s.engine.effective_mode(BTC) == Mode.CANCEL_ONLY
    r = s.block(oracle(56_100 * PX))  # within max_jump of the pending jump: confirmed
    (up,) = outs(r, o.OraclePriceUpdated)
    assert up.oracle_st == 56_100 * PX
    assert s.engine.effective_mode(BTC) == Mode.OK


def test_g5_jump_with_guards_off_is_applied_at_once() -> None:
    s = healthy_pair(guards=False)
    s.block(oracle(56_000 * PX))
    assert s.engine.market(BTC).oracle_st == 56_000 * PX


def skewed_post_only_book(guards: bool) -> Sim:
    """POST_ONLY with a 0.5% band; a book at 50,070/50,080; last trade 50,000; oracle 49,950."""
    s = healthy_pair(guards=guards)
    s.block(c.SetMode(BTC, Mode.POST_ONLY, 5_000, "recovery", "op"))
    s.fund("mm", 100_000 * USD)
    s.block(limit("mm", BUY, BTC_1 // 10, 50_070 * PX, tif=c.TimeInForce.POST_ONLY),
            limit("mm", SELL, BTC_1 // 10, 50_080 * PX, tif=c.TimeInForce.POST_ONLY))
    s.block(oracle(49_950 * PX))
    return s


def test_g6_mark_ignores_the_book_outside_ok_with_guards_on() -> None:
    s = skewed_post_only_book(guards=True)
    assert (s.engine.market(BTC).basis_ppm, s.engine.market(BTC).mark_st) == (0, 49_950 * PX)


def test_g6_off_lets_the_book_move_the_mark_in_post_only() -> None:
    s = skewed_post_only_book(guards=False)
    # median(ext 0, mid tr(125e6/49_950) = 2_502, last tr(50e6/49_950) = 1_001) = 1_001
    m = s.engine.market(BTC)
    assert (m.basis_ppm, m.mark_st) == (1_001, 4_995_000_000 + 4_999_995)


def test_g7_liquidation_surge_halts_the_market_instead_of_liquidating() -> None:
    s = Sim(guards=True)
    s.block(c.Deposit(LIQ_VAULT, 1_000_000 * USD, "seed"))
    s.fund("dave", 500_000 * USD)
    for name in ("l1", "l2", "l3"):
        s.fund(name, 3_000 * USD)
        s.block(limit("dave", SELL, BTC_1, BTC_MARK))
        s.block(limit(name, BUY, BTC_1, BTC_MARK))
    r = s.block(oracle(47_000 * PX))
    assert [(h.reason, h.by) for h in outs(r, o.MarketHalted)] == [
        ("LIQUIDATION_SURGE", "guard:G7")]
    assert outs(r, o.Liquidated) == []
    assert s.engine.effective_mode(BTC) == Mode.HALTED
