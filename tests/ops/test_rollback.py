"""Operator rollback, recovery, what-if audit and refunds on a real simulated ledger."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ledger.errors import RollbackRefused
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import Mode, OrderType
from ledger.rollback import execute_rollback, plan_rollback, restore_exact
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from ledger.store.journal import JournalEntry
from projections.refunds import already_refunded, plan_refunds
from projections.whatif import whatif
from tools import operator as ops
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
        plan = plan_rollback(store, TARGET)
        result = execute_rollback(seq, plan, reason="test", operator="ops")
        # The restored state is the snapshot's, exactly.
        assert result.snapshot_state_hash == snap.state_hash == store.block(TARGET).state_hash
        assert restore_exact(store, TARGET).state_hash() == snap.state_hash
        # Every orphaned event, byte for byte, in the archived branch.
        archived = [list(store.iter_raw(h.first_seq, h.last_seq, branch=result.branch))
                    for h in store.blocks(branch=result.branch)]
        assert archived == orphaned_bytes
        assert [h.hash for h in store.blocks(branch=result.branch)] == [h for h, _ in orphaned]
        # Snapshots above the target are gone; the recovery block is the new head.
        assert max(s.height for s in store.snapshots()) == TARGET
        assert store.head.height == TARGET + 1
        recovery = [e.event for e in store.events(TARGET + 1, TARGET + 1)]
        rolled = [e for e in recovery if isinstance(e, o.RolledBack)]
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
        plan = plan_rollback(seq.store, TARGET)
        result = execute_rollback(seq, plan, reason="test", operator="ops")
        report = whatif(seq.store, result.branch, guards_on=True)
        liquidated = {x["acct"] for x in plan.liquidations}
        assert set(report.liquidated_actual) == liquidated
        assert report.bogus and set(report.bogus) <= liquidated
        # With the guards on the zeroed index never lands.
        assert report.counterfactual.rejected_ticks >= len(MARKETS)
        # Every account the zeroed index liquidated kept its position when guarded:
        # all of them were bogus, and each differs in equity between the two runs.
        assert set(report.bogus) == liquidated
        by_acct = {d.acct: d for d in report.accounts}
        for acct in liquidated:
            assert not by_acct[acct].liquidated_counterfactual
            assert by_acct[acct].equity_counterfactual_qq != by_acct[acct].equity_actual_qq
    rplan = ops.issue_refunds(ledger, result.branch, operator="ops", reason="test")
    plan1, paid1, height1 = rplan
    assert paid1 and height1 is not None
    assert sum(p["amount_qq"] for p in paid1) == plan1.total_qq
    with ChainStore.open(ledger) as store:
        done = already_refunded(store, result.branch)
        assert done == {p["acct"]: p["amount_qq"] for p in paid1}
    plan2, paid2, height2 = ops.issue_refunds(ledger, result.branch, operator="ops",
                                              reason="again")
    assert paid2 == [] and height2 is None
    with ChainStore.open(ledger) as store:
        assert already_refunded(store, result.branch) == done
        assert plan_refunds(store, result.branch).total_qq == plan1.total_qq


def test_auditor_queries_the_archived_branch_after_more_blocks(ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        plan = plan_rollback(seq.store, TARGET)
        result = execute_rollback(seq, plan, reason="test", operator="ops")
        liq = plan.liquidations[0]
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
