"""The counterfactual's input corrections (SPEC 13), on the pure engine: given, when, then.

A block is run twice from the same state: as the chain ran it, and through
`InputCorrector` (`Engine.run_block(..., inputs=)`), which sees each input at
its turn against the counterfactual state.
"""

from __future__ import annotations

from typing import Any

from ledger.core import LIQ_VAULT, Engine
from ledger.core.counterfactual import ACCEPTED, KEEP, SKIP, InputCorrector
from ledger.core.engine import BlockResult
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import Mode
from tests.core.test_guards import INDEX, healthy_pair
from tests.stubs import BTC, BTC_MARK, PX, USD, Sim, oracle, outs


def pair(guards: bool) -> Sim:
    """carol long 1 BTC, erin short 1 BTC, $5,000 each (test_guards' healthy pair)."""
    return healthy_pair(guards)


def corrected(s: Sim, cmds: list[Any], dt: int = 60, **kw: Any
              ) -> tuple[BlockResult, InputCorrector, Engine]:
    """Run one block through the corrector on a copy of `s`'s engine (seqs 1000, 1001, ...)."""
    engine = Engine.from_snapshot(s.engine.snapshot_bytes())
    block = [c.BeginBlock(s.time + dt), *cmds, c.EndBlock()]
    corr = InputCorrector(**kw)
    corr.begin_block([1000 + i for i in range(len(block))])
    return engine.run_block(s.height, block, inputs=corr), corr, engine


def zeroed(s: Sim, dt: int = 60) -> c.FundingTick:
    m = s.engine.market(BTC)
    return c.FundingTick(BTC, s.time + dt, m.funding_index, m.last_funding_time, 0)


def test_a_zeroed_tick_is_replaced_by_the_index_c_recomputes_and_never_halts() -> None:
    for guards in (False, True):
        s = pair(guards)
        expected = s.engine.expected_funding_index(BTC, s.time + 60)
        r, corr, engine = corrected(s, [zeroed(s)])
        (t,) = outs(r, o.FundingTicked)
        assert (t.prev_index, t.new_index) == (INDEX, expected)
        assert outs(r, o.FundingTickRejected, o.MarketHalted, o.Liquidated) == []
        assert engine.effective_mode(BTC) == Mode.OK
        (x,) = corr.corrections
        assert (x.seq, x.type, x.mkt, x.published, x.used, x.why) == (
            1001, "FundingTick", BTC, 0, expected, "G3_ZEROED")


def test_a_correct_tick_runs_as_published_and_is_no_correction() -> None:
    s = pair(guards=True)
    m = s.engine.market(BTC)
    good = c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time,
                         s.engine.expected_funding_index(BTC, s.time + 60))
    chain = Engine.from_snapshot(s.engine.snapshot_bytes()).run_block(
        s.height, [c.BeginBlock(s.time + 60), good, c.EndBlock()])
    r, corr, _ = corrected(s, [good])
    assert corr.corrections == []
    assert r.state_hash == chain.state_hash
    assert [e.event for e in r.envelopes] == [e.event for e in chain.envelopes]


def test_later_ticks_follow_c_own_index_not_the_published_chain() -> None:
    """After the zero, the feed keeps publishing from 0 (G1 on the chain); C recomputes each."""
    s = pair(guards=False)
    r, corr, engine = corrected(s, [zeroed(s)])
    next_from_zero = c.FundingTick(BTC, s.time + 120, 0, s.time + 60, 12_345)
    block = [c.BeginBlock(s.time + 120), next_from_zero, c.EndBlock()]
    corr.begin_block([2000, 2001, 2002])
    expected = engine.expected_funding_index(BTC, s.time + 120)
    r2 = engine.run_block(s.height + 1, block, inputs=corr)
    (t,) = outs(r2, o.FundingTicked)
    assert t.new_index == expected and t.prev_index == corr.corrections[0].used
    assert [x.why for x in corr.corrections] == ["G3_ZEROED", "G1_PREV_MISMATCH"]


