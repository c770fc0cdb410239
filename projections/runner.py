"""The projection runner: fold blocks into a projection in batches, with checkpoints.

A projection is an in-memory fold state plus (optionally) read-model entries.
The runner reads a batch of whole blocks from the chain in ONE read transaction
(a consistent MVCC snapshot: the sequencer may append meanwhile), checks each
block's events hash and that the batch links to the last block it folded,
folds the batch, then commits in ONE read-model write transaction:

- the batch's read-model entries,
- the fold state at the batch's last height (a blob),
- the checkpoint: that height, its block hash and its last seq.

So a job killed at any instant resumes from the last commit with the state
of exactly that height: no block is ever applied twice or skipped. The commit
also compares-and-sets the checkpoint it started from, and an exclusive
`flock` (`readmodels/runner.lock`) keeps two runners off one read model.

Rollback under a projection: before each run, and whenever a batch does not
link to the previous one, the checkpoint's block hash is compared with the
chain's block at that height. If the height is above the head or the hash
differs (the block was moved into an archived branch), the runner rewinds by
itself: it takes the newest saved fold state whose block is still canonical
(states are kept at every height that can be a rollback target: multiples of
the chain's `snapshot_every` and snapshot heights, within
`max_rollback_depth`), drops the read-model entries above that height in one
range delete, and folds on from there. The exchange-state projection can also
restart from any chain snapshot (`ChainStartable`). No operator is needed.

Checkpoints and saved states: `projections.checkpoints`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import structlog

from ledger.errors import NotFound, StoreError, VerificationFailed
from ledger.store import reads
from ledger.store.blocks import BlockHeader, check_events, genesis_prev_hash
from ledger.store.chain import ChainStore, max_rollback_depth
from projections.checkpoints import (
    NOTHING,
    Checkpoint,
    RunnerLock,
    get_checkpoint,
    put_checkpoint,
    read_checkpoint,
    saved_heights,
    saved_state,
    saved_states,
)
from projections.progress import ProgressBar
from projections.readmodels import (
    CANONICAL,
    LAYOUT_VERSION,
    ReadModels,
    Txn,
    ckpt_key,
    pack,
    run_read,
    state_prefix,
    u64,
)

__all__ = ["NOTHING", "BATCH_EVENTS", "ChainStartable", "Checkpoint", "Projection",
           "ProgressBar", "RunResult", "Runner", "RunnerLock", "get_checkpoint",
           "read_checkpoint", "saved_state"]

log = structlog.get_logger("projections.runner")

#: Events per batch (one read transaction, one commit) unless a retained height ends it.
BATCH_EVENTS = 50_000
#: Re-checks of a chain that keeps changing under a run before giving up.
MAX_RETRIES = 20
#: Saved fold states kept for rewinds: the newest KEEP_RECENT rollback-able heights,
#: then one per THIN snapshot intervals back to max_rollback_depth.
KEEP_RECENT = 10
THIN = 10


@runtime_checkable
class Projection(Protocol):
    """What the runner folds. The fold must be deterministic in the blocks it is given."""

    name: str
    #: keep fold states at rollback-able heights (read models with entries need them).
    retain_states: bool

    def reset(self) -> None:
        """Become the empty state before genesis."""

    def load(self, blob: bytes) -> None:
        """Become the state saved by `dump`."""

    def dump(self) -> bytes:
        """The fold state, to be saved with a checkpoint."""

    def set_namespace(self, ns: int) -> None:
        """Key staged entries under namespace `ns` (0 canonical, b a branch)."""

    def fold(self, hdr: BlockHeader, datas: Sequence[bytes], write: bool) -> None:
        """Fold one block's stored event bytes (seqs from `hdr.first_seq`); stage entries
        only if `write`."""

    def flush(self, txn: Txn, rm: ReadModels, ns: int) -> None:
        """Write the staged entries inside the commit transaction."""


@runtime_checkable
class ChainStartable(Protocol):
    """A projection that can start from a chain snapshot instead of its own state."""

    use_chain_snapshots: bool

    def start_from_chain(self, store: ChainStore, at_or_below: int, above: int) -> int | None:
        """If the newest chain snapshot <= at_or_below is above `above`, become its state and
        return its height; else change nothing and return None."""


@dataclass
class RunResult:
    """What one run of one projection did."""

    projection: str
    ns: int
    start_height: int
    height: int
    hash: bytes
    events: int
    blocks: int
    seconds: float
    rewound_to: int | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"projection": self.projection, "ns": self.ns,
                "start_height": self.start_height, "height": self.height,
                "hash": self.hash.hex(), "events": self.events, "blocks": self.blocks,
                "seconds": round(self.seconds, 3), "events_per_s": round(self.events_per_s),
                "rewound_to": self.rewound_to}


class _ChainMoved(Exception):
    """A batch does not link to the last folded block: the chain changed under the run."""

    def __init__(self, height: int | None = None) -> None:
        super().__init__(height)
        self.height = height


# -- the runner --------------------------------------------------------------------


class Runner:
    """Folds the chain (or an archived branch) into projections (see module docstring)."""

    def __init__(self, store: ChainStore, rm: ReadModels, *, batch_events: int = BATCH_EVENTS,
                 progress: bool = False, verify_hashes: bool = True,
                 under_parent: int | None = None) -> None:
        """`under_parent`: the pid of a job process holding the runner lock for this one
        (a rebuild job's worker): take no runner lock, only each projection's own,
        and stop between batches once that process is gone."""
        self.store = store
        self.rm = rm
        self.batch_events = batch_events
        self.progress = progress
        self.verify_hashes = verify_hashes
        self.under_parent = under_parent
        self._lock = RunnerLock(rm)
        self._locked = 0

    # -- locking and identity ----------------------------------------------------------

    def __enter__(self) -> Runner:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    def lock(self, *, wait: bool = True) -> bool:
        """Take the runner lock (re-entrant in this object); False if busy and not waiting."""
        if self._locked:
            self._locked += 1
            return True
        if self.under_parent is not None:
            self._locked = 1  # the parent job holds the runner lock and checked identity
            return True
        if not self._lock.acquire(wait=wait):
            return False
        self._locked = 1
        try:
            self._check_identity()
        except BaseException:
            self.unlock()
            raise
        return True

    def unlock(self) -> None:
        if self._locked:
            self._locked -= 1
            if not self._locked and self.under_parent is None:
                self._lock.release()

    def _check_identity(self) -> None:
        """Drop read models built from another chain (or another layout) at this path."""
        store = self.store
        ident = {"chain_id": store.chain_id, "genesis": store.genesis_hash or b"",
                 "layout": LAYOUT_VERSION}

        if self.rm.read(lambda txn: self.rm.get_meta(txn, b"identity")) == ident:
            return

        def fn(txn: Txn) -> None:
            have = self.rm.get_meta(txn, b"identity")
            if have != ident:
                if have is not None:
                    log.warning("read models belong to another chain or layout; dropping "
                                "them", path=str(self.rm.path))
                self.rm.drop_all(txn)
                self.rm.put_meta(txn, b"identity", ident)

        self.rm.write(fn)

    # -- public entry points -------------------------------------------------------------

    def run(self, proj: Projection, *, to_height: int | None = None) -> RunResult:
        """Fold the canonical chain into `proj` up to `to_height` (default: the head).

        Resumes from the projection's checkpoint, rewinding first if the chain
        was rolled back under it. Raises `VerificationFailed` if stored events
        do not match their block's events hash (or the projection's own check).
        """
        with self, RunnerLock(self.rm, proj.name):
            moved_at: int | None = None
            for _ in range(MAX_RETRIES):
                try:
                    return self._run_canonical(proj, to_height)
                except _ChainMoved as exc:
                    log.info("chain changed during the run; re-checking", projection=proj.name,
                             height=exc.height)
                    moved_at = exc.height
            raise VerificationFailed(moved_at, "the chain does not link to the block before "
                                     f"it ({MAX_RETRIES} attempts; run `ledgerctl verify`)")

    def run_branch(self, proj: Projection, branch: int) -> RunResult:
        """Fold archived branch `branch` into `proj` under namespace `branch`.

        The starting state is the canonical state at the branch's base height,
        so the branch's ancestry must still be canonical (else `NotFound`).
        """
        rec = self.store.branch(branch)
        base, base_hash = int(rec["base_height"]), bytes(rec["base_hash"])
        last = int(rec["last_height"])
        with self, RunnerLock(self.rm, proj.name):
            t0 = time.perf_counter()
            ck = self.rm.read(lambda txn: read_checkpoint(txn, self.rm, proj.name, branch))
            if ck.height >= last:
                return RunResult(proj.name, branch, ck.height, ck.height, ck.hash, 0, 0, 0.0)
            stored = ck
            if ck.height > base:
                blob = self._state_blob(proj.name, branch, ck.height)
                if blob is None:
                    raise StoreError(f"read model {proj.name}@{branch}: no saved state at its "
                                     f"checkpoint {ck.height}")
                proj.load(blob)
            else:
                self._state_at_canonical(proj, base, base_hash, branch)
                ck = Checkpoint(base, base_hash, self.store.block(base).last_seq, 0)
            proj.set_namespace(branch)
            return self._fold_range(proj, branch, ck, last, branch=branch, t0=t0,
                                    stored=stored)

    # -- canonical runs ------------------------------------------------------------------

    def _run_canonical(self, proj: Projection, to_height: int | None) -> RunResult:
        t0 = time.perf_counter()
        rm = self.rm
        proj.set_namespace(CANONICAL)
        head = self.store.head
        target = head.height if to_height is None else min(to_height, head.height)
        ck = rm.read(lambda txn: read_checkpoint(txn, rm, proj.name, CANONICAL))
        rewound: int | None = None
        if ck.height >= 0 and not self._canonical(ck.height, ck.hash):
            ck = self._rewind(proj, ck)
            rewound = ck.height
        if ck.height >= 0:
            blob = self._state_blob(proj.name, CANONICAL, ck.height)
            if blob is None:
                raise StoreError(f"read model {proj.name}: no saved state at its checkpoint "
                                 f"{ck.height}; run `ledgerctl rebuild --from genesis`")
            proj.load(blob)
        else:
            proj.reset()
        # A rewind restarts from a chain snapshot even in a from-genesis job.
        if (isinstance(proj, ChainStartable) and ck.height < target
                and (proj.use_chain_snapshots or rewound is not None)):
            started = proj.start_from_chain(self.store, target, ck.height)
            if started is not None:
                hdr = self.store.block(started)
                new = Checkpoint(started, hdr.hash, hdr.last_seq, ck.events)
                self._commit(proj, CANONICAL, ck, new, retained=set())
                ck = new
        result = self._fold_range(proj, CANONICAL, ck, target, branch=None, t0=t0)
        result.rewound_to = rewound
        return result

    def _state_blob(self, name: str, ns: int, height: int) -> bytes | None:
        return saved_state(self.rm, name, height, ns)

    def _canonical(self, height: int, block_hash: bytes) -> bool:
        try:
            return self.store.block(height).hash == block_hash
        except NotFound:
            return False

    def _rewind(self, proj: Projection, ck: Checkpoint) -> Checkpoint:
        """Go back to the newest saved state still on the canonical chain (or genesis)."""
        rm = self.rm
        states = rm.read(lambda txn: saved_states(txn, rm, proj.name, CANONICAL))
        best = NOTHING
        for height, block_hash in reversed(states):
            if self._canonical(height, block_hash):
                best = Checkpoint(height, block_hash, self.store.block(height).last_seq,
                                  ck.events)
                break

        def fn(txn: Txn) -> int:
            now = read_checkpoint(txn, rm, proj.name, CANONICAL)
            if now != ck:
                raise _ChainMoved(ck.height)
            dropped = rm.drop_above(txn, CANONICAL, best.height) if proj.retain_states else 0
            self._drop_states(txn, proj.name, CANONICAL, above=best.height)
            if best.height < 0:
                txn.delete(ckpt_key(proj.name, CANONICAL), db=rm.meta)
            else:
                put_checkpoint(txn, rm, proj.name, CANONICAL, best)
            return dropped

        dropped = rm.write(fn)
        log.warning("projection rewound: its checkpoint left the canonical chain",
                    projection=proj.name, from_height=ck.height, to_height=best.height,
                    entries_dropped=dropped)
        return best

    def _state_at_canonical(self, proj: Projection, base: int, base_hash: bytes,
                            branch: int) -> None:
        """Make `proj` the canonical fold state at `base` (for a branch's start)."""
        if not self._canonical(base, base_hash):
            raise NotFound(f"branch {branch}: its base block {base} is no longer on the "
                           "canonical chain, so its starting state cannot be rebuilt")
        rm = self.rm
        states = rm.read(lambda txn: saved_states(txn, rm, proj.name, CANONICAL))
        start = -1
        proj.reset()
        for height, block_hash in reversed(states):
            if height <= base and self._canonical(height, block_hash):
                blob = self._state_blob(proj.name, CANONICAL, height)
                if blob is not None:
                    proj.load(blob)
                    start = height
                    break
        if isinstance(proj, ChainStartable):
            started = proj.start_from_chain(self.store, base, start)
            if started is not None:
                start = started
        prev = self.store.block(start).hash if start >= 0 else genesis_prev_hash(
            self.store.chain_id)
        for batch in self._batches(start + 1, base, None, prev, stop_at=set()):
            for hdr, events in batch:
                proj.fold(hdr, events, False)

    # -- folding -------------------------------------------------------------------------

    def _fold_range(self, proj: Projection, ns: int, ck: Checkpoint, target: int, *,
                    branch: int | None, t0: float,
                    stored: Checkpoint | None = None) -> RunResult:
        """Fold (ck.height, target] committing per batch; `stored` is the checkpoint the
        first commit must find (default `ck`), the rest find their predecessor's."""
        start = ck.height
        expected = ck if stored is None else stored
        done_events = 0
        blocks = 0
        if ck.height >= target:
            return RunResult(proj.name, ns, start, ck.height, ck.hash, 0, 0,
                             time.perf_counter() - t0)
        retained = self._retained_heights(target) if proj.retain_states else set()
        last_seq = self._last_seq(target, branch)
        bar = ProgressBar(self.progress, f"{proj.name}{'' if ns == 0 else f'@{ns}'}",
                        max(0, last_seq - ck.seq))
        try:
            if ck.height >= 0:
                prev = ck.hash
            elif branch is None:
                prev = genesis_prev_hash(self.store.chain_id)
            else:
                prev = bytes(self.store.branch(branch)["base_hash"])
            for batch in self._batches(ck.height + 1, target, branch, prev, stop_at=retained):
                self._check_parent()
                n = 0
                for hdr, events in batch:
                    proj.fold(hdr, events, True)
                    n += len(events)
                last = batch[-1][0]
                new = Checkpoint(last.height, last.hash, last.last_seq, ck.events + n)
                self._commit(proj, ns, expected, new, retained=retained)
                ck = expected = new
                done_events += n
                blocks += len(batch)
                bar.advance(n)
        finally:
            bar.close()
        return RunResult(proj.name, ns, start, ck.height, ck.hash, done_events, blocks,
                         time.perf_counter() - t0)

    def _check_parent(self) -> None:
        """A worker stops between batches once the job process it works for is gone."""
        if self.under_parent is not None and os.getppid() != self.under_parent:
            raise StoreError("the rebuild job this worker folded for is gone; stopping at "
                             "its last committed batch (run the job again to resume)")

    def _last_seq(self, height: int, branch: int | None) -> int:
        try:
            return self.store.block(height, branch=branch).last_seq
        except NotFound:
            return 0

    def _retained_heights(self, target: int) -> set[int]:
        """Heights whose fold states are kept for rewinds: the heights a rollback may target
        (snapshot heights within `max_rollback_depth`, and the multiples of
        `snapshot_every` above the newest snapshot: the sequencer writes a snapshot just
        after its block, so a fast runner may see the block first), thinned to the
        newest `KEEP_RECENT` and then one per `THIN` snapshot intervals. A rollback to a
        dropped height rewinds to the kept state below it and refolds the difference.
        """
        every = int(self.store.config.get("snapshot_every", 0) or 0)
        depth = max_rollback_depth(self.store.config)
        lo = max(0, target - depth)
        snaps = [s.height for s in self.store.snapshots()]
        heights = {h for h in snaps if h >= lo}
        if every > 0:
            first = max(lo, max(snaps, default=-1) + 1)
            heights.update(range(first + (-first) % every, target + 1, every))
        ordered = sorted(heights)
        keep = set(ordered[-KEEP_RECENT:])
        step = THIN * every
        keep.update(ordered[i] for i in range(len(ordered))
                    if (ordered[i] % step == 0 if step else i % THIN == 0))
        return keep

    def _batches(self, lo: int, hi: int, branch: int | None, prev_hash: bytes, *,
                 stop_at: set[int]) -> Iterator[list[tuple[BlockHeader, list[bytes]]]]:
        """Batches of whole blocks [lo, hi], each read in one MVCC snapshot and checked.

        A batch ends after `batch_events` events or at a height in `stop_at`.
        Raises `_ChainMoved` if a batch does not link to `prev_hash`.
        """
        store = self.store
        dbs = store.dbs
        check = self.verify_hashes
        while lo <= hi:
            def read(txn: Txn, a: int = lo) -> list[tuple[BlockHeader, list[bytes]]]:
                group: list[BlockHeader] = []
                total = 0
                for hdr in reads.blocks(txn, dbs, a, hi, branch):
                    group.append(hdr)
                    total += hdr.count
                    if total >= self.batch_events or hdr.height in stop_at:
                        break
                return reads.block_bytes(txn, dbs, group, branch)

            batch = run_read(store.shared_env, read)
            if not batch or batch[0][0].height != lo:
                raise _ChainMoved(lo)
            for hdr, chunk in batch:
                if check:
                    check_events(hdr, chunk)
                elif len(chunk) != hdr.count:
                    raise VerificationFailed(hdr.height, "the store holds fewer events than "
                                             "the block header counts")
                if hdr.prev_hash != prev_hash:
                    raise _ChainMoved(hdr.height)
                prev_hash = hdr.hash
            yield batch
            lo = batch[-1][0].height + 1

    def _commit(self, proj: Projection, ns: int, expected: Checkpoint | None,
                new: Checkpoint, *, retained: set[int]) -> None:
        """One transaction: staged entries, the fold state at `new`, the checkpoint."""
        rm = self.rm
        blob = proj.dump()
        depth = max_rollback_depth(self.store.config)

        def fn(txn: Txn) -> None:
            now = read_checkpoint(txn, rm, proj.name, ns)
            if expected is not None and now != expected:
                raise StoreError(f"read model {proj.name}@{ns} moved to height {now.height} "
                                 f"under this run (expected {expected.height}); another "
                                 "runner is writing it")
            proj.flush(txn, rm, ns)
            pre = state_prefix(proj.name, ns)
            txn.put(pre + u64(new.height), pack([new.hash, new.seq, blob]), db=rm.state)
            keep_from = new.height - depth
            for height in saved_heights(txn, rm, proj.name, ns):
                if height >= new.height:
                    break
                if not (ns == CANONICAL and height in retained and height >= keep_from):
                    txn.delete(pre + u64(height), db=rm.state)
            put_checkpoint(txn, rm, proj.name, ns, new)

        rm.write(fn)

    def _drop_states(self, txn: Txn, name: str, ns: int, *, above: int) -> None:
        pre = state_prefix(name, ns)
        for height in saved_heights(txn, self.rm, name, ns):
            if height > above:
                txn.delete(pre + u64(height), db=self.rm.state)
