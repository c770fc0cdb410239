"""Operator rollback, recovery, what-if audit and refunds on a real simulated ledger."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ledger.errors import RollbackRefused
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import Mode, OrderType
from ledger.replay import restore_exact
from ledger.rollback import plan_rollback
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from ledger.store.journal import JournalEntry
from projections import recovery
from projections.refunds import plan_refunds, refund_ref
from projections.remedy import paid_under
from projections.whatif import whatif
from tools.simulate import make_workload, open_or_create, run

SNAP_EVERY = 10
TARGET = 40
ZERO_AT = 41
MARKETS = ("PAXG-PERP", "ETH-PERP")


def _dump(store: ChainStore) -> tuple[object, ...]:
    """Everything a rollback could change, for before/after comparison."""
    return (store.head, store.stats()["events"], [h.hash for h in store.blocks()],
            [s.height for s in store.snapshots()], store.branches(), len(store.journal()))


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A guards-off ledger: trading to TARGET (a snapshot), then a zeroed index at ZERO_AT."""
    path = tmp_path_factory.mktemp("ops") / "ledger"
    wl = make_workload(seed=11, accounts=300, inject=[(ZERO_AT, m) for m in MARKETS])
    with open_or_create(path, guards=False, snapshot_every=SNAP_EVERY,
                        check_invariants=True) as seq:
        run(seq, wl, TARGET + 10)
    return path


@pytest.fixture()
def ledger(incident: Path, tmp_path: Path) -> Path:
    work = tmp_path / "ledger"
    shutil.copytree(incident, work)
    return work


def test_plan_changes_nothing_and_lists_what_would_be_undone(ledger: Path) -> None:
    with ChainStore.open(ledger) as store:
        before = _dump(store)
        plan = plan_rollback(store, TARGET)
        assert _dump(store) == before
        suffix = store.events(TARGET + 1, store.head.height)
    assert plan.depth == 10 and plan.head_height == TARGET + 10
    assert plan.events_total == len(suffix)
    assert sum(plan.events_by_type.values()) == len(suffix)
    assert plan.fills == sum(1 for e in suffix if isinstance(e.event, o.Filled))
    deposits = [e for e in suffix if isinstance(e.event, o.Deposited | o.Withdrew)]
    assert len(plan.flows) == len(deposits) > 0
    assert [f.orig_seq for f in plan.flows] == [e.seq for e in deposits]
    assert plan.liquidations, "the zeroed index should have liquidated someone"


@pytest.mark.parametrize("target,needle", [
    (TARGET + 10, "at or above the head"),
    (TARGET + 50, "at or above the head"),
    (TARGET - 3, "not a snapshot height"),
])
def test_refused_rollbacks_leave_everything_unchanged(ledger: Path, target: int,
                                                      needle: str) -> None:
    with Sequencer.open(ledger) as seq:
        before = _dump(seq.store)
        with pytest.raises(RollbackRefused, match=needle):
            plan_rollback(seq.store, target)
        assert _dump(seq.store) == before


