"""The exchange-state projection: rebuild from genesis or a snapshot, time travel, branches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.errors import CommandInvalid, NotFound, VerificationFailed
from ledger.events import commands as c
from ledger.store.chain import ChainStore
from projections.exchange_state import ExchangeStateProjection, rebuild, state_at
from projections.readmodels import ReadModels
from projections.runner import Runner, get_checkpoint
from tests.projections.chains import ChainWriter
from tests.projections.conftest import SIM


def test_rebuild_from_genesis_and_from_a_snapshot_give_the_head_hash(sim_chain: Path) -> None:
    with ChainStore.open(sim_chain) as store:
        head = store.block(store.head.height)
        g = rebuild(store, "genesis")
        s = rebuild(store, "snapshot")
        assert g.match and s.match
        assert g.state_hash == s.state_hash == head.state_hash
        assert g.start_height == -1 and g.events == store.head.seq
        assert s.start_height == max(x.height for x in store.snapshots())
        assert s.events < g.events


def test_rebuild_to_a_height_reports_that_block_header(sim_chain: Path) -> None:
    with ChainStore.open(sim_chain) as store:
        for h in (0, 1, 37, 130):
            rep = rebuild(store, "snapshot", to_height=h)
            assert rep.height == h and rep.match
            assert rep.state_hash == store.block(h).state_hash
        with pytest.raises(CommandInvalid):
            rebuild(store, "snapshot", to_height=store.head.height + 1)
        with pytest.raises(CommandInvalid):
            rebuild(store, "yesterday")


def test_state_at_any_height_is_the_state_the_live_engine_had(tmp_path: Path) -> None:
    hashes: dict[int, bytes] = {}
    balances: dict[int, dict[str, int]] = {}
    with ChainWriter.create(tmp_path / "c", seed=3, accounts=20, snapshot_every=7) as w:
        for _ in range(40):
            w.append(1)
            h = w.store.head.height
            hashes[h] = w.engine.state_hash()
            balances[h] = {a: w.engine.balance(a) for a in w.engine.accounts()}
    with ChainStore.open(tmp_path / "c") as store:
        for h in (2, 7, 8, 13, 14, 29, 41):
            eng = state_at(store, h)
            assert eng.state_hash() == hashes[h] == store.block(h).state_hash
            assert {a: eng.balance(a) for a in eng.accounts()} == balances[h]


def test_a_wrong_state_hash_in_a_header_stops_the_rebuild_at_that_height(
        tmp_path: Path) -> None:
    with ChainWriter.create(tmp_path / "c", seed=3, accounts=20, snapshot_every=0) as w:
        w.append(10)
        # The writer lies about one block's state hash (the store cannot know).
        h = w.store.head.height + 1
        result = w.engine.run_block(h, [c.BeginBlock(w.workload.block_time(h))])
        w.store.append_block(result.envelopes, height=h, time=w.workload.block_time(h),
                             state_hash=bytes(32))
        w.append(3)
    with ChainStore.open(tmp_path / "c") as store:
        rep = rebuild(store, "genesis")
        assert not rep.match and rep.height == h
        assert rep.header_state_hash == bytes(32)
        with pytest.raises(VerificationFailed) as err:
            state_at(store, h + 2)
        assert err.value.height == h


def test_time_travel_on_an_archived_branch(branched_chain: Path) -> None:
    with ChainStore.open(branched_chain) as store:
        rec = store.branch(1)
        assert (rec["base_height"], rec["first_height"]) == (100, 101)
        for h in (101, 125, rec["last_height"]):
            eng = state_at(store, h, branch=1)
            assert eng.state_hash() == store.block(h, branch=1).state_hash
        # At and below the base, a branch shares the canonical history.
        assert state_at(store, 100, branch=1).state_hash() == store.block(100).state_hash
        canon = state_at(store, 125)
        assert canon.state_hash() == store.block(125).state_hash
        assert canon.state_hash() != store.block(125, branch=1).state_hash
        with pytest.raises(CommandInvalid):
            state_at(store, rec["last_height"] + 1, branch=1)
        with pytest.raises(NotFound):
            state_at(store, 5, branch=9)


def test_a_branch_whose_base_left_the_canonical_chain_is_refused(
        branched_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(branched_chain)
    with ChainStore.open(path, write=True) as store:
        store.truncate_to(90, reason="deeper rollback", operator="tests")
    with ChainStore.open(path) as store:
        with pytest.raises(NotFound, match="no longer on the canonical chain"):
            state_at(store, 120, branch=1)
        # Branch 2 (91..) holds the old canonical blocks and is fine.
        assert state_at(store, 120, branch=2).state_hash() == store.block(
            120, branch=2).state_hash


def test_time_travel_starts_from_the_exchange_projection_when_it_is_closer(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        Runner(store, rm).run(ExchangeStateProjection(use_chain_snapshots=False),
                              to_height=147)
        assert get_checkpoint(rm, "exchange").height == 147
        for h in (147, 149, 152):
            eng = state_at(store, h, rm=rm)
            assert eng.state_hash() == store.block(h).state_hash
        assert state_at(store, 120, rm=rm).state_hash() == store.block(120).state_hash
    with ChainWriter.open(path, **SIM) as w:
        w.rollback(140)
        w.append(12)
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        # The projection's state at 147 is on the archived branch now: not used.
        assert state_at(store, 150, rm=rm).state_hash() == store.block(150).state_hash


def test_the_projection_keeps_its_own_state_when_the_newest_snapshot_is_older(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    # Regression: a catch-up used to restore the older chain snapshot over the state it
    # had folded past it, then fold on from its checkpoint with blocks missing.
    path = fresh_copy(sim_chain)
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        runner = Runner(store, rm)
        assert runner.run(ExchangeStateProjection(), to_height=147).start_height == 140
        again = runner.run(ExchangeStateProjection(), to_height=149)
        assert (again.start_height, again.height, again.blocks) == (147, 149, 2)
        assert again.hash == store.block(149).hash
        jump = runner.run(ExchangeStateProjection(), to_height=163)
        assert jump.start_height == 160 and jump.blocks == 3
