"""The LMDB chain store: hash-chained blocks of events, indexes, snapshots, archive.

One `ChainStore` per data directory per process. Opened for writing it holds
the single-writer lock (`LedgerLocked` for a second writer, in this process or
another). Readers need no lock: every read runs in one LMDB read transaction,
a consistent MVCC snapshot, while the writer appends.

Every mutation is ONE write transaction: a block with its index entries and
head; a truncation with its archive, snapshot drops, head and journal record.
A crash at any instant leaves the store as it was before or after, never a mix.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import lmdb
import structlog

from ledger.errors import (
    BlockRejected,
    IntegrityError,
    LedgerExists,
    LedgerNotFound,
    NotFound,
    StoreError,
)
from ledger.events.codec import Envelope
from ledger.store import archive, reads
from ledger.store.blocks import (
    ZERO_HASH,
    BlockHeader,
    batches,
    check_events,
    decode_checked_block,
    decode_header,
    genesis_prev_hash,
    take_run,
)
from ledger.store.env import MAP_SIZE_ENV, SharedEnv, WriterLock, close_env, open_env
from ledger.store.journal import JournalEntry, journal_put
from ledger.store.layout import (
    SCHEMA_VERSION,
    Dbs,
    Head,
    Txn,
    meta_get,
    pack_record,
    read_head,
    u32,
    u64,
    unpack_record,
    write_head,
)
from ledger.store.prepare import PreparedBlock, prepare_block
from ledger.store.signatures import Signer, get_signature, get_signatures, put_signature

if TYPE_CHECKING:
    from ledger.store.verify import VerifyReport

log = structlog.get_logger("ledger.store")

T = TypeVar("T")

#: The deepest rollback (in blocks) a chain allows without --force, unless its config says.
DEFAULT_MAX_ROLLBACK_DEPTH = 10_000

#: Chain config defaults, fixed at `init` and stored in meta.
DEFAULT_CONFIG: dict[str, Any] = {
    "guards": True,
    "snapshot_every": 100,
    "max_rollback_depth": DEFAULT_MAX_ROLLBACK_DEPTH,
}


def max_rollback_depth(config: Mapping[str, Any]) -> int:
    """A chain's max_rollback_depth from its config (the default where unset or 0)."""
    return int(config.get("max_rollback_depth") or DEFAULT_MAX_ROLLBACK_DEPTH)


class SnapshotInfo(NamedTuple):
    height: int
    state_hash: bytes
    time: int
    size: int


class Snapshot(NamedTuple):
    height: int
    state_hash: bytes
    time: int
    data: bytes


def ledger_exists(path: str | os.PathLike[str]) -> bool:
    """True if `path` holds an initialised ledger."""
    return (Path(path) / "data.mdb").exists()


