"""`ledgerctl bench rollback`: plan and execute a 100K-event rollback on 1M- and 3M-event chains.

A rollback's cost should depend on the suffix it archives, never on the
chain's length. To build multi-million-event chains in seconds, the history
below the target is store-level filler (the same mix as `bench append`), and
the target block carries a real engine state: its header's state hash is the
engine's, and a verified snapshot of that state sits at the target. The
suffix above the target (about 100K events) is what plan and execute read,
archive and truncate. The recovery block runs through the real engine.
The whole incident demo is timed as well.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events.codec import Envelope
from ledger.events.record import replace
from ledger.markets import DEMO_MARKETS
from ledger.rollback import execute_rollback, plan_rollback
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore
from tools.bench_append import BLOCK, make_blocks


def build_chain(path: Path, total_events: int, suffix_events: int) -> int:
    """A chain of about `total_events`; returns the target height (snapshot there)."""
    engine = Engine()
    genesis = engine.run_block(0, genesis_commands(DEMO_MARKETS, time=0, guards_enabled=True))
    store = ChainStore.create(path, chain_id="bench-rollback",
                              config={"max_rollback_depth": 1_000_000})
    try:
        store.append_block(genesis.envelopes, height=0, time=0, state_hash=genesis.state_hash)
        offset = store.head.seq
        filler = make_blocks(total_events - suffix_events, first_height=1)
        suffix = make_blocks(suffix_events, first_height=1 + len(filler), seed=11)
        height = 0
        for i, blk in enumerate(filler):
            height += 1
            shifted = [replace(e, seq=e.seq + offset, height=height) for e in blk]
            if i == len(filler) - 1:
                # The target block: the engine's state, its seq moved to the chain's.
                engine.state.seq = shifted[-1].seq
                engine = Engine(engine.state)
                state_hash = engine.state_hash()
            else:
                state_hash = bytes(32)
            store.append_block(shifted, height=height, time=height, state_hash=state_hash)
        target = height
        store.put_snapshot(target, state_hash, engine.snapshot_bytes())
        offset = store.head.seq
        for blk in suffix:
            height += 1
            shifted = [replace(e, seq=e.seq - blk[0].seq + 1 + offset, height=height)
                       for e in blk]
            offset += len(shifted)
            store.append_block(shifted, height=height, time=height, state_hash=bytes(32))
        return target
    finally:
        store.close()


def one(path: Path, total: int, suffix: int) -> dict[str, Any]:
    target = build_chain(path, total, suffix)
    with Sequencer(ChainStore.open(path, write=True), Engine()) as seq:
        t0 = time.perf_counter()
        plan = plan_rollback(seq.store, target)
        t1 = time.perf_counter()
        # The ledger's part: restore, recovery block, archive in one transaction. (The
        # recovery service also runs the suffix's counterfactual to choose the prices it
        # carries; this synthetic chain has no real state to re-execute.)
        execute_rollback(seq, plan, reason="bench", operator="bench", oracles=[],
                         funding_resume=None)
        t2 = time.perf_counter()
    return {"plan_s": round(t1 - t0, 4), "execute_s": round(t2 - t1, 4),
            "events_archived": plan.events_total, "chain_events": total}


def run(small: int = 1_000_000, big: int = 3_000_000, suffix: int = 100_000, *,
        demo: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Rollback timings on two chain sizes, and the demo's wall time."""
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-rollback-"))
    try:
        if say:
            say(f"rollback of {suffix:,} events on a {small:,}-event chain")
        a = one(tmp / "small", small, suffix)
        if say:
            say(f"rollback of {suffix:,} events on a {big:,}-event chain")
        b = one(tmp / "big", big, suffix)
        out: dict[str, Any] = {
            "suffix_events": suffix,
            "block_size": BLOCK,
            "rollback_plan_s_1m": a["plan_s"],
            "rollback_execute_s_1m": a["execute_s"],
            "rollback_plan_s_3m": b["plan_s"],
            "rollback_execute_s_3m": b["execute_s"],
            "ratio_3m_to_1m": round(b["execute_s"] / a["execute_s"], 3),
            "events_archived": a["events_archived"],
            "chain_events": [small, big],
        }
        if demo:
            from tools.demo import run_demo

            if say:
                say("the incident demo, defaults")
            t = time.perf_counter()
            summary = run_demo(tmp / "demo")
            out["demo_s"] = round(time.perf_counter() - t, 2)
            out["demo_verified"] = summary["verified"]
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["Envelope", "build_chain", "run"]
