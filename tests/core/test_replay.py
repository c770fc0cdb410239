"""Determinism: rebuild equals live, re-execution reproduces OUT bytes, hashes, snapshots.

Also the property tests: random valid and invalid command sequences (orders,
oracle moves incl. crashes, funding ticks incl. zeroed ones, liquidations) keep
every invariant after every block (Sim.block checks them).
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.core import LIQ_VAULT, Engine
from ledger.core.engine import REJECTION_TYPES
from ledger.core.refold import ACTIVE, apply_block_bytes
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import decode, encode, encode_trusted
from ledger.events.enums import LossMode, OrderType, SelfTrade, Side, TimeInForce
from ledger.markets import DEMO_MARKETS
from tests.stubs import USD, Sim, derived, random_commands


def run_random(seed: int, blocks: int, *, guards: bool, loss_mode: LossMode | None = None,
               n_accts: int = 12, per_block: int = 25) -> Sim:
    rng = random.Random(seed)
    s = Sim(DEMO_MARKETS, guards=guards, loss_mode=loss_mode)
    accts = [f"u{i:02d}" for i in range(n_accts)]
    for a in accts:
        s.fund(a, rng.randint(300, 60_000) * USD)
    s.block(c.Deposit(LIQ_VAULT, rng.choice([0, 2_000, 1_000_000]) * USD, "seed"))
    s.fund("lp", 10**9 * USD)
    mkts = tuple(sorted(s.state.markets))
    for _ in range(blocks):
        cmds = random_commands(rng, s.engine, accts, per_block, mkts=mkts)
        mkt = rng.choice(mkts)
        m = s.state.markets[mkt]
        p = m.params
        qty = max(p.step_bq, 50_000 * USD * 10 ** (-p.qce) // max(m.mark, 1)
                  // p.step_bq * p.step_bq)
        for side, k in ((Side.BUY, -3), (Side.SELL, 3)):
            px = max(p.tick_st, (m.mark // p.tick_st + k) * p.tick_st)
            cmds.append(c.PlaceOrder("lp", mkt, side, qty, px, OrderType.LIMIT,
                                     TimeInForce.POST_ONLY, False, None, SelfTrade.EXPIRE_MAKER))
        rng.shuffle(cmds)
        if rng.random() < 0.15:  # a crash or a squeeze in one market
            mkt = rng.choice(mkts)
            m = s.state.markets[mkt]
            cmds.insert(0, c.UpdateOracle(mkt, max(1, m.oracle * rng.choice([92, 95, 105, 108])
                                                   // 100), 0))
        s.block(*cmds, dt=rng.choice([1, 10, 30, 60]))
    return s


def check_replays(s: Sim) -> None:
    live = s.engine
    assert live.state_hash() == live.full_state_hash()
    rebuilt = Engine()
    from_bytes = Engine()
    rerun = Engine()
    for h, r in enumerate(s.results):
        # envelopes survive the codec; rebuild folds them
        datas = [encode(e) for e in r.envelopes]
        envs = [decode(d, e.seq) for d, e in zip(datas, r.envelopes, strict=True)]
        assert rebuilt.apply_block(h, envs) == r.state_hash, f"rebuild differs at height {h}"
        # the stored-bytes fold, which decodes only the events evolve uses, agrees
        first = r.envelopes[0].seq
        assert apply_block_bytes(from_bytes, h, first, datas) == r.state_hash, f"height {h}"
        assert from_bytes.seq == rebuilt.seq
        ins = [e.event for e in envs if e.cause == 0]
        r2 = rerun.run_block(h, ins)
        assert [encode_trusted(e.height, e.cause, e.event) for e in r2.envelopes] == [
            encode_trusted(e.height, e.cause, e.event) for e in r.envelopes], f"height {h}"
        assert [e.seq for e in r2.envelopes] == [e.seq for e in r.envelopes]
        assert r2.state_hash == r.state_hash
    assert rebuilt.full_state_hash() == live.full_state_hash()
    assert rebuilt.snapshot_bytes() == live.snapshot_bytes()
    assert from_bytes.snapshot_bytes() == live.snapshot_bytes()


def test_the_bytes_fold_skips_exactly_the_events_evolve_ignores() -> None:
    from ledger.core.evolve import EVOLVE, _noop
    from ledger.events.record import BY_CODE

    for code in range(256):
        cls = BY_CODE.get(code)
        inert = cls is not None and EVOLVE.get(cls) is _noop
        assert ACTIVE[code] == (0 if inert else 1), code
    assert not ACTIVE[c.PlaceOrder.TYPE_CODE] and ACTIVE[c.BeginBlock.TYPE_CODE]
    assert ACTIVE[o.Filled.TYPE_CODE] and not ACTIVE[o.OrderRejected.TYPE_CODE]


def test_seq_is_gap_free_and_out_events_point_at_their_in_event() -> None:
    s = run_random(7, 20, guards=False)
    seqs = [e.seq for r in s.results for e in r.envelopes]
    assert seqs == list(range(1, len(seqs) + 1))
    last_in = 0
    for r in s.results:
        for e in r.envelopes:
            if e.cause == 0:
                last_in = e.seq
            else:
                assert e.cause == last_in and type(e.event).KIND == "OUT"


def test_rebuild_and_reexecution_reproduce_live_guards_off() -> None:
    check_replays(run_random(1, 60, guards=False))


def test_rebuild_and_reexecution_reproduce_live_guards_on_socialize() -> None:
    check_replays(run_random(2, 60, guards=True, loss_mode=LossMode.SOCIALIZE))


def test_snapshot_round_trip_restores_state_and_hash_and_continues_identically() -> None:
    s = run_random(3, 40, guards=True)
    data = s.engine.snapshot_bytes()
    restored = Engine.from_snapshot(data)
    assert restored.state_hash() == s.engine.state_hash() == restored.full_state_hash()
    assert restored.snapshot_bytes() == data
    # both continue with the same block and stay identical
    rng = random.Random(99)
    accts = s.engine.accounts()
    for h in range(len(s.results), len(s.results) + 15):
        cmds = [c.BeginBlock(s.state.time + 5),
                *random_commands(rng, s.engine, accts, 25, mkts=tuple(s.engine.markets()))]
        a = s.engine.run_block(h, cmds)
        b = restored.run_block(h, cmds)
        assert [encode_trusted(e.height, e.cause, e.event) for e in a.envelopes] == [
            encode_trusted(e.height, e.cause, e.event) for e in b.envelopes]
        assert a.state_hash == b.state_hash


def test_take_snapshot_records_the_current_state_hash() -> None:
    s = run_random(4, 5, guards=False)
    r = s.block(c.TakeSnapshot("periodic"))
    (ev,) = [e.event for e in r.envelopes if isinstance(e.event, o.SnapshotTaken)]
    assert ev.at_seq == r.envelopes[1].seq
    assert len(ev.state_hash) == 32


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), guards=st.booleans(),
       loss=st.sampled_from([None, LossMode.SOCIALIZE]))
def test_random_blocks_keep_every_invariant_and_hashes_agree(seed: int, guards: bool,
                                                            loss: LossMode | None) -> None:
    s = run_random(seed, 40, guards=guards, loss_mode=loss, n_accts=8, per_block=20)
    assert s.engine.state_hash() == s.engine.full_state_hash()
    restored = Engine.from_snapshot(s.engine.snapshot_bytes())
    assert restored.state_hash() == s.engine.state_hash()
    # what evolve keeps up to date incrementally equals what a restore rebuilds
    assert derived(s.engine) == derived(restored)
    for r in s.results:
        assert r.rejections == [e for e in r.envelopes if isinstance(e.event, REJECTION_TYPES)]


def test_conservation_over_a_long_run_with_liquidations() -> None:
    s = run_random(11, 250, guards=False, n_accts=16)
    kinds = {type(e.event).__name__ for r in s.results for e in r.envelopes}
    assert {"Filled", "FundingSettled", "FundingTicked", "Liquidated"} <= kinds
    s.engine.check_invariants(len(s.results))


def test_run_block_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    s = run_random(5, 3, guards=False)
    assert gc.isenabled()
    s.block(c.Deposit("u00", USD, "d"))
    assert gc.isenabled()
    gc.disable()
    try:
        s.block(c.Deposit("u00", USD, "d"))
        assert not gc.isenabled()
    finally:
        gc.enable()
    # so does a block that raises half-way (a command the door would have refused)
    with pytest.raises(TypeError):
        s.engine.run_block(s.height, [c.BeginBlock(s.time), c.Deposit("u00", "1", "d")])
    assert gc.isenabled()
