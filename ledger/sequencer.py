"""The sequencer: the single writer that turns commands into blocks.

It owns the write lock (through `ChainStore.open(write=True)`), runs each
block through the engine (`decide` then `evolve`), appends the IN and OUT
events with the state hash in one durable transaction, and snapshots every
`snapshot_every` blocks. Block time comes from the block's `BeginBlock`,
never from the wall clock.

Restart protocol (G8): before appending anything, `open` checks the tail of
the hash chain, restores the newest snapshot, replays to the head and
requires the head block's state hash. On any mismatch it refuses to start.

Pipelined durable commit: `submit_many` decides block N+1 (engine, state
hash, encoding) while a background thread commits block N (py-lmdb releases
the GIL while LMDB writes and syncs). A block is acknowledged (yielded to the
caller, counted by `info`, visible to readers) only once its transaction has
committed; at most one block is in flight. `submit` is the one-block case.

If a commit fails, the writer stops: the engine's state, which may already
include the next block, is discarded and rebuilt from the log at the last
durable block, and `CommitFailed` says which block failed, why, and what is
durable. If the engine fails mid-block, its state is ahead of the log; the
sequencer then refuses further blocks (restart it to recover from the log),
rather than append anything on top of an unknown state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import structlog

from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.errors import CommandInvalid, CommitFailed, LedgerError, VerificationFailed
from ledger.events.codec import Envelope
from ledger.events.commands import BeginBlock, EndBlock, SetGuards
from ledger.gcpause import gc_paused
from ledger.markets import Listing
from ledger.replay import replay, restore
from ledger.store.blocks import BlockHeader, follows_in_time
from ledger.store.chain import ChainStore, PreparedBlock, SnapshotInfo, verify_store
from ledger.store.pipeline import CommitPipeline

log = structlog.get_logger("ledger.sequencer")

#: How many blocks at the tail the restart protocol re-hashes in full.
TAIL_BLOCKS = 64


@dataclass
class BlockOutcome:
    """What one appended block did."""

    header: BlockHeader
    envelopes: list[Envelope]
    rejections: list[Envelope]
    refused: list[tuple[int, CommandInvalid]] = field(default_factory=list)
    snapshot: SnapshotInfo | None = None


@dataclass
class _Staged:
    """A block decided and prepared, waiting for (or in) its durable commit."""

    block: PreparedBlock
    outcome: BlockOutcome
    #: the engine snapshot to store with it (None: not a snapshot height)
    snapshot: bytes | None


class Sequencer:
    """The single writer of one ledger (see module docstring)."""

    def __init__(self, store: ChainStore, engine: Engine, *,
                 check_invariants: bool = False) -> None:
        self.store = store
        self.engine = engine
        self.check_invariants = check_invariants
        self._poisoned: str | None = None
        self._pipe = CommitPipeline(store)
        #: seconds the writer's thread spent per stage (the commit's are on the pipeline)
        self.timings = {"decide": 0.0, "hash": 0.0, "prepare": 0.0}

    # -- lifecycle -----------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, chain_id: str,
               listings: Sequence[Listing], guards: bool = True, genesis_time: int = 0,
               config: dict[str, Any] | None = None,
               check_invariants: bool = False) -> Sequencer:
        """Create a ledger and write its genesis block (height 0)."""
        cfg = dict(config or {})
        cfg["guards"] = guards
        store = ChainStore.create(path, chain_id=chain_id, config=cfg)
        seq = cls(store, Engine(), check_invariants=check_invariants)
        try:
            seq.submit(genesis_commands(listings, time=genesis_time, guards_enabled=guards))
            seq.snapshot()
        except BaseException:
            seq.close()
            raise
        log.info("ledger created", path=str(path), chain_id=chain_id, guards=guards,
                 markets=[lst.mkt for lst in listings])
        return seq

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, check_invariants: bool = False) -> Sequencer:
        """Open an existing ledger for writing, after the restart protocol passes."""
        store = ChainStore.open(path, write=True)
        try:
            engine = recover(store)
        except BaseException:
            store.close()
            raise
        return cls(store, engine, check_invariants=check_invariants)

    def close(self) -> None:
        self._pipe.close()
        self.store.close()

    def __enter__(self) -> Sequencer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending -----------------------------------------------------------

    @property
    def next_height(self) -> int:
        """The height the next submitted block will get (the block in flight counts)."""
        return self._pipe.tip.height + 1

    @property
    def stage_seconds(self) -> dict[str, float]:
        """Seconds per stage so far: the writer's thread, the commit thread, waiting on it."""
        return {**self.timings, "commit": self._pipe.commit_seconds,
                "wait": self._pipe.wait_seconds}

    def submit(self, commands: Sequence[Any]) -> BlockOutcome:
        """Run one block of commands and append it; returns once the block is durable.

        A block starts with `BeginBlock(time)`; without one, the time of the
        block before is carried. Commands refused at the door (unknown account
        or market, off tick, ...) are left out of the log and listed in `refused`.
        """
        (outcome,) = self.submit_many([commands])
        return outcome

    def submit_many(self, blocks: Iterable[Sequence[Any]]) -> Iterator[BlockOutcome]:
        """Run and append blocks in order, yielding each once it is durable (pipelined).

        Block N+1 is decided while block N commits in the background, so `blocks`
        may be a generator that reads the engine (it holds every block decided so
        far, acknowledged or not). A block refused before the engine runs (bad
        BeginBlock time) raises CommandInvalid after the block before it is
        acknowledged; a failed commit raises CommitFailed (see the module docstring).
        """
        pending: _Staged | None = None
        try:
            for commands in blocks:
                try:
                    staged = self._stage(list(commands))
                except BaseException:
                    if pending is not None:
                        done, pending = pending, None
                        yield self._acknowledge(done)
                    raise
                if pending is not None:
                    done, pending = pending, None
                    yield self._acknowledge(done)
                self._pipe.start(staged.block, staged.snapshot)
                pending = staged
            if pending is not None:
                done, pending = pending, None
                yield self._acknowledge(done)
        finally:
            if pending is not None:  # the caller stopped early: finish the block in flight
                self._acknowledge(pending)

    def _stage(self, cmds: list[Any]) -> _Staged:
        """Decide block `next_height` and prepare it on the tip (engine and encoding)."""
        if self._poisoned:
            raise LedgerError(f"the sequencer stopped after an earlier failure "
                              f"({self._poisoned}); restart it to recover from the log")
        tip = self._pipe.tip
        height = tip.height + 1
        if not cmds or not isinstance(cmds[0], BeginBlock):
            cmds.insert(0, BeginBlock(tip.time))
        if not isinstance(cmds[-1], EndBlock):
            cmds.append(EndBlock())
        if type(cmds[0].time) is not int:
            raise CommandInvalid(f"block {height} must open with BeginBlock(time)")
        if not follows_in_time(cmds[0].time, tip.time):
            # Refused before the engine runs, so the sequencer stays usable.
            raise CommandInvalid(f"BeginBlock.time {cmds[0].time} is before the head's block "
                                 f"time {tip.time}; block time never goes backwards")
        timings = self.timings
        try:
            # One GC pause across decide/evolve, hashing and encoding.
            with gc_paused():
                t0 = time.perf_counter()
                decided = self.engine.execute_block(height, cmds, admit=True)
                t1 = time.perf_counter()
                state_hash = self.engine.block_hash()
                if self.check_invariants:
                    self.engine.check_invariants(height)
                t2 = time.perf_counter()
                block = self.store.prepare(decided.envelopes, height=height, time=cmds[0].time,
                                           state_hash=state_hash, on=tip)
                timings["decide"] += t1 - t0
                timings["hash"] += t2 - t1
                timings["prepare"] += time.perf_counter() - t2
        except BaseException as exc:
            self._poisoned = f"block {height}: {exc}"
            raise
        every = int(self.store.config.get("snapshot_every", 0) or 0)
        snap = self.engine.snapshot_bytes() if every and height > 0 and \
            height % every == 0 else None
        outcome = BlockOutcome(block.header, decided.envelopes, list(decided.rejections),
                               list(decided.refused))
        return _Staged(block, outcome, snap)

    def _acknowledge(self, staged: _Staged) -> BlockOutcome:
        """Wait for a block's commit; the outcome once durable, else stop the writer."""
        try:
            _, staged.outcome.snapshot = self._pipe.finish()
        except BaseException as exc:
            self._stop(staged.block.header.height, exc)
        return staged.outcome

    def _stop(self, height: int, exc: BaseException) -> NoReturn:
        """A commit failed: discard every undurable block, rebuild the engine, refuse more."""
        durable = self.store.head
        if durable.height >= height:
            # The block landed and only its snapshot failed: the chain is whole.
            raise exc
        self._poisoned = f"block {height} was not committed: {exc}"
        log.error("commit failed; writer stopped", height=height, durable=durable.height,
                  error=str(exc))
        # The engine may hold this block and the next: rebuild it from the log.
        try:
            self.engine = recover(self.store)
        except BaseException as rexc:  # the log itself unreadable: keep nothing
            log.error("could not rebuild the engine from the log", error=str(rexc))
        raise CommitFailed(height, durable.height, exc) from exc

    def snapshot(self) -> SnapshotInfo:
        """Snapshot the state at the head (a verified cache of the projection)."""
        head = self.store.head
        return self.store.put_snapshot(head.height, self.engine.state_hash(),
                                       self.engine.snapshot_bytes())

    def set_guards(self, enabled: bool, *, reason: str, operator: str) -> BlockOutcome:
        """Switch the data-check guards, recorded in the log and the journal."""
        out = self.submit([SetGuards(enabled, reason, operator)])
        self.store.append_journal("guards", operator=operator, reason=reason,
                                  details={"enabled": enabled, "height": out.header.height})
        return out


