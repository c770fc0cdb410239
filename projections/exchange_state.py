"""The exchange-state projection: the engine's state rebuilt from the log, and time travel.

Exchange state is a projection of the OUT (and IN) events: restoring the
nearest snapshot and folding the blocks after it (`apply_block_bytes`: the
very `evolve` the live path used, on each block's proven bytes) reproduces it,
and the state hash is compared with each block's header, so a divergence
names its exact height. Time travel folds with `ledger.replay.replay`.

- `rebuild(store, from_=..., to_height=...)`: in memory, from genesis or from
  the nearest snapshot at or below the target, to the target; a report.
- `state_at(store, height, branch=None)`: the `Engine` at any height of the
  canonical chain or of an archived branch (time travel).
- `ExchangeStateProjection`: the same fold as a runner projection, so that a
  long rebuild job checkpoints (the engine snapshot is its saved state) and
  resumes after a kill, and rewinds from a chain snapshot after a rollback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core.engine import Engine
from ledger.core.refold import apply_block_bytes
from ledger.errors import CommandInvalid, NotFound, VerificationFailed
from ledger.replay import replay, restore
from ledger.store.blocks import BlockHeader
from ledger.store.reader import ChainReader
from projections.checkpoints import get_checkpoint, saved_state
from projections.readmodels import ReadModels, Txn

FROM_GENESIS = "genesis"
FROM_SNAPSHOT = "snapshot"


class StateHashMismatch(VerificationFailed):
    """A rebuilt state hash differs from the block header's (exit code 3)."""

    def __init__(self, height: int, got: bytes, expected: bytes) -> None:
        super().__init__(height, f"rebuilt state hash {got.hex()[:16]} differs from the "
                         f"header's {expected.hex()[:16]}")
        self.got = got
        self.expected = expected


@dataclass
class RebuildReport:
    """Where a rebuild got to and whether its state hash matches the block header there."""

    from_: str
    start_height: int
    height: int
    state_hash: bytes
    header_state_hash: bytes
    events: int
    blocks: int
    seconds: float

    @property
    def match(self) -> bool:
        return self.state_hash == self.header_state_hash

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_, "start_height": self.start_height, "height": self.height,
                "state_hash": self.state_hash.hex(),
                "header_state_hash": self.header_state_hash.hex(), "match": self.match,
                "events": self.events, "blocks": self.blocks,
                "seconds": round(self.seconds, 3),
                "events_per_s": round(self.events / self.seconds) if self.seconds > 0 else 0}


def check_height(store: ChainReader, height: int, branch: int | None = None) -> int:
    """Return `height` if the chain (or branch) has a block there, else `CommandInvalid`."""
    if branch is None:
        head = store.head.height
        if not 0 <= height <= head:
            raise CommandInvalid(f"height must be between 0 and the head {head}, was {height}")
        return height
    rec = store.branch(branch)
    last = int(rec["last_height"])
    if not 0 <= height <= last:
        raise CommandInvalid(f"height must be between 0 and branch {branch}'s last height "
                             f"{last}, was {height}")
    return height


def apply_checked(engine: Engine, hdr: BlockHeader, datas: Sequence[bytes]) -> bytes:
    """Fold one block's stored events (already proven by its events hash) into `engine`.

    Raises `VerificationFailed` at the block's height if the state hash after
    it differs from the header's.
    """
    got = apply_block_bytes(engine, hdr.height, hdr.first_seq, datas)
    if got != hdr.state_hash:
        raise StateHashMismatch(hdr.height, got, hdr.state_hash)
    return got


def rebuild(store: ChainReader, from_: str = FROM_SNAPSHOT,
            to_height: int | None = None) -> RebuildReport:
    """Rebuild the exchange state in memory, from genesis or the nearest snapshot.

    Folds to `to_height` (default: the head), comparing the state hash with the
    header at every block. On a mismatch the report stops at that height with
    `match` False (the reached hash and the header's differ). Raises
    `CommandInvalid` for a bad `from_` or height.
    """
    if from_ not in (FROM_GENESIS, FROM_SNAPSHOT):
        raise CommandInvalid(f"--from must be genesis or snapshot, was {from_!r}")
    target = check_height(store, store.head.height if to_height is None else to_height)
    t0 = time.perf_counter()
    if from_ == FROM_SNAPSHOT:
        engine, start = restore(store, at_or_below=target)
    else:
        engine, start = Engine(), -1
    events = 0
    blocks = 0
    for hdr, datas in store.iter_block_bytes(start + 1, target):
        got = apply_block_bytes(engine, hdr.height, hdr.first_seq, datas)
        events += len(datas)
        blocks += 1
        if got != hdr.state_hash:
            return RebuildReport(from_, start, hdr.height, got, hdr.state_hash, events, blocks,
                                 time.perf_counter() - t0)
    header = store.block(target).state_hash
    return RebuildReport(from_, start, target, engine.state_hash(), header, events, blocks,
                         time.perf_counter() - t0)