class ChainStore:
    """The hash-chained event log of one ledger (see module docstring)."""

    def __init__(self, shared: SharedEnv, lock: WriterLock | None) -> None:
        self._shared = shared
        self._lock = lock
        self.path = Path(shared.path)
        try:
            self.dbs = Dbs(shared)
        except lmdb.NotFoundError:  # a read-only open of an environment without our tables
            self.close()
            raise LedgerNotFound(f"no ledger at {self.path} (its files hold no chain)") \
                from None
        meta = self._read(lambda txn: self._meta_all(txn))
        if b"chain_id" not in meta:
            self.close()
            raise LedgerNotFound(f"no ledger at {self.path} (run `ledgerctl init` first)")
        self.chain_id: str = unpack_record(meta[b"chain_id"])
        self.config: dict[str, Any] = unpack_record(meta[b"config"])
        version = unpack_record(meta[b"schema_version"])
        if version != SCHEMA_VERSION:
            self.close()
            raise StoreError(f"ledger at {self.path} has schema version {version}, "
                             f"this perpledger reads {SCHEMA_VERSION}")
        self._head_cache: Head | None = None
        #: The writer key that signs every block this store appends (None: unsigned).
        self.signer: Signer | None = None

    # -- lifecycle -----------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], *, chain_id: str,
               config: dict[str, Any] | None = None,
               map_size: int | None = None) -> ChainStore:
        """Create an empty ledger (no genesis block yet) and return it open for writing.

        `map_size` (bytes; default $PERPLEDGER_MAP_SIZE, else 1 GiB) is recorded in
        the config, and every later open starts from it. Raises `LedgerExists` if
        `path` already holds one.
        """
        if ledger_exists(path):
            raise LedgerExists(f"a ledger already exists at {path}; refusing to overwrite it")
        cfg = dict(DEFAULT_CONFIG)
        cfg.update(config or {})
        if map_size is not None:
            cfg["map_size"] = map_size
        Path(path).mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path)
        lock.acquire()
        shared = open_env(path, map_size=map_size)
        dbs = Dbs(shared)  # create every sub-database up front
        meta = dbs.meta

        def init(txn: lmdb.Transaction) -> None:
            txn.put(b"schema_version", pack_record(SCHEMA_VERSION), db=meta)
            txn.put(b"chain_id", pack_record(chain_id), db=meta)
            txn.put(b"config", pack_record(cfg), db=meta)
            txn.put(b"next_branch", pack_record(1), db=meta)
            write_head(txn, dbs, Head(-1, 0, genesis_prev_hash(chain_id), 0))

        shared.run_write(init)
        return cls(shared, lock)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, write: bool = False,
             map_size: int | None = None) -> ChainStore:
        """Open an existing ledger; `write=True` takes the single-writer lock.

        A reader opens the environment read-only, so it works on a read-only
        directory or mount (ledger/store/env.py).
        """
        if not ledger_exists(path):
            raise LedgerNotFound(f"no ledger at {path} (run `ledgerctl init` first)")
        lock = None
        if write:
            lock = WriterLock(path)
            lock.acquire()
        try:
            shared = open_env(path, create=False, map_size=map_size, readonly=not write)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        store = cls(shared, lock)
        recorded = store.config.get("map_size")
        if write and map_size is None and isinstance(recorded, int) \
                and recorded > shared.env.info()["map_size"] and shared.refs == 1 \
                and not os.environ.get(MAP_SIZE_ENV):
            shared.env.set_mapsize(recorded)
        return store

    def close(self) -> None:
        """Release the environment and, for a writer, the lock."""
        if self._shared is not None:
            close_env(self._shared)
            self._shared = None  # type: ignore[assignment]
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> ChainStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def writable(self) -> bool:
        return self._lock is not None

    def _require_writer(self) -> None:
        if self._lock is None:
            raise StoreError("this store was opened read-only; open it with write=True")

    # `fn` is called with one transaction, a `Txn`: `SharedEnv` begins every one
    # with buffers=False, so its reads are `bytes` (see layout.py). It is typed
    # `Callable[..., T]` rather than `Callable[[Txn], T]` because mypy cannot infer
    # a lambda that binds loop variables through default arguments (`lambda txn,
    # a=lo: ...`, here and in tools/) against the latter.
    def _read(self, fn: Callable[..., T]) -> T:
        return self._shared.run_read(fn)

    def _write(self, fn: Callable[..., T]) -> T:
        self._require_writer()
        return self._shared.run_write(fn)

    def _meta_all(self, txn: Txn) -> dict[bytes, bytes]:
        return dict(txn.cursor(self.dbs.meta))

    # -- head and meta -------------------------------------------------------

    @property
    def head(self) -> Head:
        """The canonical head (cached by the writer, read fresh by readers)."""
        if self._lock is not None and self._head_cache is not None:
            return self._head_cache
        head = self._read(self._head_in)
        if self._lock is not None:
            self._head_cache = head
        return head

    def _head_in(self, txn: Txn) -> Head:
        return read_head(txn, self.dbs)

    @property
    def genesis_hash(self) -> bytes | None:
        raw = self._read(lambda txn: txn.get(b"genesis_hash", db=self.dbs.meta))
        return None if raw is None else bytes(raw)

    def set_config(self, key: str, value: Any) -> None:
        """Change one chain config entry (operator settings such as snapshot_every)."""

        def fn(txn: Txn) -> None:
            cfg = unpack_record(meta_get(txn, self.dbs, b"config"))
            cfg[key] = value
            txn.put(b"config", pack_record(cfg), db=self.dbs.meta)

        self._write(fn)
        self.config[key] = value

    # -- append --------------------------------------------------------------

    def append_block(self, envelopes: Sequence[Envelope], *, height: int, time: int,
                     state_hash: bytes, journal: JournalEntry | None = None) -> BlockHeader:
        """Validate a whole block, then write it durably in one transaction.

        Checks: height is head+1, seqs continue the head's without gaps, every
        envelope carries this height, every event encodes, the state hash is 32
        bytes. Raises `BlockRejected` and writes nothing on any failure. An
        operator action's `journal` record is written in the same transaction,
        after the block, so it names the block and exists iff the block does.
        `prepare` then `commit_prepared`.
        """
        return self.commit_prepared(self.prepare(envelopes, height=height, time=time,
                                                 state_hash=state_hash), journal=journal)

    def prepare(self, envelopes: Sequence[Envelope], *, height: int, time: int,
                state_hash: bytes, on: Head | None = None) -> PreparedBlock:
        """Validate and encode a block on top of `on` (default: the durable head); no I/O.

        A pipelined writer prepares block N+1 on top of block N's `new_head`
        while block N commits. Raises `BlockRejected`.
        """
        self._require_writer()
        return prepare_block(self.head if on is None else on, envelopes, height=height,
                             time=time, state_hash=state_hash)

    def commit_prepared(self, block: PreparedBlock, *,
                        journal: JournalEntry | None = None) -> BlockHeader:
        """Write a prepared block durably in one transaction; the head moves only then.

        The writer's signature of its header and the operator action's `journal`
        record (if any) are written in the same transaction. The block must sit
        on the durable head (`IntegrityError` otherwise). Safe to call from one
        background thread while the writer's thread prepares the next block:
        LMDB releases the GIL while it writes and syncs.
        """
        self._require_writer()
        head = self.head
        h = block.header
        if h.height != head.height + 1 or h.prev_hash != head.hash:
            raise IntegrityError(f"block {h.height} was prepared on another head than the "
                                 f"durable one (height {head.height}); refusing to write it")

        def fn(txn: Txn) -> None:
            block.write(txn, self.dbs)
            self._sign(txn, h)
            if journal is not None:
                journal_put(txn, self.dbs, journal)

        self._write(fn)
        self._head_cache = block.new_head
        return h

    def _sign(self, txn: Txn, header: BlockHeader) -> None:
        if self.signer is not None:
            put_signature(txn, self.dbs, self.signer, self.chain_id, header.height,
                          header.hash)

    def block_signature(self, height: int, *, branch: int | None = None
                        ) -> tuple[str, bytes] | None:
        """(writer key id, signature) stored for a block, or None (an unsigned block)."""
        return self._read(lambda txn: get_signature(txn, self.dbs, height, branch))

    def block_signatures(self, lo: int, hi: int, *, branch: int | None = None
                         ) -> dict[int, tuple[str, bytes]]:
        """{height: (writer key id, signature)} of the signed blocks in [lo, hi], in one
        MVCC snapshot."""
        return self._read(lambda txn: get_signatures(txn, self.dbs, lo, hi, branch))

    # -- truncate ------------------------------------------------------------

    def truncate_to(self, height: int, *, reason: str, operator: str,
                    details: dict[str, Any] | None = None,
                    then_append: Sequence[Envelope] | None = None,
                    block_time: int | None = None, state_hash: bytes | None = None,
                    ) -> int:
        """Archive every block above `height` into a new branch, in one transaction.

        Moves blocks, events and index entries into the archive, drops
        snapshots above `height`, sets the head to `height` and journals the
        action (one "truncate" record with `details`, written last so it names
        the new head). With `then_append` (plus `block_time` and `state_hash`),
        the first block of the new branch is appended in the SAME transaction,
        so a crash leaves the old chain or the new one with its first block,
        never a truncated chain without it. Returns the new branch id. Raises
        `NotFound` if there is nothing above `height`.
        """
        self._require_writer()
        if not reason or not operator:
            raise StoreError("truncate_to needs a reason and an operator name")
        block: PreparedBlock | None = None
        if then_append is not None:
            if block_time is None or state_hash is None:
                raise StoreError("then_append needs block_time and state_hash")
            base = self.block(height)
            block = self.prepare(then_append, height=height + 1, time=block_time,
                                 state_hash=state_hash,
                                 on=Head(height, base.last_seq, base.hash, base.time))
        result: dict[str, Any] = {}

        def fn(txn: Txn) -> int:
            branch, new_head, facts = archive.truncate(txn, self.dbs, height, reason=reason,
                                                       operator=operator)
            result["head"] = new_head
            if block is not None:
                block.write(txn, self.dbs)
                self._sign(txn, block.header)
                result["head"] = block.new_head
                facts["recovery_height"] = block.header.height
            journal_put(txn, self.dbs, JournalEntry("truncate", operator, reason,
                                                    {**(details or {}), **facts}))
            return branch

        branch = int(self._write(fn))
        self._head_cache = result["head"]
        log.info("truncated", height=height, branch=branch, reason=reason, operator=operator)
        return branch

    def next_branch_id(self) -> int:
        """The id the next truncation will give its archived branch."""
        return int(self._read(lambda txn: unpack_record(meta_get(txn, self.dbs, b"next_branch"))))

    # -- snapshots -----------------------------------------------------------

    def put_snapshot(self, height: int, state_hash: bytes, data: bytes) -> SnapshotInfo:
        """Store the state at `height` (canonical bytes) with its state hash."""

        def fn(txn: Txn) -> SnapshotInfo:
            raw = txn.get(u64(height), db=self.dbs.blocks)
            if raw is None:
                raise NotFound(f"no block at height {height} to snapshot")
            header = decode_header(raw)
            if header.state_hash != state_hash:
                raise BlockRejected(
                    f"snapshot at height {height}: state hash {state_hash.hex()[:16]} does not "
                    f"match the block's {header.state_hash.hex()[:16]}")
            info = SnapshotInfo(height, state_hash, header.time, len(data))
            txn.put(u64(height), pack_record(list(info)), db=self.dbs.snap_meta)
            txn.put(u64(height), data, db=self.dbs.snap_data)
            return info

        return self._write(fn)

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, by height."""

        def fn(txn: Txn) -> list[SnapshotInfo]:
            return [SnapshotInfo(*unpack_record(v)) for _, v in txn.cursor(self.dbs.snap_meta)]

        return self._read(fn)

    def snapshot(self, height: int) -> Snapshot:
        """The snapshot at exactly `height` (raises `NotFound`)."""

        def fn(txn: Txn) -> Snapshot:
            meta = txn.get(u64(height), db=self.dbs.snap_meta)
            if meta is None:
                raise NotFound(f"no snapshot at height {height}")
            info = SnapshotInfo(*unpack_record(meta))
            # put_snapshot writes both records in one transaction, truncate drops both.
            data = txn.get(u64(height), db=self.dbs.snap_data)
            if data is None:
                raise IntegrityError(f"snapshot at height {height} has metadata but no "
                                     "data; the store is damaged")
            return Snapshot(info.height, info.state_hash, info.time, data)

        return self._read(fn)

    def nearest_snapshot(self, at_or_below: int) -> SnapshotInfo | None:
        """The highest snapshot at or below a height, if any."""
        best = None
        for info in self.snapshots():
            if info.height <= at_or_below:
                best = info
        return best

    # -- journal, checkpoints, branches --------------------------------------

    def append_journal(self, action: str, *, operator: str, reason: str,
                       details: dict[str, Any] | None = None) -> int:
        """Record an operator action that writes no block (who, why, when, what).

        An action that writes a block journals through `append_block(journal=)`.
        """
        entry = JournalEntry(action, operator, reason, details or {})
        return int(self._write(lambda txn: journal_put(txn, self.dbs, entry)))

    def journal(self, *, after: int = 0) -> list[dict[str, Any]]:
        """The journal records with an id above `after` (default: every one), oldest first."""

        def fn(txn: Txn) -> list[dict[str, Any]]:
            cur = txn.cursor(self.dbs.journal)
            if not cur.set_range(u64(after + 1)):
                return []
            return [unpack_record(v) for _, v in cur]

        return self._read(fn)

    def put_checkpoint(self, name: str, record: dict[str, Any]) -> None:
        self._write(lambda txn: txn.put(name.encode(), pack_record(record),
                                        db=self.dbs.checkpoints))

    def get_checkpoint(self, name: str) -> dict[str, Any] | None:
        raw = self._read(lambda txn: txn.get(name.encode(), db=self.dbs.checkpoints))
        return None if raw is None else dict(unpack_record(raw))

    def branches(self) -> list[dict[str, Any]]:
        """Archived branches, oldest first."""
        return list(self._read(lambda txn: [
            unpack_record(v) for _, v in txn.cursor(self.dbs.branches)]))

    def branch(self, branch: int) -> dict[str, Any]:
        """One archived branch's record (raises `NotFound` naming the known ones)."""
        # Branch ids are u32 keys; one outside that range names no branch (not an error
        # of the key encoding).
        raw = None
        if 0 <= branch <= 0xFFFFFFFF:
            raw = self._read(lambda txn: txn.get(u32(branch), db=self.dbs.branches))
        if raw is None:
            known = ", ".join(str(b["branch"]) for b in self.branches()) or "none"
            raise NotFound(f"no archived branch {branch} (known branches: {known})")
        return dict(unpack_record(raw))

    # -- reads ---------------------------------------------------------------

    def block(self, height: int, *, branch: int | None = None) -> BlockHeader:
        """One block header (raises `NotFound`)."""
        if branch is not None:
            self.branch(branch)
        return self._read(lambda txn: reads.block(txn, self.dbs, height, branch))

    def blocks(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[BlockHeader]:
        """Block headers in an inclusive height range."""
        if branch is not None:
            self.branch(branch)
        return list(self._read(lambda txn: list(
            reads.blocks(txn, self.dbs, from_height, to_height, branch))))

    def events(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[Envelope]:
        """Every event of an inclusive height range, in seq order."""
        return list(self.iter_events(from_height, to_height, branch=branch))

    def iter_events(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None, batch: int = 4096) -> Iterator[Envelope]:
        """Stream events of a height range in seq order, in consistent batches.

        Each batch is read in one MVCC snapshot; the range is fixed at the first
        batch from the block headers, so appends meanwhile do not leak in.
        """
        if branch is not None:
            self.branch(branch)
        lo, hi = self._read(lambda txn: reads.seq_range(
            txn, self.dbs, from_height, to_height, branch))
        while lo <= hi:
            end = min(hi, lo + batch - 1)
            chunk = self._read(lambda txn, a=lo, b=end: reads.events_by_seq(
                txn, self.dbs, a, b, branch))
            yield from chunk
            lo = end + 1

    def iter_raw(self, from_seq: int, to_seq: int, *, branch: int | None = None,
                 batch: int = 8192) -> Iterator[tuple[int, bytes]]:
        """Stream (seq, stored bytes) pairs without decoding."""
        lo = from_seq
        while lo <= to_seq:
            end = min(to_seq, lo + batch - 1)
            chunk = self._read(lambda txn, a=lo, b=end: reads.raw_by_seq(
                txn, self.dbs, a, b, branch))
            yield from chunk
            lo = end + 1

    def iter_block_bytes(self, from_height: int | None = None, to_height: int | None = None,
                         *, branch: int | None = None, batch_events: int = 8192,
                         ) -> Iterator[tuple[BlockHeader, list[bytes]]]:
        """Stream whole blocks as stored bytes, each block's events hash checked.

        Runs of blocks of about `batch_events` events are each read in one MVCC
        snapshot. A mismatch raises `VerificationFailed` at the block's height.
        """
        if branch is not None:
            self.branch(branch)
        for group in batches(self.blocks(from_height, to_height, branch=branch), batch_events):
            chunks = self._read(lambda txn, g=group: reads.block_bytes(txn, self.dbs, g, branch))
            for hdr, datas in chunks:
                check_events(hdr, datas)
                yield hdr, datas

    def iter_blocks(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None, batch_events: int = 8192,
                    ) -> Iterator[tuple[BlockHeader, list[Envelope]]]:
        """Stream whole blocks with their decoded events, each block's events hash checked
        (a mismatch raises `VerificationFailed`)."""
        for hdr, datas in self.iter_block_bytes(from_height, to_height, branch=branch,
                                                batch_events=batch_events):
            yield hdr, decode_checked_block(hdr, datas)

    def events_by(self, *, account: str | None = None, market: str | None = None,
                  type_code: int | None = None, from_height: int | None = None,
                  to_height: int | None = None, branch: int | None = None,
                  limit: int | None = None) -> list[Envelope]:
        """Events matching account / market / type in a height range: O(result).

        The most selective index given (account, then market, then type) drives
        the walk; the other filters are applied to what it yields.
        """
        if branch is not None:
            self.branch(branch)
        return list(self._read(lambda txn: reads.events_by(
            txn, self.dbs, account=account, market=market, type_code=type_code,
            from_height=from_height, to_height=to_height, branch=branch, limit=limit)))

    def height_of_seq(self, seq: int, *, branch: int | None = None) -> int:
        """The height of the block holding `seq`."""
        env = self._read(lambda txn: reads.events_by_seq(txn, self.dbs, seq, seq, branch))
        if not env:
            raise NotFound(f"no event with seq {seq}")
        return int(env[0].height)

    def stats(self) -> dict[str, Any]:
        """Entry counts and size on disk, for `ledgerctl info`."""

        def fn(txn: Txn) -> dict[str, Any]:
            return {
                "events": txn.stat(self.dbs.events)["entries"],
                "blocks": txn.stat(self.dbs.blocks)["entries"],
                "archived_events": txn.stat(self.dbs.arch_events)["entries"],
            }

        out = self._read(fn)
        data = self.path / "data.mdb"
        out["size_bytes"] = data.stat().st_size if data.exists() else 0
        return out

    # -- the read seam (ledger.store.reader.ChainReader) ----------------------------

    def read_blocks(self, from_height: int, to_height: int, *, branch: int | None = None,
                    max_events: int = 8192, stop_at: Collection[int] = ()
                    ) -> list[tuple[BlockHeader, list[bytes]]]:
        """Whole blocks from `from_height` on, as stored bytes, in ONE MVCC snapshot.

        The run ends at `to_height`, once it holds `max_events` events, or at a
        height in `stop_at`; at least one block if any exists in range. The
        events hash is NOT checked here: callers check it (`check_events`).
        """

        return self._read(lambda txn: self._run(txn, from_height, to_height, branch,
                                                max_events, stop_at))

    def read_signed_blocks(self, from_height: int, to_height: int, *,
                           branch: int | None = None, max_events: int = 8192
                           ) -> tuple[list[tuple[BlockHeader, list[bytes]]],
                                      dict[int, tuple[str, bytes]]]:
        """`read_blocks` and the writer's signatures of those blocks, in the SAME MVCC
        snapshot (a truncation moves both; a reader pairing them needs one view)."""

        def fn(txn: Txn) -> tuple[list[tuple[BlockHeader, list[bytes]]],
                                  dict[int, tuple[str, bytes]]]:
            run = self._run(txn, from_height, to_height, branch, max_events, ())
            if not run:
                return run, {}
            lo, hi = run[0][0].height, run[-1][0].height
            return run, get_signatures(txn, self.dbs, lo, hi, branch)

        return self._read(fn)

    def _run(self, txn: Txn, from_height: int, to_height: int, branch: int | None,
             max_events: int, stop_at: Collection[int]) -> list[tuple[BlockHeader, list[bytes]]]:
        group = take_run(reads.blocks(txn, self.dbs, from_height, to_height, branch),
                         max_events, stop_at)
        return reads.block_bytes(txn, self.dbs, group, branch)

    def event_bytes(self, seqs: Collection[int], *, branch: int | None = None
                    ) -> dict[int, bytes]:
        """The stored bytes of the events at `seqs` (canonical or an archived branch) that
        exist, in one MVCC snapshot; absent seqs are left out."""
        db = self.dbs.events if branch is None else self.dbs.arch_events
        pre = b"" if branch is None else u32(branch)

        def fn(txn: Txn) -> dict[int, bytes]:
            out = {}
            for seq in seqs:
                raw = txn.get(pre + u64(seq), db=db)
                if raw is not None:
                    out[seq] = raw
            return out

        return self._read(fn)

    @property
    def spec(self) -> str:
        """What `ledger.store.reader.open_chain` opens this ledger by (its data directory)."""
        return str(self.path)

    def pinned(self) -> AbstractContextManager[None]:
        """A consistent view for a run of reads. Every LMDB read is already one MVCC
        snapshot and readers re-check what they combine, so this pins nothing."""
        return nullcontext()

    @property
    def shared_env(self) -> SharedEnv:
        """The underlying environment (for the eventsourcing recorders and tools)."""
        return self._shared


__all__ = ["ChainStore", "Head", "PreparedBlock", "Snapshot", "SnapshotInfo",
           "ZERO_HASH", "ledger_exists", "prepare_block"]


def verify_store(store: ChainStore, *, branch: int | None = None,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the canonical chain or one archived branch; returns a VerifyReport."""
    from ledger.store.verify import verify_chain

    expected_prev = None
    if branch is not None:
        expected_prev = store.branch(branch)["base_hash"]
    return store._read(lambda txn: verify_chain(txn, store.dbs, store.chain_id, branch=branch,
                                                expected_prev=expected_prev, progress=progress))
