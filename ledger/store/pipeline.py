"""The commit pipeline: block N commits in a background thread while block N+1 is prepared.

py-lmdb releases the GIL while LMDB writes a transaction's pages and syncs
them, so the writer's thread can decide and encode the next block meanwhile.
At most one block is in flight: `start` hands a prepared block (and optionally
the snapshot to store after it) to the background thread, `finish` waits for
it and returns its header once its transaction has committed, or raises what
the commit raised. A block is acknowledged by its caller only after `finish`,
so nothing unacknowledged is ever reported durable; `tip` is the head the next
block must be prepared on (the block in flight's, or the durable head).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ledger.store.blocks import BlockHeader

if TYPE_CHECKING:
    from ledger.store.chain import ChainStore, Head, PreparedBlock, SnapshotInfo
    from ledger.store.journal import JournalEntry


class CommitPipeline:
    """One background committer for one writable ChainStore (see module docstring)."""

    def __init__(self, store: ChainStore) -> None:
        self.store = store
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: tuple[Future[tuple[BlockHeader, SnapshotInfo | None]],
                              PreparedBlock] | None = None
        #: seconds the background thread spent committing, and the caller spent waiting
        self.commit_seconds = 0.0
        self.wait_seconds = 0.0
        #: how long the last commit's transaction took, in ns (the append latency metric)
        self.last_commit_ns = 0

    @property
    def tip(self) -> Head:
        """The head the next block is prepared on: the block in flight's, else the durable one."""
        if self._inflight is not None:
            return self._inflight[1].new_head
        return self.store.head

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    def start(self, block: PreparedBlock, snapshot: bytes | None = None,
              journal: JournalEntry | None = None) -> None:
        """Commit `block` (with its `journal` record, then store `snapshot` at its height)
        in the background."""
        if self._inflight is not None:
            raise RuntimeError("a block is already in flight: finish() it first")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perpledger-commit")
        self._inflight = (self._pool.submit(self._commit, block, snapshot, journal), block)

    def finish(self) -> tuple[BlockHeader, SnapshotInfo | None]:
        """Wait for the block in flight: its header and snapshot once durable (or the error)."""
        if self._inflight is None:
            raise RuntimeError("no block in flight")
        future, _ = self._inflight
        t = time.perf_counter()
        try:
            return future.result()
        finally:
            self.wait_seconds += time.perf_counter() - t
            self._inflight = None

    def close(self) -> None:
        """Wait for whatever is in flight (its error is not raised here) and stop the thread."""
        if self._inflight is not None:
            # The caller already stopped; whatever committed is on disk, and an error of
            # the block in flight was its to hear about through finish().
            with contextlib.suppress(BaseException):
                self.finish()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _commit(self, block: PreparedBlock, snapshot: bytes | None,
                journal: JournalEntry | None) -> tuple[BlockHeader, SnapshotInfo | None]:
        t = time.perf_counter()
        try:
            t0 = time.perf_counter_ns()
            header = self.store.commit_prepared(block, journal=journal)
            self.last_commit_ns = time.perf_counter_ns() - t0
            info = None
            if snapshot is not None:
                info = self.store.put_snapshot(header.height, header.state_hash, snapshot)
            return header, info
        finally:
            self.commit_seconds += time.perf_counter() - t
