"""The block replicator: LMDB (the system of record) into a PostgreSQL replica, block by block.

dYdX v4's Indexer is the model: blocks stream from the chain into a consumer
that writes each block into PostgreSQL in one transaction, and read replicas
serve the auditors. Here:

- Blocks are read from LMDB in read transactions (`ChainStore.read_blocks`),
  each block's events hash checked, and written whole in ONE PostgreSQL
  transaction: header (with the writer's signature), events (stored bytes
  and filter columns), index chunks, any snapshot that arrived, the journal
  records naming these blocks (never earlier: `verify` pairs each record with
  its block, on a replica behind the ledger too), the audit read-model rows
  (the same `AuditProjection` the LMDB runner folds), and the
  tracking row (height, seq, block hash) by compare-and-set. A SIGKILL at any
  instant loses nothing and doubles nothing: the next run starts after the
  last committed block.
- One block per transaction, or a run of whole blocks when behind
  (`projections.replica_grouping` states the reading of the issue's rule):
  a run never splits a block, never crosses a rollback (a branch is mirrored
  in its own transaction, and the blocks before it stop at the branch's
  base) nor a change of where LMDB holds the blocks, and the tracking row
  moves to its last block in the same transaction. Caught up, the run is the
  one new block. Each run is written with one binary COPY per table, so the
  server's cost per transaction (commit, statements, round trips) is paid
  per run, not per block.
- One replicator per target database: a session advisory lock, released by
  the server when the replicator's connection dies (`LedgerLocked`).
- Rollbacks: the chain's archived branches are mirrored in order. Branch `b`
  archived the suffix of the chain as it stood just before rollback `b` (call
  it K(b-1)); the replica's canonical chain is always a prefix of K(m), m its
  newest mirrored branch. Mirroring `b` first extends the replica along K(b-1)
  up to the branch's base (blocks now found in the canonical chain or in a
  later branch, `_owner`), then in ONE transaction moves every row above the
  base to branch `b` (blocks, events, index chunks, read-model rows to
  namespace `b`), copies the branch's blocks the replica never had, drops the
  snapshots above the base, records the branch and sets tracking to the base.
  Readers see the old chain or the new one, never a mix, under the same
  branch id as LMDB's.
- The audit fold state is saved (`fold_states`) at the heights a rollback may
  target (multiples of `snapshot_every`, snapshot heights); a restart or a
  mirrored rollback resumes from the newest saved state on the replica's
  canonical chain and refolds the replica's own blocks after it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
import structlog

from ledger.errors import CommandInvalid, IntegrityError, LedgerLocked, StoreError
from ledger.store.blocks import BlockHeader, check_events, genesis_prev_hash
from ledger.store.chain import ChainStore, Snapshot, max_rollback_depth
from ledger.store.layout import SCHEMA_VERSION as LMDB_SCHEMA_VERSION
from ledger.store.layout import Head
from ledger.store.pg.chain import PgChain
from ledger.store.pg.connect import connect, describe, pg_errors
from ledger.store.pg.schema import LOCK_NS, REPLICATOR_LOCK, SCHEMA, migrate
from ledger.store.pg.writer import (
    EncodedBlock,
    advance,
    archive_above,
    encode_block,
    init_tracking,
    put_branch,
    put_journal,
    put_meta,
    put_snapshot,
    write_blocks,
)
from ledger.store.reader import where_is_block
from projections.audit_models import AuditProjection
from projections.audit_pg import (
    StagedRows,
    archive_models_above,
    encode_staged,
    write_encoded,
)
from projections.progress import ProgressBar
from projections.replica_grouping import GROUP_BLOCKS, GROUP_EVENTS, group_full

log = structlog.get_logger("projections.replicator")

#: Events read from LMDB per read transaction.
BATCH_EVENTS = 20_000
#: The interpreter's thread switch interval while the pipeline runs (seconds; Python's
#: default is 5 ms). The writing thread sleeps in the server's socket a dozen times a
#: transaction; each time it wakes it needs the GIL back from the preparing thread, which
#: holds it for a whole switch interval. At 5 ms that waiting took a third of the
#: writer's time; at 0.2 ms it is gone, for a few more switches in the preparing thread.
SWITCH_INTERVAL = 0.0002
_switch_lock = threading.Lock()
_switch_users = [0, 0.0]  # pipelines running, the interval to restore after the last


@contextlib.contextmanager
def _short_switches() -> Iterator[None]:
    """Lower the switch interval while any pipeline of this process runs (see above)."""
    with _switch_lock:
        if _switch_users[0] == 0:
            _switch_users[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(SWITCH_INTERVAL, _switch_users[1]))
        _switch_users[0] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users[0] -= 1
            if _switch_users[0] == 0:
                sys.setswitchinterval(_switch_users[1])


class _ChainMoved(Exception):
    """A rollback happened on the chain while a batch was read: plan again."""


class _Unlinked(NamedTuple):
    """A block read that does not link to the one before it."""

    hdr: BlockHeader


class _Run(NamedTuple):
    """Consecutive blocks read in one LMDB read transaction, with where LMDB holds them
    (None: the canonical chain, else a later branch) and their writer signatures."""

    owner: int | None
    blocks: list[tuple[BlockHeader, list[bytes]]]
    signatures: dict[int, tuple[str, bytes]]


class _Prepared(NamedTuple):
    """A block folded and encoded, ready for its transaction."""

    hdr: BlockHeader
    block: EncodedBlock
    staged: StagedRows
    snap: Snapshot | None
    fold_blob: bytes | None


@dataclass
class ReplicationReport:
    """What a run of the replicator did."""

    height: int = -1
    #: Blocks copied onto the replica's chain and their transactions (one per block when
    #: caught up); a mirrored rollback is one more transaction, counted in
    #: `branches_mirrored`, and the branch blocks it copies count in `events` only.
    blocks: int = 0
    events: int = 0
    transactions: int = 0
    branches_mirrored: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "blocks": self.blocks, "events": self.events,
                "transactions": self.transactions, "branches_mirrored": self.branches_mirrored,
                "seconds": round(self.seconds, 3),
                "events_per_s": round(self.events_per_s)}


class Replicator:
    """Feeds one PostgreSQL database from one LMDB ledger (see module docstring)."""

    def __init__(self, store: ChainStore, dsn: str, *, batch_events: int = BATCH_EVENTS,
                 group_events: int = GROUP_EVENTS, group_blocks: int = GROUP_BLOCKS,
                 progress: bool = False) -> None:
        if group_events < 1 or group_blocks < 1:
            raise CommandInvalid(f"a transaction holds at least one block: --group-events "
                                 f"({group_events}) and --group-blocks ({group_blocks}) must "
                                 "be 1 or more")
        self.store = store
        self.dsn = dsn
        self.batch_events = batch_events
        self.group_events = group_events
        self.group_blocks = group_blocks
        self.progress = progress
        self.conn = connect(dsn, application=f"perpledger-replicator pid={os.getpid()}",
                            autocommit=True)
        self._broken = False
        self._lmdb_snaps: set[int] = set()
        self._until: int | None = None
        try:
            with self._errors("checking the target"):
                self._check_writable()
                self._lock()
                migrate(self.conn, dsn)
                self._bind()
                self.pg = PgChain(self.conn, dsn)
                self.tracking = self.pg.head
                # This replicator is the replica's only writer (lock): what it mirrored and
                # the journal record it found waiting for its block are kept, not re-read.
                self._mirrored = self.pg.next_branch_id() - 1
                self._unheld: int | None = None
                self._pg_snaps = {s.height for s in self.pg.snapshots()}
                self._journal_max = int(self._one(f"SELECT coalesce(max(id), 0) FROM "
                                                  f"{SCHEMA}.journal"))
                # The config the replica holds; this replicator is its only writer (lock).
                self._pg_config = self._one(f"SELECT value FROM {SCHEMA}.meta "
                                            "WHERE key = 'config'")
                self.proj = self._fold_at(self.tracking.height)
                self._saved_at = self.tracking.height
        except BaseException:
            self.conn.close()
            raise

    # -- setup -------------------------------------------------------------------------

    def _errors(self, doing: str) -> Any:
        return pg_errors(self.dsn, doing)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _check_writable(self) -> None:
        standby, ro = self.conn.execute(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone() \
            or (False, "off")
        if standby or ro == "on":
            what = "a standby (hot standby replica)" if standby else "read-only"
            raise StoreError(f"{describe(self.dsn)} is {what}: the replicator writes, so point "
                             "--to at the primary (replicas follow it by streaming)")

    def _lock(self) -> None:
        if self._one("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NS, REPLICATOR_LOCK)):
            return
        row = self.conn.execute(
            "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l JOIN "
            "pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND "
            "l.classid = %s AND l.objid = %s AND l.granted AND l.database = (SELECT oid FROM "
            "pg_database WHERE datname = current_database())",
            (LOCK_NS, REPLICATOR_LOCK)).fetchone()
        who = (f"{row[1] or 'a client'} (server pid {row[0]}, since "
               f"{row[2]:%Y-%m-%d %H:%M:%S})" if row else "another client")
        raise LedgerLocked(f"another replicator is already feeding {describe(self.dsn)}: "
                           f"{who}; stop it first, or give this one another database")

    def _bind(self) -> None:
        """Tie the database to this chain on first use; refuse another chain's database."""
        store = self.store
        meta = dict(self.conn.execute(f"SELECT key, value FROM {SCHEMA}.meta").fetchall())
        if "chain_id" not in meta:
            with self.conn.transaction():
                cur = self.conn.cursor()
                put_meta(cur, "chain_id", store.chain_id)
                put_meta(cur, "config", store.config)
                put_meta(cur, "ledger_schema", LMDB_SCHEMA_VERSION)
                put_meta(cur, "block_signatures", True)
                init_tracking(cur, Head(-1, 0, genesis_prev_hash(store.chain_id), 0))
            return
        gen = store.genesis_hash
        if meta["chain_id"] != store.chain_id or (
                meta.get("genesis_hash") and gen and meta["genesis_hash"] != gen.hex()):
            raise IntegrityError(
                f"{describe(self.dsn)} replicates chain {meta['chain_id']!r} (genesis "
                f"{str(meta.get('genesis_hash'))[:16]}), not this ledger's {store.chain_id!r} "
                f"(genesis {gen.hex()[:16] if gen else 'none'}); use another database")
        if not meta.get("block_signatures"):
            self._backfill_signatures()

    def _backfill_signatures(self) -> None:
        """A replica made before schema 3 holds its blocks without the writer's signatures:
        copy them from the ledger once, in one transaction. Each block is found by hash
        (one the ledger has archived since is found in its branch); the lookups run again
        if a truncation lands meanwhile, so no block is paired with another's signature."""
        store = self.store
        rows = self.conn.execute(f"SELECT branch, height, hash FROM {SCHEMA}.blocks WHERE "
                                 "writer_sig IS NULL ORDER BY branch, height").fetchall()
        while True:
            n0 = store.next_branch_id()
            found = []
            chains: list[int | None] = [None, *(int(b["branch"]) for b in store.branches())]
            by_chain: dict[int, list[tuple[int, bytes]]] = {}
            for branch, height, block_hash in rows:
                by_chain.setdefault(branch, []).append((height, bytes(block_hash)))
            for branch, blocks in by_chain.items():
                # An archived branch is the same in both stores; a canonical block may
                # have been archived in the ledger since: looked for by hash elsewhere.
                own = branch or None
                lo, hi = blocks[0][0], blocks[-1][0]
                hashes = {h.height: h.hash for h in store.blocks(lo, hi, branch=own)}
                sigs = store.block_signatures(lo, hi, branch=own)
                for height, block_hash in blocks:
                    if hashes.get(height) == block_hash:
                        sig = sigs.get(height)
                    else:
                        owner = where_is_block(store, height, block_hash,
                                               branches=[own] if branch else chains)
                        sig = None if owner is False else \
                            store.block_signature(height, branch=owner)
                    if sig is not None:
                        found.append((sig[0], sig[1], branch, height))
            if store.next_branch_id() == n0:
                break
        signed = store.block_signature(0) is not None
        with self.conn.transaction():
            cur = self.conn.cursor()
            cur.executemany(f"UPDATE {SCHEMA}.blocks SET writer_key = %s, writer_sig = %s "
                            "WHERE branch = %s AND height = %s", found)
            # A signed chain whose every block was found is done; anything missing is
            # looked for again at the next start (and until then `verify` names it).
            if not signed or len(found) == len(rows):
                put_meta(cur, "block_signatures", True)
        log.info("block signatures backfilled", blocks=len(found), missing=len(rows) - len(found),
                 signed_chain=signed)

    def close(self) -> None:
        """Save the fold state at the head replicated (a cheaper restart), disconnect."""
        try:
            if not self._broken and not self.conn.closed and self._saved_at != \
                    self.tracking.height and self.tracking.height >= 0:
                with self._errors("saving the fold state"), self.conn.transaction():
                    self._save_fold(self.conn.cursor(), self.tracking, self.proj.dump())
        finally:
            if not self.conn.closed:
                self.conn.close()

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- fold states -----------------------------------------------------------------------

    def _fold_at(self, height: int) -> AuditProjection:
        """The audit fold state after the replica's canonical block `height`: the newest
        saved state at or below it still on the replica's chain, then its own blocks."""
        proj = AuditProjection(columns=True)
        row = self.conn.execute(
            f"SELECT f.height, f.blob FROM {SCHEMA}.fold_states f JOIN {SCHEMA}.blocks b ON "
            "b.branch = 0 AND b.height = f.height AND b.hash = f.hash WHERE f.height <= %s "
            "ORDER BY f.height DESC LIMIT 1", (height,)).fetchone()
        start = -1
        if row is not None:
            proj.load(bytes(row[1]))
            start = int(row[0])
        if start < height:
            for hdr, datas in self.pg.iter_block_bytes(start + 1, height):
                proj.fold(hdr, datas, False)
        proj.set_namespace(0)
        return proj

    def _retain(self, height: int) -> bool:
        every = int(self.store.config.get("snapshot_every", 0) or 0)
        return (every > 0 and height % every == 0) or height in self._lmdb_snaps

    def _save_fold(self, cur: psycopg.Cursor[Any], at: Head, blob: bytes) -> None:
        depth = max_rollback_depth(self.store.config)
        cur.execute(f"INSERT INTO {SCHEMA}.fold_states (height, hash, blob) VALUES (%s, %s, %s) "
                    "ON CONFLICT (height) DO UPDATE SET hash = EXCLUDED.hash, blob = "
                    "EXCLUDED.blob", (at.height, at.hash, blob))
        cur.execute(f"DELETE FROM {SCHEMA}.fold_states WHERE height < %s",
                    (at.height - depth,))
        self._saved_at = at.height

    # -- running -----------------------------------------------------------------------------

    def run(self, *, follow: bool = False, poll: float = 0.2,
            stop: Callable[[], bool] = lambda: False) -> ReplicationReport:
        """Catch up (mirroring rollbacks) and return; with `follow`, keep following the
        chain until `stop()` is true. Raises the ledger's errors (`StoreUnavailable`
        if the server goes away; nothing half-written is then visible)."""
        report = ReplicationReport(height=self.tracking.height)
        # Without `follow`, catch up to the head as it is now, even if the writer goes on.
        self._until = None if follow else self.store.head.height
        t0 = time.perf_counter()
        bar = ProgressBar(self.progress, "replicate",
                          max(0, self.store.head.seq - self.tracking.seq))
        try:
            while not stop():
                done = self._step(report, bar, stop)
                if done:
                    continue
                if not follow:
                    break
                time.sleep(poll)
        except BaseException:
            self._broken = True
            raise
        finally:
            bar.close()
            report.seconds = time.perf_counter() - t0
            report.height = self.tracking.height
        return report

    def _step(self, report: ReplicationReport, bar: ProgressBar,
              stop: Callable[[], bool]) -> bool:
        """One move towards the chain: mirror the next branch, or copy blocks; False when
        there was nothing to do."""
        store = self.store
        n0 = store.next_branch_id()
        mirrored = self._mirrored
        if mirrored > n0 - 1:
            raise IntegrityError(f"{describe(self.dsn)} holds archived branch {mirrored}, the "
                                 f"chain only {n0 - 1}: it was fed from another ledger")
        self._lmdb_snaps = {s.height for s in store.snapshots()}
        branches = [b for b in store.branches() if b["branch"] < n0]
        try:
            if mirrored < n0 - 1:
                rec = branches[mirrored]
                base = int(rec["base_height"])
                self._extend(mirrored, base, branches, n0, report, bar, stop)
                if self.tracking.height >= base and not stop():
                    self._mirror(rec, report)
                return True
            self._check_link(n0)
            self._sync_side()
            head = store.head.height if self._until is None else min(self._until,
                                                                       store.head.height)
            return self._extend(n0 - 1, head, branches, n0, report, bar, stop) > 0
        except _ChainMoved:
            log.info("the chain was rolled back during a read; planning again")
            return True

    def _check_link(self, n0: int) -> None:
        """With every branch mirrored, the replica's head must be on the chain."""
        t = self.tracking
        if t.height < 0:
            return
        try:
            ok = self.store.block(t.height).hash == t.hash
        except StoreError:
            ok = False
        if not ok:
            if self.store.next_branch_id() != n0:
                raise _ChainMoved
            raise IntegrityError(
                f"the replica's block at height {t.height} ({t.hash.hex()[:16]}) is not the "
                "chain's there and no archived branch explains it: the database was fed from "
                "another copy of this ledger; replicate into a fresh database")

    def _owner(self, height: int, k: int, branches: list[dict[str, Any]]) -> int | None:
        """Where block `height` of K(k) (the chain as it stood just before rollback k+1)
        lives now: the first later branch whose base is below it, else the canonical chain."""
        for rec in branches[k:]:
            if height > int(rec["base_height"]):
                return int(rec["branch"])
        return None

    def _extend(self, k: int, to_height: int, branches: list[dict[str, Any]], n0: int,
                report: ReplicationReport, bar: ProgressBar,
                stop: Callable[[], bool]) -> int:
        """Copy blocks of K(k) after the replica's head up to `to_height`, whole blocks in
        each PostgreSQL transaction (runs of them when behind); the blocks copied."""
        if self.tracking.height >= to_height or stop():
            return 0
        return self._pipeline(self._read_runs(k, to_height, branches, n0), n0, report, bar,
                              stop)

    def _read_runs(self, k: int, to_height: int, branches: list[dict[str, Any]], n0: int
                   ) -> Iterator[_Run]:
        """Runs of blocks of K(k) after the replica's head up to `to_height`, each read in
        one LMDB read transaction, with where LMDB holds them now (None: the canonical
        chain, else a later branch). Raises `_ChainMoved` if a rollback intervenes."""
        store = self.store
        lo = self.tracking.height + 1
        while lo <= to_height:
            owner = self._owner(lo, k, branches)
            # The owner only changes just above a later branch's base: the run ends there.
            hi = min([to_height] + [int(r["base_height"]) for r in branches[k:]
                                    if int(r["base_height"]) >= lo])
            # Blocks and their signatures from one snapshot; a rollback since the step
            # began changes where the blocks are: plan again.
            batch, sigs = store.read_signed_blocks(lo, hi, branch=owner,
                                                   max_events=self.batch_events)
            if store.next_branch_id() != n0:
                raise _ChainMoved
            if not batch or batch[0][0].height != lo:
                raise _ChainMoved
            yield _Run(owner, batch, sigs)
            lo = batch[-1][0].height + 1

    def _groups(self, runs: Iterator[_Run],
                abort: threading.Event) -> Iterator[list[_Prepared] | _Unlinked]:
        """Check, fold and encode the blocks of `runs` into transactions: runs of whole
        consecutive blocks up to the group bounds, never across a change of owner. The
        last run ends with the last block asked for (`_extend`'s `to_height`, the head
        when the step began): a caught-up follower writes its one new block at once,
        never waiting for more. An unlinked block ends it."""
        prev = self.tracking.hash
        group: list[_Prepared] = []
        events = 0
        group_owner: int | None = None
        for owner, batch, sigs in runs:
            if group and owner != group_owner:
                yield group
                group, events = [], 0
            group_owner = owner
            for hdr, datas in batch:
                if abort.is_set():
                    return
                check_events(hdr, datas)
                if hdr.prev_hash != prev:
                    if group:
                        yield group
                    yield _Unlinked(hdr)
                    return
                prev = hdr.hash
                snap = None
                if owner is None and hdr.height in self._lmdb_snaps:
                    try:
                        snap = self.store.snapshot(hdr.height)
                    except StoreError:
                        snap = None
                group.append(self._prepare(hdr, datas, sigs.get(hdr.height), snap))
                events += hdr.count
                if group_full(events, len(group), self.group_events, self.group_blocks):
                    yield group
                    group, events = [], 0
        if group:
            yield group

    def _pipeline(self, runs: Iterator[_Run], n0: int,
                  report: ReplicationReport, bar: ProgressBar, stop: Callable[[], bool]) -> int:
        """Write `runs` in a two-stage pipeline: a thread reads, checks, folds and encodes
        the next transaction's blocks (Python work) while this one waits for the server
        to take the current one. Only this thread writes; a transaction is committed
        whole or not at all. If the pipeline stops early, the fold state (which may have
        run ahead of the commits) is rebuilt at the replica's head."""
        store = self.store
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        abort = threading.Event()

        def produce() -> None:
            try:
                for item in self._groups(runs, abort):
                    ready.put(item)
                    if isinstance(item, _Unlinked) or abort.is_set():
                        return
                ready.put(None)
            except BaseException as exc:  # handed to the writing thread, raised there
                ready.put(exc)

        with _short_switches():
            worker = threading.Thread(target=produce, name="replicator-prepare", daemon=True)
            worker.start()
            copied = prepared_ahead = 0
            try:
                while True:
                    item = ready.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if isinstance(item, _Unlinked):
                        if store.next_branch_id() != n0:
                            raise _ChainMoved
                        raise IntegrityError(
                            f"block {item.hdr.height} of the chain does not link to the "
                            f"replica's block {self.tracking.height}; the database was fed "
                            "from another copy of this ledger")
                    self._commit(item)
                    events = sum(p.hdr.count for p in item)
                    copied += len(item)
                    report.transactions += 1
                    report.blocks += len(item)
                    report.events += events
                    bar.advance(events)
                    if stop():
                        prepared_ahead = 1
                        break
            except BaseException:
                prepared_ahead = 1
                raise
            finally:
                abort.set()
                while worker.is_alive():  # unblock a producer waiting on a full queue
                    with contextlib.suppress(queue.Empty):
                        ready.get(timeout=0.05)
                worker.join()
                if prepared_ahead and not self._broken and not self.conn.closed:
                    try:
                        self.proj = self._fold_at(self.tracking.height)
                    except Exception:
                        self._broken = True
        return copied

    def _journal_due(self, written: Collection[bytes]) -> list[dict[str, Any]]:
        """The new journal records the replica may hold once blocks `written` (hashes)
        commit: in id order, up to the first whose block it will not hold yet.

        A record goes in the transaction of the block it names, never before it: `verify`
        pairs every record with its block, and on a replica that is behind a record
        written early would name a block it does not have.
        """
        due = []
        for rec in self.store.journal(after=self._journal_max):
            named = bytes.fromhex(str(rec["head_hash"]))
            # A record found waiting before is not probed again: only `written` or a
            # mirror can bring its block.
            if named not in written and (rec["id"] == self._unheld or
                                         not self._holds(int(rec["head_height"]), named)):
                self._unheld = int(rec["id"])
                break
            due.append(rec)
        return due

    def _holds(self, height: int, block_hash: bytes) -> bool:
        """Whether the replica holds block `block_hash` at `height` (any branch)."""
        # By primary key (branch, height): one probe per chain the replica holds.
        chains = list(range(self._mirrored + 1))
        return bool(self._one(f"SELECT count(*) FROM {SCHEMA}.blocks WHERE branch = ANY(%s) "
                              "AND height = %s AND hash = %s", (chains, height, block_hash)))

    def _put_journal(self, cur: psycopg.Cursor[Any], journal: list[dict[str, Any]]) -> None:
        if journal:
            put_journal(cur, journal)
            self._journal_max = max(int(r["id"]) for r in journal)

    def _prepare(self, hdr: BlockHeader, datas: list[bytes], sig: tuple[str, bytes] | None,
                 snap: Snapshot | None) -> _Prepared:
        """Fold one block and encode all its rows (no I/O to the server)."""
        enc = encode_block(hdr, datas, 0, sig)
        self.proj.fold(hdr, datas, True)
        staged = encode_staged(self.proj.take_staged(), self.proj.ns)
        blob = self.proj.dump() if self._retain(hdr.height) else None
        return _Prepared(hdr, enc, staged, snap, blob)

    def _commit(self, group: list[_Prepared]) -> None:
        """ONE transaction: whole consecutive blocks, their read-model rows, what arrived
        beside them, and tracking advanced to the last of them."""
        first, last = group[0].hdr, group[-1].hdr
        new = Head(last.height, last.last_seq, last.hash, last.time)
        what = (f"writing block {last.height}" if len(group) == 1 else
                f"writing blocks {first.height}..{last.height}")
        with self._errors(what):
            journal = self._journal_due({p.hdr.hash for p in group})
        with self._errors(what), self.conn.transaction():
            cur = self.conn.cursor()
            self._write_run(cur, [(p.block, p.staged) for p in group])
            for p in group:
                hdr = p.hdr
                if p.snap is not None:
                    put_snapshot(cur, p.snap)
                if hdr.height == 0:
                    put_meta(cur, "genesis_hash", hdr.hash.hex())
                if p.fold_blob is not None:
                    self._save_fold(cur, Head(hdr.height, hdr.last_seq, hdr.hash, hdr.time),
                                    p.fold_blob)
            self._put_journal(cur, journal)
            advance(cur, self.tracking, new)
        self.tracking = new
        self._pg_snaps.update(p.hdr.height for p in group if p.snap is not None)

    @staticmethod
    def _write_run(cur: psycopg.Cursor[Any], run: list[tuple[EncodedBlock, StagedRows]]
                   ) -> None:
        """Blocks and their read-model rows, one COPY per table (nothing if `run` is empty)."""
        if run:
            write_blocks(cur, [blk for blk, _ in run])
            write_encoded(cur, [rows for _, rows in run])

    def _sync_side(self) -> None:
        """Snapshots taken after their block was replicated, journal records whose block
        it already holds, config."""
        t = self.tracking.height
        missing = [h for h in sorted(self._lmdb_snaps) if h <= t and h not in self._pg_snaps]
        journal = self._journal_due(())
        config = self.store.config
        if not missing and not journal and self._pg_config == config:
            return
        with self._errors("writing snapshots and journal records"), self.conn.transaction():
            cur = self.conn.cursor()
            for h in missing:
                try:
                    snap = self.store.snapshot(h)
                except StoreError:
                    continue
                if snap.state_hash != self.pg.block(h).state_hash:
                    raise IntegrityError(f"the chain's snapshot at height {h} does not match "
                                         "the replica's block there")
                put_snapshot(cur, snap)
            self._put_journal(cur, journal)
            if self._pg_config != config:
                put_meta(cur, "config", config)
        self._pg_snaps.update(missing)
        self._pg_config = dict(config)

    # -- rollbacks ---------------------------------------------------------------------------

    def _mirror(self, rec: dict[str, Any], report: ReplicationReport) -> None:
        """Mirror archived branch `rec` in ONE transaction (see module docstring)."""
        b = int(rec["branch"])
        base, last = int(rec["base_height"]), int(rec["last_height"])
        first_seq = int(rec["first_seq"])
        t = self.tracking
        base_hdr = self.pg.block(base)
        if base_hdr.hash != bytes(rec["base_hash"]):
            raise IntegrityError(f"the replica's block {base} is not the base of the chain's "
                                 f"archived branch {b}; the database was fed from another copy")
        if t.height > base and t.hash != self.store.block(t.height, branch=b).hash:
            raise IntegrityError(f"the replica's block {t.height} is not in the chain's "
                                 f"archived branch {b}; the database was fed from another copy")
        at_base = self._fold_at(base)
        new = Head(base, first_seq - 1, base_hdr.hash, base_hdr.time)
        with self._errors(f"mirroring the rollback to height {base} (branch {b})"), \
                self.conn.transaction():
            cur = self.conn.cursor()
            # The branch's blocks the replica never had, folded on from its head's state,
            # written a run at a time (one COPY per table per `group_events` events).
            self.proj.set_namespace(b)
            prev = t.hash
            run: list[tuple[EncodedBlock, StagedRows]] = []
            events = 0
            copied: set[bytes] = set()
            sigs = self.store.block_signatures(t.height + 1, last, branch=b)
            for hdr, datas in self.store.iter_block_bytes(t.height + 1, last, branch=b):
                if hdr.prev_hash != prev:
                    raise IntegrityError(f"archived branch {b} does not link at height "
                                         f"{hdr.height}; run `ledgerctl verify --branch {b}`")
                prev = hdr.hash
                copied.add(hdr.hash)
                self.proj.fold(hdr, datas, True)
                run.append((encode_block(hdr, datas, b, sigs.get(hdr.height)),
                            encode_staged(self.proj.take_staged(), b)))
                events += hdr.count
                report.events += hdr.count
                if group_full(events, len(run), self.group_events, self.group_blocks):
                    self._write_run(cur, run)
                    run, events = [], 0
            self._write_run(cur, run)
            moved = archive_above(cur, base, first_seq, b)
            moved.update(archive_models_above(cur, base, b))
            put_branch(cur, rec)
            self._put_journal(cur, self._journal_due(copied))
            advance(cur, t, new)
        self.tracking = new
        self._mirrored = b
        self._unheld = None  # the mirror may have brought a waiting record's block
        self.proj = at_base
        self._saved_at = -2
        self._pg_snaps = {h for h in self._pg_snaps if h <= base}
        report.branches_mirrored.append(b)
        log.info("rollback mirrored", branch=b, base_height=base, **moved)


def replicate(store: ChainStore, dsn: str, *, follow: bool = False, poll: float = 0.2,
              stop: Callable[[], bool] = lambda: False, progress: bool = False,
              batch_events: int = BATCH_EVENTS, group_events: int = GROUP_EVENTS,
              group_blocks: int = GROUP_BLOCKS) -> ReplicationReport:
    """Open a replicator on `dsn`, run it (see `Replicator.run`), close it."""
    with Replicator(store, dsn, progress=progress, batch_events=batch_events,
                    group_events=group_events, group_blocks=group_blocks) as rep:
        return rep.run(follow=follow, poll=poll, stop=stop)