def recover(store: ChainStore) -> Engine:
    """Restart protocol: verify the chain's tail, restore, replay, match the head hash."""
    head = store.head
    if head.height < 0:
        return Engine()
    lo = max(0, head.height - TAIL_BLOCKS + 1)
    report = verify_store_tail(store, lo)
    if report is not None:
        raise VerificationFailed(report[0], f"restart refused: {report[1]}")
    engine, base = restore(store, at_or_below=head.height)
    replay(store, engine, base + 1, head.height, check=True)
    if engine.state_hash() != store.block(head.height).state_hash:
        raise VerificationFailed(head.height, "restart refused: replayed state hash differs "
                                 "from the head block's")
    log.info("restart verified", head=head.height, snapshot=base)
    return engine


def verify_store_tail(store: ChainStore, from_height: int) -> tuple[int, str] | None:
    """Re-hash the blocks from `from_height` to the head; (height, reason) of the first bad."""
    from ledger.store.blocks import events_hash, header_hash

    prev = store.block(from_height - 1).hash if from_height > 0 else None
    for hdr in store.blocks(from_height, None):
        if header_hash(*hdr[:7]) != hdr.hash:
            return hdr.height, "header hash does not match its contents"
        if prev is not None and hdr.prev_hash != prev:
            return hdr.height, "prev hash does not link to the block before"
        raw = [data for _, data in store.iter_raw(hdr.first_seq, hdr.last_seq)]
        if len(raw) != hdr.count or events_hash(raw) != hdr.events_hash:
            return hdr.height, "events hash does not match the stored events"
        prev = hdr.hash
    return None


__all__ = ["BlockOutcome", "Sequencer", "recover", "verify_store", "verify_store_tail"]
