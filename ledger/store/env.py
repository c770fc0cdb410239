"""LMDB environments: one per data directory per process, growing on demand.

LMDB forbids opening the same environment twice in one process, so every
component (chain store, eventsourcing recorders, read models) asks this
registry, which hands out one shared, reference-counted `lmdb.Environment`.

The map grows by itself: a write that hits `MapFullError` is retried after the
map is doubled (`run_write`). Readers in other processes that see
`MapResizedError` adopt the new size and retry (`run_read`).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import lmdb

from ledger.errors import LedgerLocked

T = TypeVar("T")

#: Initial map size; LMDB files are sparse, so this costs address space, not disk.
INITIAL_MAP_SIZE = 1 << 30
#: Named sub-databases an environment may hold (chain, recorders, read models).
MAX_DBS = 64

_lock = threading.Lock()
_registry: dict[str, SharedEnv] = {}


class SharedEnv:
    """A reference-counted LMDB environment with self-growing map."""

    def __init__(self, path: str, env: lmdb.Environment) -> None:
        self.path = path
        self.env = env
        self.refs = 0
        self._dbs: dict[tuple[bytes, bool], lmdb._Database] = {}
        self._write_lock = threading.RLock()

    def db(self, name: bytes, *, dupsort: bool = False) -> lmdb._Database:
        """Return the named sub-database handle, creating it on first use."""
        key = (name, dupsort)
        handle = self._dbs.get(key)
        if handle is None:
            with _lock:
                handle = self._dbs.get(key)
                if handle is None:
                    handle = self.run_write(
                        lambda txn: self.env.open_db(name, txn=txn, dupsort=dupsort, create=True)
                    )
                    self._dbs[key] = handle
        return handle

    # `fn` is typed for the stubs' bare `lmdb.Transaction` (reads `bytes |
    # memoryview`), but the transactions begun here are buffers=False, so what
    # they read is `bytes`: a `layout.Txn`. (Typing `fn` for `Txn` here would
    # make the recorders' own narrowing casts redundant, an error under strict.)
    def run_write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in one write transaction, growing the map and retrying if full.

        `fn` must be safe to re-run: on MapFullError the whole transaction was
        aborted by LMDB, so nothing of the first attempt is visible. Reads in it
        return `bytes` (buffers=False).
        """
        with self._write_lock:
            while True:
                try:
                    with self.env.begin(write=True, buffers=False) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    self.grow()
                except lmdb.MapResizedError:
                    self.env.set_mapsize(0)

    def run_read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in one read-only MVCC snapshot transaction."""
        while True:
            try:
                with self.env.begin(write=False, buffers=False) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)

    def grow(self) -> None:
        """Double the map size (no transaction of this process may be open)."""
        size = self.env.info()["map_size"]
        self.env.set_mapsize(size * 2)


def open_env(path: str | os.PathLike[str], *, create: bool = True,
             map_size: int = INITIAL_MAP_SIZE) -> SharedEnv:
    """Return this process's shared environment for `path`, opening it if needed."""
    real = str(Path(path).resolve())
    with _lock:
        shared = _registry.get(real)
        if shared is None:
            if create:
                Path(real).mkdir(parents=True, exist_ok=True)
            env = lmdb.open(
                real,
                map_size=map_size,
                max_dbs=MAX_DBS,
                subdir=True,
                create=create,
                sync=True,
                metasync=True,
                readahead=False,
                max_readers=256,
                lock=True,
            )
            shared = SharedEnv(real, env)
            _registry[real] = shared
        shared.refs += 1
        return shared


def close_env(shared: SharedEnv) -> None:
    """Drop one reference; close the environment when the last one goes."""
    with _lock:
        shared.refs -= 1
        if shared.refs <= 0:
            _registry.pop(shared.path, None)
            shared.env.close()


class WriterLock:
    """The single-writer lock of a data directory: an exclusive `flock`.

    `flock` locks belong to an open file description, so a second writer in the
    same process conflicts exactly like one in another process. The kernel drops
    the lock when the holder dies, so a SIGKILLed writer never wedges the ledger.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "writer.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `LedgerLocked` naming who holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LedgerLocked(
                f"another writer (pid {holder}) holds the ledger at {self.path.parent}; "
                "stop it, or open this one read-only"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock if held."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None
