"""LMDB environments: one per data directory per process, growing on demand.

LMDB forbids opening the same environment twice in one process, so every
component (chain store, eventsourcing recorders, read models) asks this
registry, which hands out one shared, reference-counted `lmdb.Environment`.

The map grows by itself: before a write transaction, a map more than
`GROW_AT` full is grown (`ensure_room`), and a write that still hits
`MapFullError` is retried after the map is doubled (`run_write`). Readers in
other processes that see `MapResizedError` adopt the new size and retry
(`run_read`). The initial map size is `PERPLEDGER_MAP_SIZE` (bytes, or with a
K/M/G/T suffix), else the one recorded at `init --map-size`, else 1 GiB.

Readers open the environment read-only (`readonly=True`), so a reader can
never write. On a read-only directory or mount, where LMDB cannot open its
lock file, a reader opens without the lock table (`lock=False`): safe there
because no writer can change those files under it.

A full disk never reaches a process as SIGBUS. LMDB writes the data file
through `pwrite` (no `writemap`), so it only grows by writes that succeed or
fail with an error, and readers only touch pages a committed transaction
wrote. Its lock file, though, is a sparse file written through a shared
mapping: on a full disk the first touch of an unallocated page of it kills the
process with SIGBUS (measured on a full tmpfs: creating the read models'
environment, or a reader taking a fresh slot). So before LMDB maps it, the lock
file's blocks are allocated (`posix_fallocate`, which changes no byte); where
that fails for want of space, a writer gets `StoreFull` and a reader opens
without the lock table. A write that fails for want of space is translated into
`StoreFull` naming the directory and its free space (ledger.store.failures).
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
#: Environment variable giving the initial map size (overrides the recorded one).
MAP_SIZE_ENV = "PERPLEDGER_MAP_SIZE"
#: Smallest map size accepted (LMDB needs a few pages per sub-database).
MIN_MAP_SIZE = 1 << 20
#: Grow the map before a write once it is this full (fraction of the map in use).
GROW_AT = 0.8
_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str, what: str = "map size") -> int:
    """Bytes from `4096`, `64M`, `2G`, ... (raises CommandInvalid)."""
    from ledger.errors import CommandInvalid

    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in ("K", "M", "G", "T") else ""
    digits = t[:-1] if unit else t
    if not digits.isascii() or not digits.isdigit() or len(digits) > 15:
        raise CommandInvalid(f"{what} must be a number of bytes, optionally with K, M, G or T, "
                             f"was {text!r}")
    size = int(digits) * _SUFFIX[unit]
    if size < MIN_MAP_SIZE:
        raise CommandInvalid(f"{what} must be at least {MIN_MAP_SIZE} bytes (1M), was {text!r}")
    return size


def map_size_from_env(default: int = INITIAL_MAP_SIZE) -> int:
    """The initial map size: $PERPLEDGER_MAP_SIZE if set, else `default`."""
    raw = os.environ.get(MAP_SIZE_ENV)
    return parse_size(raw, MAP_SIZE_ENV) if raw else default
#: Named sub-databases an environment may hold (chain, recorders, read models).
MAX_DBS = 64

_lock = threading.Lock()
_registry: dict[str, SharedEnv] = {}


class SharedEnv:
    """A reference-counted LMDB environment with self-growing map."""

    def __init__(self, path: str, env: lmdb.Environment, *, readonly: bool = False,
                 locked: bool = True) -> None:
        self.path = path
        self.env = env
        self.readonly = readonly
        #: False when opened without LMDB's lock table (a read-only directory or mount).
        self.locked = locked
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
                if handle is None and self.readonly:
                    # py-lmdb opens it in a read transaction it commits itself (a
                    # handle opened in a read txn of ours would not outlive it).
                    handle = self.env.open_db(name, dupsort=dupsort, create=False)
                elif handle is None:
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
            self.ensure_room()
            while True:
                try:
                    with self.env.begin(write=True, buffers=False) as txn:
                        return fn(txn)
                except lmdb.MapFullError:
                    self.grow()
                except lmdb.MapResizedError:
                    self.env.set_mapsize(0)
                except (lmdb.Error, OSError) as exc:
                    from ledger.store.failures import translate

                    known = translate(exc, self.path)
                    if known is None:
                        raise
                    raise known from exc

    def ensure_room(self) -> None:
        """Grow the map ahead of need: double it once it is more than GROW_AT full."""
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        if used > GROW_AT * info["map_size"]:
            self.grow()

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
             map_size: int | None = None, readonly: bool = False) -> SharedEnv:
    """Return this process's shared environment for `path`, opening it if needed.

    `readonly` opens it for reading only (a reader); an environment this process
    already holds open for writing is shared as it is. A writer asking for an
    environment this process holds read-only gets a `StoreError`: LMDB forbids
    opening one environment twice in a process.
    """
    from ledger.errors import StoreError

    real = str(Path(path).resolve())
    with _lock:
        shared = _registry.get(real)
        if shared is not None and shared.readonly and not readonly:
            raise StoreError(f"this process holds the store at {real} open read-only; close "
                             "its readers before opening it for writing")
        if shared is None:
            size = map_size if map_size is not None else map_size_from_env()
            if readonly:
                env, locked = _open_readonly(real, size)
            else:
                if create:
                    Path(real).mkdir(parents=True, exist_ok=True)
                env = _open(real, size, create=create, readonly=False, lock=True)
                locked = True
            shared = SharedEnv(real, env, readonly=readonly, locked=locked)
            _registry[real] = shared
        shared.refs += 1
        return shared


#: Bytes of the lock file allocated ahead of LMDB (its table for 256 readers is
#: about 16 KiB; LMDB truncates a larger file to its size, keeping the blocks).
LOCK_FILE_BYTES = 64 * 1024


def allocate_lock_file(path: str) -> bool:
    """Allocate every block of `path`/lock.mdb (creating it); False if there is no room.

    Raises nothing for a read-only directory (returns False): the caller then
    opens without the lock table.
    """
    lock_path = os.path.join(path, "lock.mdb")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    try:
        size = max(os.fstat(fd).st_size, LOCK_FILE_BYTES)
        os.posix_fallocate(fd, 0, size)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _open(path: str, map_size: int, *, create: bool, readonly: bool,
          lock: bool) -> lmdb.Environment:
    if lock and (create or os.path.exists(os.path.join(path, "data.mdb"))) \
            and os.access(path, os.W_OK) and not allocate_lock_file(path):
        if readonly:
            lock = False
        else:
            from ledger.store.failures import full_error

            raise full_error(path, "cannot allocate the LMDB lock file")
    try:
        return lmdb.open(path, map_size=map_size, max_dbs=MAX_DBS, subdir=True, create=create,
                         readonly=readonly, sync=True, metasync=True, readahead=False,
                         max_readers=256, lock=lock)
    except (lmdb.Error, OSError) as exc:
        from ledger.store.failures import translate

        known = translate(exc, path)
        if known is None or readonly:
            raise
        raise known from exc


def _open_readonly(path: str, map_size: int) -> tuple[lmdb.Environment, bool]:
    """Open for reading; without the lock table where the lock file cannot be used."""
    lock_path = os.path.join(path, "lock.mdb")
    if os.access(path, os.W_OK) and not allocate_lock_file(path):
        # No room to allocate the lock table: mapping it could SIGBUS.
        return _open(path, map_size, create=False, readonly=True, lock=False), False
    if os.path.exists(lock_path) and not os.access(lock_path, os.W_OK):
        return _open(path, map_size, create=False, readonly=True, lock=False), False
    try:
        return _open(path, map_size, create=False, readonly=True, lock=True), True
    except lmdb.Error as exc:
        if not _unlockable(path, exc):
            raise
    return _open(path, map_size, create=False, readonly=True, lock=False), False


def _unlockable(path: str, exc: BaseException) -> bool:
    """True if `exc` came from a lock file this process may not create or write."""
    import errno

    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.EACCES, errno.EROFS, errno.EPERM) or "Read-only file system" in text \
            or "Permission denied" in text or isinstance(exc, lmdb.ReadonlyError):
        return True
    return not os.access(path, os.W_OK)


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
