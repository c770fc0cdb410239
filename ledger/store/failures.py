"""What LMDB and the file system raise, said as the ledger's own errors.

`translate(exc, path)` turns an exception from py-lmdb (or an OSError from
the data directory) into a `LedgerError` an operator can act on:

- damage (`CorruptedError`, `PageNotFoundError`, `PanicError`, `InvalidError`,
  `BadChecksumError`, ...): `StoreCorrupted`, exit 3;
- no space (ENOSPC, EDQUOT, and LMDB's I/O errors when the disk holding the
  store is full): `StoreFull`, naming the directory and its free space;
- a read-only directory or mount where a write was needed: `StoreError`
  saying which commands work read-only.

Anything else is left alone (None): the CLI's top-level handler reports it.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import lmdb

from ledger.errors import LedgerError, StoreCorrupted, StoreError, StoreFull

#: py-lmdb exceptions that mean the files are damaged (not a usage problem).
#: (BadTxnError: a read transaction LMDB invalidated after meeting damage in it.)
DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError, lmdb.InvalidError,
          lmdb.BadChecksumError, lmdb.VersionMismatchError, lmdb.IncompatibleError,
          lmdb.BadValsizeError, lmdb.BadTxnError)
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


def full_error(path: str | os.PathLike[str], detail: str) -> StoreFull:
    free = free_bytes(path)
    return StoreFull(f"no space left for the store at {path} ({detail}); "
                     f"{human_bytes(free)} free there. Nothing of this write was kept and "
                     "every block acknowledged before it is intact: free space (or raise "
                     "the quota) and run the command again")


def _looks_full(path: str | os.PathLike[str], exc: BaseException) -> bool:
    code = getattr(exc, "errno", None)
    if code in _SPACE_ERRNOS:
        return True
    text = str(exc)
    if "No space left" in text or "Disk quota" in text:
        return True
    # LMDB reports a failed write of a full disk as EIO ("Input/output error"),
    # or as MDB_PROBLEM; call it full when the disk has (almost) no room left.
    if "Input/output error" in text or isinstance(exc, lmdb.ProblemError | lmdb.DiskError):
        free = free_bytes(path)
        return free is not None and free < 4 * 1024 * 1024
    return False


def translate(exc: BaseException, path: str | os.PathLike[str] | None,
              *, subdb: str | None = None, height: int | None = None) -> LedgerError | None:
    """The ledger error `exc` means for the store at `path`, or None."""
    where = str(path) if path is not None else "(unknown directory)"
    if isinstance(exc, LedgerError):
        return exc
    if isinstance(exc, DAMAGE):
        return StoreCorrupted(where, f"LMDB reports {type(exc).__name__}: {exc}", subdb=subdb,
                              height=height, fix="run `ledgerctl verify` to find the first bad "
                              "height; restore the directory from a backup or replica")
    if isinstance(exc, lmdb.ReadonlyError) or getattr(exc, "errno", None) in (errno.EROFS,
                                                                             errno.EACCES):
        return StoreError(f"the store at {where} is read-only ({exc}); this command writes. "
                          "Readers (info, verify, blocks, events, audit ...) work read-only")
    if isinstance(exc, lmdb.Error | OSError) and path is not None and _looks_full(path, exc):
        return full_error(path, str(exc))
    return None
