"""Builders of real chains for the projection tests, and the worker they run as a subprocess.

`ChainWriter` is the real single writer (`ledger.sequencer.Sequencer`: the
engine runs each block, the store appends it with its state hash, a snapshot
every N blocks; reopening runs the restart protocol) fed by the simulator's
`Workload`; `rollback` is the operator's rollback (`ledger.rollback`: archive
the suffix, recovery block). `store_chain` builds a store-level chain of
hand-built catalogue events (no engine) for runner mechanics.

As a script (`python tests/projections/chains.py MODE ...`):

    build  PATH BLOCKS SEED      create a chain of BLOCKS blocks, print `OK head`
    append PATH BLOCKS SEED      reopen it (restart protocol) and append BLOCKS more,
                                 printing `A height` after each block
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.core.authority import is_privileged
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import CancelReason, LiquidationMethod, Mode, Side
from ledger.events.payloads import LiquidatedPosition
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore
from ledger.store.journal import JournalEntry
from projections.recovery import execute_recovery, plan_rollback
from tools.workload import Workload

T0 = 1_768_780_800
CHAIN_ID = "projections-test"


class ChainWriter:
    """The sequencer of a test chain plus the workload that feeds it."""

    def __init__(self, seq: Sequencer, workload: Workload) -> None:
        self.seq = seq
        self.workload = workload

    @property
    def store(self) -> ChainStore:
        return self.seq.store

    @property
    def engine(self) -> Any:
        return self.seq.engine

    @classmethod
    def create(cls, path: Path, *, seed: int = 1, accounts: int = 40, snapshot_every: int = 10,
               guards: bool = True, **workload: Any) -> ChainWriter:
        seq = Sequencer.create(path, chain_id=CHAIN_ID, listings=DEMO_MARKETS, guards=guards,
                               genesis_time=T0,
                               config={"snapshot_every": snapshot_every,
                                       "max_rollback_depth": 100_000})
        wl = Workload(seed=seed, accounts=accounts, listings=DEMO_MARKETS, start_time=T0,
                      **workload)
        w = cls(seq, wl)
        w.submit(*wl.setup_commands())
        return w

    @classmethod
    def open(cls, path: Path, *, seed: int = 1, accounts: int = 40,
             **workload: Any) -> ChainWriter:
        """Reopen for writing (the sequencer's restart protocol runs)."""
        wl = Workload(seed=seed, accounts=accounts, listings=DEMO_MARKETS, start_time=T0,
                      **workload)
        return cls(Sequencer.open(path), wl)

    def close(self) -> None:
        self.seq.close()

    def __enter__(self) -> ChainWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, blocks: int) -> None:
        """Append `blocks` simulated blocks after the head."""
        for _ in range(blocks):
            h = self.store.head.height + 1
            self.seq.submit(self.workload.next_block(h, self.engine))

    def submit(self, *cmds: Any) -> None:
        """Append one block of the given commands (after a BeginBlock at the next time);
        operator commands as the operator paths do: journaled and signed."""
        h = self.store.head.height + 1
        block = [c.BeginBlock(self.workload.block_time(h)), *cmds]
        if any(is_privileged(cmd) for cmd in cmds):
            self.seq.submit(block, journal=JournalEntry("mode", "tests", "recovered"),
                            operator_key=self.seq.operator_key())
        else:
            self.seq.submit(block)

    def rollback(self, target: int, *, ref_prefix: str = "b") -> int:
        """The operator's rollback to snapshot height `target` (the suffix is archived, a
        recovery block follows); later blocks come from a workload with other refs."""
        plan = plan_rollback(self.store, target)
        result = execute_recovery(self.seq, plan, reason="test rollback", operator="tests")
        # Block time never goes back: the recovery block kept the archived head's time.
        head = self.store.head
        wl = self.workload
        self.workload = Workload(seed=wl._seed + 1000, accounts=len(wl.personas),
                                 listings=DEMO_MARKETS, start_time=head.time - head.height,
                                 ref_prefix=ref_prefix)
        # The recovery block left every market POST_ONLY; trading resumes (SPEC 12, step 4).
        self.submit(c.SetMode(c.ALL, Mode.OK, 0, "recovered", "tests"))
        return int(result.branch)


