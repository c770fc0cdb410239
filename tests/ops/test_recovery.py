"""Incident accounting (SPEC 13) on real simulated ledgers: exact integers throughout.

Two chains: a healthy one (guards on, no bad input) and the incident (guards
off, the funding index of two markets published as zero). The refund and
compensation figures are checked against independent computations from the
raw events, not against the code that produced them.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from ledger.core.counterfactual import KEEP, SKIP
from ledger.core.fixedpoint import value
from ledger.core.positions import pending_funding
from ledger.core.state import LIQ_VAULT, SYSTEM_ACCOUNTS
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import FundingResumeAction, Side
from ledger.replay import restore_exact
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore
from projections import recovery
from projections.assess import assess
from projections.compensation import compensation_ref, plan_compensation
from projections.counterfactual import Counterfactual
from projections.refunds import plan_refunds
from projections.remedy import RemedyPlan, paid_under
from projections.whatif import compare_worlds
from tests.stubs import submit as operator_submit
from tools.simulate import make_workload, open_or_create, run

SNAP_EVERY = 10
TARGET = 40
ZERO_AT = 41
MARKETS = ("PAXG-PERP", "ETH-PERP")
USD = 10**6


def _copy(src: Path, tmp: Path) -> Path:
    dst = tmp / "ledger"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Guards on, no bad input; an idle account and a flows-only account beside the crowd."""
    path = tmp_path_factory.mktemp("healthy") / "ledger"
    wl = make_workload(seed=21, accounts=150, inject=[], shocks=False)
    with open_or_create(path, guards=True, snapshot_every=SNAP_EVERY,
                        check_invariants=True) as seq:
        run(seq, wl, TARGET - 1)
        h = seq.store.head.height + 1
        seq.submit([c.BeginBlock(wl.block_time(h)), c.CreateAccount("zz-idle"),
                    c.Deposit("zz-idle", 5_000 * USD, "idle-1"), c.CreateAccount("zz-flows"),
                    c.Deposit("zz-flows", 7_000 * USD, "flows-1")])
        assert seq.store.head.height == TARGET
        run(seq, wl, 5)
        h = seq.store.head.height + 1
        seq.submit([c.BeginBlock(wl.block_time(h)), c.Deposit("zz-flows", 3_000 * USD, "flows-2"),
                    c.Withdraw("zz-flows", 1_000 * USD, "flows-3")])
        run(seq, wl, 5)
    return path


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Guards off: trading to TARGET (a snapshot), then a zeroed index at ZERO_AT."""
    path = tmp_path_factory.mktemp("incident") / "ledger"
    wl = make_workload(seed=11, accounts=300, inject=[(ZERO_AT, m) for m in MARKETS])
    with open_or_create(path, guards=False, snapshot_every=SNAP_EVERY,
                        check_invariants=True) as seq:
        run(seq, wl, TARGET - 1)
        h = seq.store.head.height + 1
        seq.submit([c.BeginBlock(wl.block_time(h)), c.CreateAccount("zz-flows"),
                    c.Deposit("zz-flows", 7_000 * USD, "flows-1")])
        run(seq, wl, 5)
        h = seq.store.head.height + 1
        seq.submit([c.BeginBlock(wl.block_time(h)), c.Deposit("zz-flows", 3_000 * USD, "flows-2"),
                    c.Withdraw("zz-flows", 9_000 * USD, "flows-3")])
        run(seq, wl, 4)
    return path


def _roll_back(path: Path, **kw: object) -> int:
    with Sequencer.open(path) as seq:
        plan = recovery.plan_rollback(seq.store, TARGET, **kw)  # type: ignore[arg-type]
        return recovery.execute_recovery(seq, plan, reason="test", operator="ops").branch


def _check_lines(plan: RemedyPlan) -> None:
    """The by-cause split sums to delta exactly, flows are never harm, only users appear."""
    for ln in plan.accounts:
        assert sum(ln.harm_by_cause.values()) == ln.delta_qq, ln.acct
        assert ln.harm_by_cause["flows"] == 0, ln.acct
        assert ln.harm_qq == max(0, ln.delta_qq)
        assert ln.acct not in SYSTEM_ACCOUNTS
    assert all(ln.harm_qq > 0 for ln in plan.lines)


# -- the healthy chain ---------------------------------------------------------------


def _trading_and_funding(cf: Counterfactual, marks: dict[str, int]) -> dict[str, int]:
    """Independently, from C's raw events: each account's reversed-trade P&L at `marks`
    (fills and fees) plus the funding it settled or accrued in C."""
    start = cf.start_engine().state
    qce = {mkt: m.params.qce for mkt, m in start.markets.items()}
    size = {(a, mkt): p.size for a, acc in start.accounts.items()
            for mkt, p in acc.positions.items()}
    out: dict[str, int] = defaultdict(int)
    for envs in cf.corrected_blocks:
        for e in envs:
            ev = e.event
            if type(ev) is o.Filled:
                sign = 1 if ev.taker_side == Side.BUY else -1
                for acct, q, v, fee in ((ev.taker, sign * ev.qty_bq, sign * ev.value_qq,
                                         ev.taker_fee_qq),
                                        (ev.maker, -sign * ev.qty_bq, -sign * ev.value_qq,
                                         ev.maker_fee_qq)):
                    s = size.get((acct, ev.mkt), 0)
                    m = marks[ev.mkt]
                    out[acct] += value(s + q, m, qce[ev.mkt]) - value(s, m, qce[ev.mkt]) - v - fee
                    size[(acct, ev.mkt)] = s + q
            elif type(ev) is o.FundingSettled:
                out[ev.acct] += ev.amount_qq
    end = cf.corrected.state
    for state, sign in ((end, 1), (start, -1)):
        for acct, a in state.accounts.items():
            for mkt, p in a.positions.items():
                if p.size:
                    out[acct] += sign * pending_funding(p.size, state.markets[mkt].index, p.idx)
    return dict(out)


def test_a_healthy_rollback_refunds_exactly_the_reversed_trades_and_undone_funding(
        healthy: Path, tmp_path: Path) -> None:
    path = _copy(healthy, tmp_path)
    branch = _roll_back(path)
    with ChainStore.open(path) as store:
        plan = plan_refunds(store, branch)
        cf = plan.cf
        # Nothing to correct, so the counterfactual IS the branch, block by block.
        assert cf.corrections == [] and cf.flagged_flows == []
        assert cf.corrected_hashes == [h.state_hash for h in store.blocks(branch=branch)]
        assert not any(type(e.event) is o.Liquidated for b in cf.actual_blocks for e in b)
        _check_lines(plan)
        by = {ln.acct: ln for ln in plan.accounts}
        # No position and no activity on the branch: exactly 0. Flows only: exactly 0.
        assert by["zz-idle"].delta_qq == 0 and by["zz-flows"].delta_qq == 0
        # The rest is the P&L of the reversed trades plus the funding the rollback undid
        # (the recovery restarted funding with SKIP: R accrued none), at R's marks.
        assert plan.funding_resume == "SKIP"
        expected = _trading_and_funding(cf, plan.marks)
        for ln in plan.accounts:
            assert ln.delta_qq == expected.get(ln.acct, 0), ln.acct
            assert ln.harm_by_cause["liquidation"] == 0
        assert plan.lines, "reversed trades leave someone worse off"
        assert sum(ln.harm_by_cause["trading"] for ln in plan.lines) > 0


def test_accrue_capped_funding_restart_is_counted_once(healthy: Path, tmp_path: Path) -> None:
    plans = {}
    for name, action in (("skip", FundingResumeAction.SKIP),
                         ("accrue", FundingResumeAction.ACCRUE_CAPPED)):
        path = _copy(healthy, tmp_path / name)
        branch = _roll_back(path, funding_resume=action)
        with ChainStore.open(path) as store:
            plans[name] = (plan_refunds(store, branch), restore_exact(store, TARGET + 1))
    skip, accrue = plans["skip"][0], plans["accrue"][0]
    assert (skip.funding_resume, accrue.funding_resume) == ("SKIP", "ACCRUE_CAPPED")
    r_accrue = plans["accrue"][1]
    base = skip.cf.start_engine()
    moved = 0
    for a, b in zip(skip.accounts, accrue.accounts, strict=True):
        assert a.acct == b.acct
        for cause in ("trading", "liquidation", "flows", "refunds", "other"):
            assert a.harm_by_cause[cause] == b.harm_by_cause[cause]
        # What the accrual paid each account in R is exactly what the plan no longer owes.
        acc = r_accrue.state.accounts.get(a.acct)
        accrued = 0
        if acc is not None:
            for mkt, p in acc.positions.items():
                idx0 = base.state.markets[mkt].index
                accrued += (pending_funding(p.size, r_accrue.state.markets[mkt].index, p.idx)
                            - pending_funding(p.size, idx0, p.idx)) if p.size else 0
        assert a.harm_by_cause["funding"] - b.harm_by_cause["funding"] == accrued, a.acct
        moved += accrued != 0
    assert moved > 0


# -- the incident --------------------------------------------------------------------


def test_assess_predicts_the_refunds_the_rollback_then_pays(incident: Path,
                                                             tmp_path: Path) -> None:
    path = _copy(incident, tmp_path)
    with ChainStore.open(path) as store:
        before = store.head
        report = assess(store, ZERO_AT, snapshot=TARGET)
        assert store.head == before  # assessing changes nothing
    predicted = {ln.acct: (ln.delta_qq, ln.harm_by_cause) for ln in report.refunds.accounts}
    branch = _roll_back(path)
    with Sequencer.open(path) as seq:
        plan = plan_refunds(seq.store, branch)
        assert {ln.acct: (ln.delta_qq, ln.harm_by_cause) for ln in plan.accounts} == predicted
        assert [x.to_json() for x in plan.cf.corrections] == [
            x.to_json() for x in report.refunds.cf.corrections]
        _check_lines(plan)
        # No line is explained by a flow: an account whose only branch activity was a
        # deposit or a withdrawal (no position, no trade) is owed exactly nothing.
        start = plan.cf.start_engine().state
        traded = {a for b in plan.cf.actual_blocks for e in b if type(e.event) is o.Filled
                  for a in (e.event.maker, e.event.taker)}
        flowed = {e.event.acct for b in plan.cf.actual_blocks for e in b
                  if type(e.event) in (o.Deposited, o.Withdrew)}
        holders = {a for a, acc in start.accounts.items()
                   if any(p.size for p in acc.positions.values())}
        flow_only = flowed - traded - holders
        assert "zz-flows" in flow_only
        for acct in flow_only:
            line = plan.line(acct)
            assert line is not None and line.delta_qq == 0, acct
        # Refunds are paid once, from LIQ_VAULT, and the vault drops by exactly that.
        first = recovery.issue_refunds(seq, branch, reason="incident", operator="ops",
                                       plan=plan)
        assert first.total_qq == plan.total_qq > 0
        assert first.vault_before_qq - first.vault_after_qq == first.total_qq
        again = recovery.issue_refunds(seq, branch, reason="incident", operator="ops")
        assert again.paid == [] and again.header is None


def test_compensation_pays_the_bogus_liquidations_once(incident: Path, tmp_path: Path) -> None:
    path = _copy(incident, tmp_path)
    with Sequencer.open(path) as seq:
        plan = plan_compensation(seq.store, ZERO_AT)
        _check_lines(plan)
        assert plan.cf.stretch.base_height == TARGET  # the newest snapshot below ZERO_AT
        bogus = compare_worlds(plan.cf).bogus
        assert bogus
        # Independently, from the chain's Liquidated events: at the common marks M, a vault
        # takeover moved the account by sum(notional - value(size, M)) - fee + deficit.
        qce = {mkt: m.params.qce for mkt, m in plan.cf.actual.state.markets.items()}
        on_chain: dict[str, int] = defaultdict(int)
        for b in plan.cf.actual_blocks:
            for e in b:
                assert type(e.event) is not o.Deleveraged
                if type(e.event) is o.Liquidated:
                    ev = e.event
                    on_chain[ev.acct] += sum(
                        p.notional_qq - value(p.size_bq, plan.marks[p.mkt], qce[p.mkt])
                        for p in ev.positions) - ev.fee_qq + ev.deficit_qq
        for acct in bogus:
            line = plan.line(acct)
            # Every bogus liquidation is on the plan, its liquidation priced exactly: what
            # the chain's liquidation did to the account, undone (C never liquidated it).
            assert line is not None and line.bogus_liquidation and line.harm_qq > 0, acct
            assert line.harm_by_cause["liquidation"] == -on_chain[acct], acct
            assert line.harm_by_cause["funding"] != 0, acct
        assert sum(plan.line(a).harm_by_cause["liquidation"] > 0  # type: ignore[union-attr]
                   for a in bogus) > 0
        first = recovery.issue_compensation(seq, ZERO_AT, reason="dYdX-style", operator="ops")
        assert first.total_qq == plan.total_qq
        assert first.vault_before_qq - first.vault_after_qq == first.total_qq
        assert paid_under(seq.store, compensation_ref(ZERO_AT)) == dict(first.paid)
        # After paying, the same harm is found (the payouts are the remedy, not the chain)
        # and nothing is outstanding; a second issue pays nothing.
        after = plan_compensation(seq.store, ZERO_AT)
        assert [(ln.acct, ln.harm_qq) for ln in after.lines] == [
            (ln.acct, ln.harm_qq) for ln in plan.lines]
        assert after.outstanding_qq == 0
        again = recovery.issue_compensation(seq, ZERO_AT, reason="again", operator="ops")
        assert again.paid == [] and again.header is None
        assert [j["action"] for j in seq.store.journal()].count("compensation") == 1


def test_operator_overrides_are_listed_and_change_the_counterfactual(incident: Path) -> None:
    with ChainStore.open(incident) as store:
        default = plan_compensation(store, ZERO_AT)
        zeroed = [x.seq for x in default.cf.corrections]
        assert len(zeroed) == len(MARKETS)
        # KEEP both zeroed ticks: C applies them as published, so nothing is corrected
        # and C liquidates exactly as the chain did: no liquidation is bogus.
        kept = plan_compensation(store, ZERO_AT, overrides={s: KEEP for s in zeroed})
        assert kept.cf.corrections == []
        assert compare_worlds(kept.cf).bogus == []
        # SKIP one: listed as the operator's correction, the input left out of C.
        skipped = plan_compensation(store, ZERO_AT, overrides={zeroed[0]: SKIP})
        ops_ = [x for x in skipped.cf.corrections if x.why == "operator"]
        assert [(x.seq, x.used) for x in ops_] == [(zeroed[0], None)]
        # A value: used as given.
        forced = plan_compensation(store, ZERO_AT, overrides={zeroed[1]: 123_456})
        (x,) = [x for x in forced.cf.corrections if x.seq == zeroed[1]]
        assert (x.published, x.used, x.why) == (0, 123_456, "operator")


def test_the_vault_pays_pro_rata_when_short(incident: Path, tmp_path: Path) -> None:
    path = _copy(incident, tmp_path)
    with Sequencer.open(path) as seq:
        plan = plan_compensation(seq.store, ZERO_AT)
        total = plan.total_harm_qq
        # Drain the vault to a tenth of what is owed (an internal transfer to a user).
        keep = total // 10
        vault = seq.engine.balance(LIQ_VAULT)
        operator_submit(seq, [c.IssueRefund(plan.lines[0].acct, vault - keep, LIQ_VAULT,
                                            "drain")])
        short = plan_compensation(seq.store, ZERO_AT)
        assert short.pro_rata
        available = short.vault_available_qq
        assert 0 < available <= keep
        for ln in short.lines:
            assert ln.amount_qq == ln.harm_qq * available // short.total_harm_qq
        assert short.total_qq <= available
        paid = recovery.issue_compensation(seq, ZERO_AT, reason="short", operator="ops")
        assert paid.rejected == [] and paid.total_qq == short.total_qq
