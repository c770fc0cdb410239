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
committed, with the writer's signature and any journal record in that same
transaction; at most one block is in flight. `submit` is the one-block case.

If a commit fails, the writer stops: the engine's state, which may already
include the next block, is discarded and rebuilt from the log at the last
durable block, and `CommitFailed` says which block failed, why, and what is
durable. If the engine fails mid-block, its state is ahead of the log; the
sequencer then refuses further blocks (restart it to recover from the log),
rather than append anything on top of an unknown state.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import structlog

from ledger.core.authority import PRIVILEGED, check_block, is_privileged
from ledger.core.engine import Engine, processing_order
from ledger.core.genesis import genesis_commands
from ledger.errors import (
    CommandInvalid,
    CommitFailed,
    LedgerError,
    LedgerExists,
    VerificationFailed,
)
from ledger.events.codec import Envelope
from ledger.events.commands import BeginBlock, EndBlock, OperatorAuth, SetGuards
from ledger.events.enums import KeyRole
from ledger.gcpause import gc_paused
from ledger.keys import OPERATOR_KEY_ENV, WRITER_KEY_ENV, Key, resolve
from ledger.latency import AppendLatency
from ledger.markets import Listing
from ledger.process import pid_alive
from ledger.replay import replay, restore
from ledger.signing import authorise, genesis_authority, keys_for_new_ledger
from ledger.store.blocks import BlockHeader, follows_in_time
from ledger.store.chain import (
    ChainStore,
    PreparedBlock,
    SnapshotInfo,
    ledger_exists,
    verify_store,
)
from ledger.store.journal import JournalEntry
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
    #: the operator action's journal record, committed with the block
    journal: JournalEntry | None = None