def build(path: Path, blocks: int, *, seed: int = 1, **kw: Any) -> None:
    """Create a chain with `blocks` simulated blocks after genesis and setup."""
    with ChainWriter.create(path, seed=seed, **kw) as w:
        w.append(blocks)


# -- store-level chains -------------------------------------------------------------------


def store_chain(path: Path, blocks: int, *, per_block: int = 50, seed: int = 3,
                snapshot_every: int = 10) -> ChainStore:
    """A chain of hand-built OUT events (fills, funding, deposits, liquidations...) with
    fake state hashes, open for writing; no engine is involved."""
    import random

    rng = random.Random(seed)
    store = ChainStore.create(path, chain_id=CHAIN_ID, config={"snapshot_every": snapshot_every})
    accts = [f"a{i:02d}" for i in range(12)]
    seq = 0
    for h in range(blocks + 1):
        records = [c.BeginBlock(T0 + h), *(_random_event(rng, accts, h)
                                           for _ in range(per_block if h else 3))]
        envs = [Envelope(seq + i + 1, h, 0, ev) for i, ev in enumerate(records)]
        seq += len(envs)
        store.append_block(envs, height=h, time=T0 + h, state_hash=_fake_hash(h))
    return store


def _fake_hash(h: int) -> bytes:
    return h.to_bytes(32, "big")


def _random_event(rng: Any, accts: list[str], h: int) -> Any:
    mkt = rng.choice(("BTC-PERP", "ETH-PERP"))
    a, b = rng.sample(accts, 2)
    r = rng.random()
    if r < 0.1 or h == 0:
        return o.Deposited(a, rng.randrange(1, 10**9), f"d{h}-{rng.random():.6f}")
    if r < 0.15:
        return o.Withdrew(a, rng.randrange(1, 10**6), f"w{h}")
    if r < 0.55:
        qty = rng.randrange(1, 9) * 10**6
        px = 5_000_000_000 + rng.randrange(-50, 50) * 100_000
        v = qty * px // 10**9
        return o.Filled(mkt, 1, 2, a, b, rng.choice((Side.BUY, Side.SELL)), qty, px, v,
                        -(v * 50 // 10**6), v * 300 // 10**6, rng.randrange(-10**6, 10**6),
                        rng.randrange(-10**6, 10**6))
    if r < 0.7:
        return o.FundingSettled(a, mkt, rng.randrange(-10**5, 10**5), 10**12, 2 * 10**12,
                                rng.randrange(0, 10**12))
    if r < 0.75:
        return o.FundingTicked(mkt, T0 + h, 10**12, 2 * 10**12, 100, 50, 60, 5_000_000_000)
    if r < 0.78:
        lp = LiquidatedPosition(mkt, 10**6, 5 * 10**6, 5_000_000_000, 10**5, 4 * 10**6,
                                4_000_000_000)
        return o.Liquidated(a, LiquidationMethod.VAULT, 10**5, 2 * 10**5, (lp,), 5000, 0)
    if r < 0.8:
        return o.Deleveraged(mkt, a, b, 10**6, 5 * 10**6, 1234)
    if r < 0.82:
        return o.RefundIssued(a, rng.randrange(1, 10**6), "LIQ_VAULT", f"r{h}")
    return o.OrderCancelled(7, a, mkt, 10**6, CancelReason.USER)


if __name__ == "__main__":
    mode, path, n, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if mode == "build":
        build(path, n, seed=seed)
        print("OK", ChainStore.open(path).head.height, flush=True)
    elif mode == "append":
        with ChainWriter.open(path, seed=seed) as w:
            for _ in range(n):
                w.append(1)
                print("A", w.store.head.height, flush=True)
    else:
        raise SystemExit(f"unknown mode {mode}")