def test_an_absurd_price_is_replaced_by_the_last_good_one_and_a_confirmed_jump_is_kept(
        ) -> None:
    for guards in (False, True):
        s = pair(guards)
        s.block(oracle(BTC_MARK, basis=120))
        good = s.engine.market(BTC)
        absurd = oracle(good.oracle_st * 3)
        r, corr, engine = corrected(s, [absurd])
        (u,) = outs(r, o.OraclePriceUpdated)
        assert (u.oracle_st, u.ext_basis_ppm) == (good.oracle_st, 120)
        assert outs(r, o.OracleUpdateRejected, o.ModeChanged, o.Liquidated) == []
        (x,) = corr.corrections
        assert (x.published, x.used, x.why) == (good.oracle_st * 3, good.oracle_st, "G5_JUMP")
        # A second print within max_jump of the first confirms the move (as G5 does).
        confirm = oracle(good.oracle_st * 3 + 1 * PX)
        corr.begin_block([3000, 3001, 3002])
        r2 = engine.run_block(s.height + 1, [c.BeginBlock(s.time + 61), confirm, c.EndBlock()],
                              inputs=corr)
        (u2,) = outs(r2, o.OraclePriceUpdated)
        assert u2.oracle_st == confirm.oracle_st and len(corr.corrections) == 1


def test_operator_overrides_keep_skip_or_set_a_value() -> None:
    s = pair(guards=False)
    r, corr, _ = corrected(s, [zeroed(s)], overrides={1001: KEEP})
    assert corr.corrections == [] and outs(r, o.FundingTicked)[0].new_index == 0
    r, corr, _ = corrected(s, [zeroed(s)], overrides={1001: SKIP})
    assert outs(r, o.FundingTicked) == []
    assert [(x.used, x.why) for x in corr.corrections] == [(None, "operator")]
    r, corr, _ = corrected(s, [zeroed(s)], overrides={1001: INDEX + 7})
    assert outs(r, o.FundingTicked)[0].new_index == INDEX + 7
    assert [(x.published, x.used, x.why) for x in corr.corrections] == [
        (0, INDEX + 7, "operator")]


def test_inputs_before_the_suspect_window_run_as_on_the_chain() -> None:
    s = pair(guards=False)
    r, corr, _ = corrected(s, [zeroed(s)], first_suspect_seq=5000)
    assert corr.corrections == [] and outs(r, o.FundingTicked)[0].new_index == 0


def test_withdrawals_are_facts_and_flagged_when_the_rules_disagree() -> None:
    s = pair(guards=False)
    s.block(c.SetMode(c.ALL, Mode.POST_ONLY, 0, "maintenance", "ops"))
    w = c.Withdraw("carol", 100 * USD, "bank-9")
    # The chain paid it (say, before the mode changed there): C pays it too, and flags it.
    r, corr, engine = corrected(s, [w], withdrawals={1001: (True, "")})
    assert [type(e) for e in outs(r, o.Withdrew, o.WithdrawRejected)] == [o.Withdrew]
    assert [(f.seq, f.acct, f.amount_qq, f.reason) for f in corr.flagged] == [
        (1001, "carol", 100 * USD, "MODE")]
    # The chain refused one C would pay: refused in C too, flagged ACCEPTED.
    s.block(c.SetMode(c.ALL, Mode.OK, 0, "back", "ops"))
    r, corr, _ = corrected(s, [w], withdrawals={1001: (False, "MARGIN")})
    (rej,) = outs(r, o.WithdrawRejected)
    assert rej.reason == "MARGIN"
    assert [f.reason for f in corr.flagged] == [ACCEPTED]
    # Agreeing outcomes are not flagged.
    r, corr, _ = corrected(s, [w], withdrawals={1001: (True, "")})
    assert corr.flagged == [] and outs(r, o.Withdrew)


def test_a_remedys_own_payouts_are_left_out() -> None:
    s = pair(guards=False)
    refund = c.IssueRefund("carol", 10 * USD, LIQ_VAULT, "compensation-from-9")
    r, _, _ = corrected(s, [refund], drop_refs=["compensation-from-9"])
    assert outs(r, o.RefundIssued) == []
    r, _, _ = corrected(s, [refund])
    assert outs(r, o.RefundIssued)