def state_at(store: ChainReader, height: int, branch: int | None = None, *,
             rm: ReadModels | None = None) -> Engine:
    """The exchange state after block `height` of the canonical chain or an archived branch.

    Canonical: start from the nearest state at or below `height`, the newest
    chain snapshot or (given the read models `rm`) the exchange-state
    projection's saved state if it is newer and still canonical, and fold to
    `height`. Branch: heights up to the branch's base are canonical history;
    above it, restore from the snapshot at or below the base, fold canonical
    blocks to the base, then the branch's own blocks. Every block's state
    hash is checked. Raises `CommandInvalid` for a height outside the chain
    or branch, `NotFound` for an unknown branch or one whose base left the
    canonical chain, `VerificationFailed` where a state hash differs.
    """
    check_height(store, height, branch)
    if branch is not None:
        rec = store.branch(branch)
        base = int(rec["base_height"])
        if height > base:
            try:
                base_hdr = store.block(base)
            except NotFound:
                base_hdr = None
            if base_hdr is None or base_hdr.hash != bytes(rec["base_hash"]):
                raise NotFound(f"branch {branch}: its base block {base} is no longer on the "
                               "canonical chain, so its states cannot be rebuilt")
            engine, start = restore(store, at_or_below=base)
            replay(store, engine, start + 1, base)
            replay(store, engine, base + 1, height, branch=branch)
            return engine
    engine, start = restore(store, at_or_below=height)
    if rm is not None:
        saved = _projection_state(store, rm, height)
        if saved is not None and saved[1] > start:
            engine, start = saved
    replay(store, engine, start + 1, height)
    return engine


def _projection_state(store: ChainReader, rm: ReadModels,
                      height: int) -> tuple[Engine, int] | None:
    """The exchange-state projection's saved engine, if at or below `height` and canonical."""
    ck = get_checkpoint(rm, ExchangeStateProjection.name)
    if not 0 <= ck.height <= height:
        return None
    try:
        if store.block(ck.height).hash != ck.hash:
            return None
    except NotFound:
        return None
    blob = saved_state(rm, ExchangeStateProjection.name, ck.height)
    if blob is None:
        return None
    return Engine.from_snapshot(blob), ck.height


class ExchangeStateProjection:
    """The exchange state as a runner projection (its saved state is an engine snapshot).

    With `use_chain_snapshots`, a run starts from the newest chain snapshot at
    or below its target when that is ahead of its own checkpoint. A rewind
    after a rollback always may.
    """

    name = "exchange"
    retain_states = False

    def __init__(self, *, use_chain_snapshots: bool = True) -> None:
        self.use_chain_snapshots = use_chain_snapshots
        self.engine = Engine()

    def reset(self) -> None:
        self.engine = Engine()

    def load(self, blob: bytes) -> None:
        self.engine = Engine.from_snapshot(blob)

    def dump(self) -> bytes:
        return self.engine.snapshot_bytes()

    def set_namespace(self, ns: int) -> None:
        return None

    def fold(self, hdr: BlockHeader, datas: Sequence[bytes], write: bool) -> None:
        apply_checked(self.engine, hdr, datas)

    def flush(self, txn: Txn, rm: ReadModels, ns: int) -> None:
        return None

    def start_from_chain(self, store: ChainReader, at_or_below: int, above: int) -> int | None:
        """Restore the newest chain snapshot <= at_or_below if it is above `above`."""
        info = store.nearest_snapshot(at_or_below)
        if info is None or info.height <= above:
            return None  # the state this projection already has is as new: keep it
        self.engine, height = restore(store, at_or_below=info.height)
        return height