def test_too_deep_a_rollback_needs_force(ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        seq.store.set_config("max_rollback_depth", 5)
        before = _dump(seq.store)
        with pytest.raises(RollbackRefused, match="--force"):
            plan_rollback(seq.store, TARGET)
        assert _dump(seq.store) == before
        assert plan_rollback(seq.store, TARGET, force=True).depth == 10


def test_rollback_restores_the_snapshot_archives_byte_for_byte_and_recovers(
        ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        store = seq.store
        orphaned = [(h.hash, store.iter_raw(h.first_seq, h.last_seq))
                    for h in store.blocks(TARGET + 1, None)]
        orphaned_bytes = [list(raw) for _, raw in orphaned]
        snap = store.snapshot(TARGET)
        rplan = recovery.plan_rollback(store, TARGET)
        plan = rplan.rollback
        result = recovery.execute_recovery(seq, rplan, reason="test", operator="ops")
        # The restored state is the snapshot's, exactly.
        assert result.snapshot_state_hash == snap.state_hash == store.block(TARGET).state_hash
        assert restore_exact(store, TARGET).state_hash() == snap.state_hash
        # Every orphaned event, byte for byte, in the archived branch.
        archived = [list(store.iter_raw(h.first_seq, h.last_seq, branch=result.branch))
                    for h in store.blocks(branch=result.branch)]
        assert archived == orphaned_bytes
        assert [h.hash for h in store.blocks(branch=result.branch)] == [h for h, _ in orphaned]
        # Snapshots above the target are gone (the recovery block has a fresh one); the
        # recovery block is the new head.
        assert [s.height for s in store.snapshots() if s.height > TARGET] == [TARGET + 1]
        assert store.head.height == TARGET + 1
        block = [e.event for e in store.events(TARGET + 1, TARGET + 1)]
        # It opens with the latest guard-approved price of each market the suffix moved,
        # which are the branch's own last prices (no oracle input was refused).
        carried = [e for e in block[1:] if isinstance(e, c.UpdateOracle)]
        assert carried == rplan.oracles and len(carried) == len(MARKETS) + 2
        last_prices = {}
        for env in store.events(branch=result.branch):
            if isinstance(env.event, c.UpdateOracle) and env.height > TARGET:
                last_prices[env.event.mkt] = (env.event.oracle_st, env.event.ext_basis_ppm)
        assert {u.mkt: (u.oracle_st, u.ext_basis_ppm) for u in carried} == last_prices
        assert all(seq.engine.market(m).oracle_st == last_prices[m][0] for m in last_prices)
        rolled = [e for e in block if isinstance(e, o.RolledBack)]
        assert rolled and rolled[0].branch_id == result.branch
        assert rolled[0].snapshot_hash == snap.state_hash
        assert list(rolled[0].flows) == plan.flows
        # Every open order is cancelled except TP/SL; the exchange is POST_ONLY.
        engine = seq.engine
        for acct in engine.accounts():
            for order in engine.open_orders(acct):
                assert order.type in (OrderType.TAKE_PROFIT, OrderType.STOP_LOSS)
        assert all(engine.effective_mode(m) == Mode.POST_ONLY for m in engine.markets())
        # Invariant 1 (conservation) holds with the carried-forward flows included.
        engine.check_invariants(store.head.height)
        g = engine.globals()
        assert g.ext_in - g.ext_out == _external_net(store)
        assert verify_store(store).ok
        assert verify_store(store, branch=result.branch).ok


def _external_net(store: ChainStore) -> int:
    """Deposits minus withdrawals settled on the canonical chain, incl. carried flows."""
    net = 0
    for env in store.iter_events():
        ev = env.event
        if isinstance(ev, o.Deposited):
            net += ev.amount_qq
        elif isinstance(ev, o.Withdrew):
            net -= ev.amount_qq
        elif isinstance(ev, o.RolledBack):
            net += sum(f.amount_qq for f in ev.flows)
    return net


def test_whatif_finds_the_bogus_liquidations_and_refunds_are_idempotent(ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        rplan = recovery.plan_rollback(seq.store, TARGET)
        result = recovery.execute_recovery(seq, rplan, reason="test", operator="ops")
        report = whatif(seq.store, result.branch)
        liquidated = {x["acct"] for x in rplan.rollback.liquidations}
        assert set(report.liquidated_actual) == liquidated
        # The corrected counterfactual applies the index it recomputes instead of the zero:
        # the two zeroed ticks are the corrections, and nothing is refused or halted in C.
        assert [(x.type, x.mkt, x.published, x.why) for x in report.cf.corrections] == [
            ("FundingTick", m, 0, "G3_ZEROED") for m in sorted(MARKETS)]
        assert all(x.used and x.used > 0 for x in report.cf.corrections)
        assert report.counterfactual.rejected_ticks == 0 and report.counterfactual.halts == 0
        # Every account the zeroed index liquidated kept its position in C: all bogus.
        assert set(report.bogus) == liquidated
        by_acct = {d.acct: d for d in report.accounts}
        for acct in liquidated:
            assert not by_acct[acct].liquidated_counterfactual
            assert by_acct[acct].equity_counterfactual_qq != by_acct[acct].equity_actual_qq
        first = recovery.issue_refunds(seq, result.branch, reason="test", operator="ops")
        assert first.paid and first.header is not None and first.rejected == []
        assert first.total_qq == first.plan.total_qq
        assert first.vault_before_qq - first.vault_after_qq == first.total_qq
        done = paid_under(seq.store, refund_ref(result.branch))
        assert done == dict(first.paid)
        again = recovery.issue_refunds(seq, result.branch, reason="again", operator="ops")
        assert again.paid == [] and again.header is None
        assert paid_under(seq.store, refund_ref(result.branch)) == done
        assert plan_refunds(seq.store, result.branch).total_qq == first.plan.total_qq
        journal = [j for j in seq.store.journal() if j["action"] == "refunds"]
        assert len(journal) == 1 and journal[0]["head_height"] == first.header.height


def test_auditor_queries_the_archived_branch_after_more_blocks(ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        rplan = recovery.plan_rollback(seq.store, TARGET)
        result = recovery.execute_recovery(seq, rplan, reason="test", operator="ops")
        liq = rplan.rollback.liquidations[0]
        seq.submit([c.SetMode(c.ALL, Mode.OK, 0, "recovered", "ops")],
                   journal=JournalEntry("mode", "ops", "recovered"),
                   operator_key=seq.operator_key())
        head = seq.store.head
        wl = make_workload(seed=12, accounts=300, inject=[], ref_prefix="after",
                           start_time=head.time - head.height)
        run(seq, wl, 5)
        store = seq.store
        hits = store.events_by(account=liq["acct"], type_code=o.Liquidated.TYPE_CODE,
                               branch=result.branch)
        assert [e.seq for e in hits] == [liq["seq"]]
        assert store.events_by(account=liq["acct"], type_code=o.Liquidated.TYPE_CODE,
                               from_height=TARGET + 1) == []
        assert verify_store(store, branch=result.branch).ok
        assert whatif(store, result.branch).bogus
