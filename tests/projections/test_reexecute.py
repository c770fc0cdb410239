"""`verify --reexecute`: the stored IN events re-run through the engine reproduce the OUT bytes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ledger.events import outcomes as o
from ledger.events.record import replace
from ledger.store.chain import ChainStore, verify_store
from projections.reexecute import plan_intervals, reexecute
from tests.projections.tamper import forge_event


def test_reexecution_of_a_simulated_chain_passes(sim_chain: Path) -> None:
    with ChainStore.open(sim_chain) as store:
        one = reexecute(store)
        assert one["ok"], one
        assert one["events"] == store.head.seq and one["blocks"] == store.head.height + 1
        part = reexecute(store, from_height=95, to_height=133)
        assert part["ok"] and part["blocks"] == 39


def test_parallel_reexecution_covers_the_same_blocks(sim_chain: Path) -> None:
    with ChainStore.open(sim_chain) as store:
        par = reexecute(store, jobs=2)
        assert par["ok"], par
        assert par["blocks"] == store.head.height + 1 and par["intervals"] > 2
        assert plan_intervals(store, 0, 25) == [(-1, 0), (0, 10), (10, 20), (20, 25)]
        assert plan_intervals(store, 15, 25) == [(10, 20), (20, 25)]


def _first(store: ChainStore, cls: type, lo: int) -> o.Envelope:  # type: ignore[name-defined]
    return next(e for e in store.events(lo, None) if isinstance(e.event, cls))


def test_a_forged_outcome_with_a_consistent_hash_chain_is_found_at_its_height(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    with ChainStore.open(path) as store:
        fill = _first(store, o.Filled, 120)
    forged = replace(fill.event, taker_fee_qq=fill.event.taker_fee_qq + 1)
    height = forge_event(path, fill.seq, forged)
    with ChainStore.open(path) as store:
        assert verify_store(store).ok  # the chain itself checks out
        for jobs in (1, 2):
            rep = reexecute(store, jobs=jobs)
            assert not rep["ok"] and rep["height"] == height
            d = rep["divergence"]
            assert d["seq"] == fill.seq
            assert d["expected_type"] == d["got_type"] == "Filled"
            assert "taker_fee_qq" in rep["reason"]
            assert d["expected"]["payload"]["taker_fee_qq"] == forged.taker_fee_qq


def test_a_forged_event_type_is_reported_with_both_types(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    with ChainStore.open(path) as store:
        cancel = _first(store, o.OrderCancelled, 60)
    ev = cancel.event
    height = forge_event(path, cancel.seq, o.OrderRejected(ev.acct, ev.mkt, "FORGED"))
    with ChainStore.open(path) as store:
        assert verify_store(store).ok
        rep = reexecute(store, jobs=2)
    assert not rep["ok"] and rep["height"] == height
    assert rep["divergence"]["seq"] == cancel.seq
    assert rep["divergence"]["expected_type"] == "OrderRejected"
    assert rep["divergence"]["got_type"] == "OrderCancelled"