class Sequencer:
    """The single writer of one ledger (see module docstring)."""

    def __init__(self, store: ChainStore, engine: Engine, *,
                 check_invariants: bool = False) -> None:
        self.store = store
        self.engine = engine
        self.check_invariants = check_invariants
        self._poisoned: str | None = None
        #: durable append times, for `ledgerctl serve`'s metrics (ledger/latency.py)
        self.latency = AppendLatency(store.path)
        self._pipe = CommitPipeline(store)
        #: seconds the writer's thread spent per stage (the commit's are on the pipeline)
        self.timings = {"decide": 0.0, "hash": 0.0, "prepare": 0.0}

    # -- lifecycle -----------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, chain_id: str,
               listings: Sequence[Listing], guards: bool = True, genesis_time: int = 0,
               config: dict[str, Any] | None = None,
               check_invariants: bool = False, map_size: int | None = None,
               writer_key: str | None = None, operator_key: str | None = None,
               operator: str = "operator") -> Sequencer:
        """Create a ledger and write its genesis block (height 0).

        Signed from its first block: the genesis block registers the writer key
        and the first operator key (`ledger.signing.keys_for_new_ledger`: the
        paths given, else $PERPLEDGER_WRITER_KEY / $PERPLEDGER_OPERATOR_KEY, else
        new keys in `<data>.keys/`), and the writer signs every block.

        Crash-safe: the ledger is built in a hidden directory inside `path`
        (`.init-<pid>`), genesis and its snapshot included, and its data file is
        renamed into `path` last, an atomic step that is the completion marker.
        A killed create leaves no ledger (only the hidden directory, which the
        next create removes) or a complete one; never one `init` refuses to
        overwrite and `info` calls empty.
        """
        final = Path(path)
        if ledger_exists(final):
            raise LedgerExists(f"a ledger already exists at {final}; refusing to overwrite it")
        final.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(final)
        build = final / f"{_BUILD_PREFIX}{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        writer, operators, key_cfg = keys_for_new_ledger(final, writer_key=writer_key,
                                                         operator_key=operator_key,
                                                         operator=operator)
        cfg = dict(config or {})
        cfg["guards"] = guards
        cfg.update(key_cfg)
        store = ChainStore.create(build, chain_id=chain_id, config=cfg, map_size=map_size)
        store.signer = writer
        seq = cls(store, Engine(), check_invariants=check_invariants)
        try:
            cmds = genesis_commands(listings, time=genesis_time, guards_enabled=guards,
                                    authority=genesis_authority(chain_id, writer, operators))
            seq._submit_one(cmds, journal=None, operator_key=None, genesis=True)
            seq.snapshot()
        finally:
            seq.close()
        if ledger_exists(final):  # another create won the race
            shutil.rmtree(build, ignore_errors=True)
            raise LedgerExists(f"a ledger already exists at {final}; refusing to overwrite it")
        os.rename(build / "data.mdb", final / "data.mdb")
        # The genesis append's latency sample goes with the ledger (metrics/, if any).
        if (build / "metrics").is_dir() and not (final / "metrics").exists():
            os.rename(build / "metrics", final / "metrics")
        _fsync_dir(final)
        shutil.rmtree(build, ignore_errors=True)
        log.info("ledger created", path=str(path), chain_id=chain_id, guards=guards,
                 markets=[lst.mkt for lst in listings])
        return cls.open(final, check_invariants=check_invariants, writer_key=str(writer.path))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, check_invariants: bool = False,
             writer_key: str | None = None) -> Sequencer:
        """Open an existing ledger for writing, after the restart protocol passes.

        A signed chain needs its writer key (`writer_key`, else
        $PERPLEDGER_WRITER_KEY, else the path recorded at init), registered and
        active on the chain; a legacy chain created without keys stays unsigned.
        """
        store = ChainStore.open(path, write=True)
        try:
            engine = recover(store)
            writers = {k for k, (role, _, _, active) in engine.state.keys.items()
                       if role == KeyRole.WRITER and active}
            if writers:
                key = resolve(writer_key, WRITER_KEY_ENV, store.config.get("writer_key_path"),
                              data_dir=store.path, what="writer")
                if key.key_id not in writers:
                    raise CommandInvalid(f"the writer key {key.path} (id {key.key_id}) is not "
                                         f"this chain's writer key ({', '.join(sorted(writers))})")
                store.signer = key
        except BaseException:
            store.close()
            raise
        return cls(store, engine, check_invariants=check_invariants)

    def operator_key(self, explicit: str | os.PathLike[str] | None = None) -> Key | None:
        """The operator key for this chain's operator commands: the path given, else
        $PERPLEDGER_OPERATOR_KEY, else the one recorded at init; None on a legacy chain
        (no authority) when none is given."""
        if not self.engine.state.keys and explicit is None:
            return None
        return resolve(explicit, OPERATOR_KEY_ENV, self.store.config.get("operator_key_path"),
                       data_dir=self.store.path)

    def close(self) -> None:
        self._pipe.close()
        self.latency.flush()
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

    def submit(self, commands: Sequence[Any], *, journal: JournalEntry | None = None,
               operator_key: Key | None = None) -> BlockOutcome:
        """Run one block of commands and append it; returns once the block is durable.

        A block starts with `BeginBlock(time)`; without one, the time of the
        block before is carried. Commands refused at the door (unknown account
        or market, off tick, ...) are left out of the log and listed in `refused`.
        An operator action's `journal` record is written in the block's own
        transaction.

        Privileged commands (ledger.core.authority) need the `journal` record
        (operator and reason) and, on a signed chain, the `operator_key` that
        signs them: the block then carries its OperatorAuth.
        """
        return self._submit_one(list(commands), journal=journal, operator_key=operator_key)

    def _submit_one(self, cmds: list[Any], *, journal: JournalEntry | None,
                    operator_key: Key | None, genesis: bool = False) -> BlockOutcome:
        if self._pipe.busy:
            raise LedgerError("a block is still in flight (submit_many is running)")
        staged = self._stage(cmds, journal=journal, operator_key=operator_key,
                             genesis=genesis)
        self._pipe.start(staged.block, staged.snapshot, staged.journal)
        return self._acknowledge(staged)

    def submit_many(self, blocks: Iterable[Sequence[Any]]) -> Iterator[BlockOutcome]:
        """Run and append blocks in order, yielding each once it is durable (pipelined).

        Block N+1 is decided while block N commits in the background, so `blocks`
        may be a generator that reads the engine (it holds every block decided so
        far, acknowledged or not). Operator commands need `submit` (their journal
        and key). A block refused before the engine runs (bad BeginBlock time)
        raises CommandInvalid after the block before it is acknowledged; a failed
        commit raises CommitFailed (see the module docstring).
        """
        pending: _Staged | None = None
        try:
            for commands in blocks:
                try:
                    staged = self._stage(list(commands), journal=None, operator_key=None)
                except BaseException:
                    if pending is not None:
                        done, pending = pending, None
                        yield self._acknowledge(done)
                    raise
                outcome = None
                if pending is not None:
                    done, pending = pending, None
                    outcome = self._acknowledge(done)
                # Block N+1 goes in flight before N is handed out: the caller's work on N
                # overlaps its commit, and a caller that stops here leaves it to `finally`.
                self._pipe.start(staged.block, staged.snapshot, staged.journal)
                pending = staged
                if outcome is not None:
                    yield outcome
            if pending is not None:
                done, pending = pending, None
                yield self._acknowledge(done)
        finally:
            if pending is not None:  # the caller stopped early: finish the block in flight
                self._acknowledge(pending)

    def _stage(self, cmds: list[Any], *, journal: JournalEntry | None,
               operator_key: Key | None, genesis: bool = False) -> _Staged:
        """Decide block `next_height` and prepare it on the tip (engine and encoding).

        `genesis`: the first block, whose listings and key registrations are the
        chain's founding facts (`genesis_authority`), not operator commands.
        """
        if self._poisoned:
            raise LedgerError(f"the sequencer stopped after an earlier failure "
                              f"({self._poisoned}); restart it to recover from the log")
        tip = self._pipe.tip
        height = tip.height + 1
        if not cmds or not isinstance(cmds[0], BeginBlock):
            cmds.insert(0, BeginBlock(tip.time))
        if not genesis and any(is_privileged(cmd) for cmd in cmds):
            if journal is None:
                names = sorted({type(x).__name__ for x in cmds if is_privileged(x)})
                raise CommandInvalid(f"{', '.join(names)} is an operator command: it needs an "
                                     "operator, a reason and its journal record")
            if not any(type(x) is OperatorAuth for x in cmds):
                # A block that brings its own OperatorAuth is checked as it is, below.
                cmds = authorise(self.engine.state, self.store.chain_id, height, cmds,
                                 operator_key, operator=journal.operator,
                                 reason=journal.reason)
        if not isinstance(cmds[-1], EndBlock):
            cmds.append(EndBlock())
        if type(cmds[0].time) is not int:
            raise CommandInvalid(f"block {height} must open with BeginBlock(time)")
        if not follows_in_time(cmds[0].time, tip.time):
            # Refused before the engine runs, so the sequencer stays usable.
            raise CommandInvalid(f"BeginBlock.time {cmds[0].time} is before the head's block "
                                 f"time {tip.time}; block time never goes backwards")
        st = self.engine.state
        if st.keys and any(type(x) in PRIVILEGED or type(x) is OperatorAuth for x in cmds):
            ordered = [cmds[i] for i in processing_order([type(x) for x in cmds])]
            problem = check_block(st.chain_id, st.keys, height, ordered)
            if problem is not None:  # refused whole, before the engine runs
                raise CommandInvalid(problem)
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
        return _Staged(block, outcome, snap, journal)

    def _acknowledge(self, staged: _Staged) -> BlockOutcome:
        """Wait for a block's commit; the outcome once durable, else stop the writer."""
        try:
            _, staged.outcome.snapshot = self._pipe.finish()
        except BaseException as exc:
            self._stop(staged.block.header.height, exc)
        self.latency.observe(self._pipe.last_commit_ns)
        return staged.outcome

    def _stop(self, height: int, exc: BaseException) -> NoReturn:
        """A commit failed: discard every undurable block, rebuild the engine, refuse more."""
        durable = self.store.head
        if durable.height >= height:
            # The block landed and only its snapshot failed: the chain is whole. The engine
            # may already hold the next block (submit_many), never written: rebuild it.
            if self.engine.state.height != durable.height:
                self.engine = recover(self.store)
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

    def dry_run(self, blocks: Sequence[Sequence[Any]]) -> list[tuple[int, int, str]]:
        """Run blocks on a scratch copy of the state; nothing is written.

        Each block is a command list as `submit` takes it. Returns every refusal as
        (block index, command index in the block as given, message): door
        refusals (`admit`), block times going backwards, and whatever the store
        would refuse to encode. An empty list means `submit` of each block in
        turn would append them all with nothing refused.
        """
        scratch = Engine.from_snapshot(self.engine.snapshot_bytes())
        head = self.store.head
        out: list[tuple[int, int, str]] = []
        for b, block in enumerate(blocks):
            cmds = list(block)
            offset = 0
            if not cmds or not isinstance(cmds[0], BeginBlock):
                cmds.insert(0, BeginBlock(head.time))
                offset = 1
            if not follows_in_time(cmds[0].time, head.time):
                out.append((b, 0, f"BeginBlock.time {cmds[0].time} is before the block time "
                            f"{head.time} it would follow; block time never goes backwards"))
                continue
            height = head.height + 1
            result = scratch.run_block(height, cmds, admit=True)
            for index, err in result.refused:
                out.append((b, index - offset, str(err)))
            try:
                block_ = self.store.prepare(result.envelopes, height=height, time=cmds[0].time,
                                            state_hash=result.state_hash, on=head)
            except LedgerError as exc:
                out.append((b, _culprit(cmds, result.envelopes) - offset, str(exc)))
                break  # the scratch state is past what could be appended
            head = block_.new_head
        return out

    def snapshot(self) -> SnapshotInfo:
        """Snapshot the state at the head (a verified cache of the projection)."""
        head = self.store.head
        return self.store.put_snapshot(head.height, self.engine.state_hash(),
                                       self.engine.snapshot_bytes())

    def set_guards(self, enabled: bool, *, reason: str, operator: str,
                   key: Key | None = None) -> BlockOutcome:
        """Switch the data-check guards, recorded in the log and the journal."""
        return self.submit([SetGuards(enabled, reason, operator)],
                           journal=JournalEntry("guards", operator, reason,
                                                {"enabled": enabled}), operator_key=key)


#: Name prefix of the hidden directory a ledger is built in by `Sequencer.create`.
_BUILD_PREFIX = ".init-"


def _remove_stale_builds(final: Path) -> None:
    """Remove what killed creates left in `final` (their process is gone)."""
    for build in final.glob(f"{_BUILD_PREFIX}*"):
        pid = build.name[len(_BUILD_PREFIX):]
        alive = pid.isdigit() and pid_alive(int(pid))
        if not alive:
            shutil.rmtree(build, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _culprit(cmds: list[Any], envelopes: list[Envelope]) -> int:
    """Index in `cmds` of the IN command whose event (or outcome) cannot be encoded."""
    from ledger.events.codec import check_and_encode

    by_seq = {env.seq: env for env in envelopes}
    for env in envelopes:
        try:
            check_and_encode(env)
        except LedgerError:
            cause = env if env.cause == 0 else by_seq.get(env.cause, env)
            for i, cmd in enumerate(cmds):
                if cmd is cause.event:
                    return i
    return -1


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
