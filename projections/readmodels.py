"""The read-model LMDB environment of a ledger: `<data>/readmodels/`.

Why a separate environment: LMDB allows one writer per environment at a time.
If read models lived in the chain's environment, every rebuild batch would
queue behind (and hold up) the sequencer's block commits. In their own
environment, rebuild jobs and audit catch-ups commit independently of the
sequencer, which they only ever read (MVCC snapshots, no lock). The price is
that a read model and the chain are two databases: a read model therefore
records, in the same transaction as its entries, the height AND the block hash
it has folded up to (its checkpoint), and checks that hash against the chain
before trusting itself (see `projections.runner`).

Layout (integers big-endian so byte order is numeric order; `ns` is a u32
namespace: 0 = the canonical chain, `b` = archived branch `b`; strings are
length-prefixed, `s8(x) = u8 len + utf8`):

  rm_meta   name -> msgpack              chain identity, checkpoints, rebuild job
  rm_state  s8(projection) ns height -> [block hash, last seq, state blob]
            the projection's fold state at that height (the latest, plus a few
            retained for rewinds)
  stmt      ns s8(acct) height seq u32(k) -> statement line  (per-account lines; k
            numbers an event's lines: a rollback carries any number of flows)
  funding   ns s8(mkt) height seq -> funding tick          (per-market history)
  liqs      ns height seq -> liquidation register record
  hx        ns height seq table k -> key of the entry in its table
  touch     ns last_height -> [first_height, [ns s8(acct), ...]]

Dropping everything above a fork height (a rewind) is a range delete:
- `hx` is the height companion of every funding and liquidation entry: one
  range walk from `ns + u64(fork + 1)` names each entry to delete;
- statement lines are many, so instead of a companion per line, each commit
  records which accounts it wrote lines for (`touch`, keyed by the commit's
  last height); the commits above the fork name the accounts, and each
  account's lines above the fork are one contiguous key range
  (`ns s8(acct) u64(fork + 1)...`). Cost: O(entries dropped + accounts named).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import lmdb
import msgpack

from ledger.store.env import SharedEnv, close_env, open_env
from ledger.store.layout import MAX_ID_BYTES

T = TypeVar("T")
if TYPE_CHECKING:
    # Our transactions never use buffers=True, so keys and values are bytes.
    Txn = lmdb.Transaction[bytes]
else:
    Txn = lmdb.Transaction

#: Directory of the read-model environment under a ledger's data directory.
READMODELS_DIR = "readmodels"
#: Layout version of this environment; another version is dropped and rebuilt.
#: 2: a statement line's `k` (its index within its event) is a u32, not a u8.
LAYOUT_VERSION = 2

T_STMT = 1
T_FUNDING = 2
T_LIQS = 3

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
u64 = _U64.pack
u32 = _U32.pack
CANONICAL = 0


def read_u64(data: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(data, offset)[0])


def s8(text: str) -> bytes:
    """A length-prefixed string key part (prefix-free, so ranges never bleed).

    Ids are at most MAX_ID_BYTES (255) bytes, which is what the u8 prefix holds.
    """
    raw = text.encode()
    if len(raw) > MAX_ID_BYTES:
        raise ValueError(f"key part longer than {MAX_ID_BYTES} bytes: {text[:40]!r}...")
    return bytes((len(raw),)) + raw


def pack(obj: Any) -> bytes:
    return cast(bytes, msgpack.packb(obj, use_bin_type=True))


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def run_read(shared: SharedEnv, fn: Callable[[Txn], T]) -> T:
    """`SharedEnv.run_read` typed for bytes (the chain's environment too)."""
    return shared.run_read(cast(Callable[[lmdb.Transaction], T], fn))


def ckpt_key(projection: str, ns: int) -> bytes:
    return b"ckpt:" + projection.encode() + b"@" + str(ns).encode()


def state_prefix(projection: str, ns: int) -> bytes:
    return s8(projection) + u32(ns)


# What damaged read-model bytes raise on the way out of LMDB and msgpack.
_DAMAGED = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError, lmdb.InvalidError,
            lmdb.BadValsizeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError, KeyError, IndexError, TypeError, struct.error)


def readmodels_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / READMODELS_DIR


def _writable(path: Path) -> bool:
    """True if read models can be written at `path` (or created in its parent)."""
    probe = path if path.exists() else path.parent
    if not os.access(probe, os.W_OK):
        return False
    lock = path / "lock.mdb"
    return not lock.exists() or os.access(lock, os.W_OK)


class ReadModels:
    """Handles on the read-model environment of one ledger (shared per process)."""

    def __init__(self, shared: SharedEnv) -> None:
        self.shared = shared
        self.path = Path(shared.path)
        db = shared.db
        self.meta: Any = db(b"rm_meta")
        self.state: Any = db(b"rm_state")
        self.stmt: Any = db(b"stmt")
        self.funding: Any = db(b"funding")
        self.liqs: Any = db(b"liqs")
        self.hx: Any = db(b"hx")
        self.touch: Any = db(b"touch")
        self.tables: dict[int, Any] = {T_STMT: self.stmt, T_FUNDING: self.funding,
                                       T_LIQS: self.liqs}

    #: How these read models were opened: "writable", "readonly" (a read-only
    #: directory: they answer as of their checkpoint, they cannot catch up) or
    #: "scratch" (none could be opened there: built in a temporary directory).
    mode = "writable"
    _scratch: str | None = None

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, readonly: bool = False) -> ReadModels:
        """Open (creating if needed, unless `readonly`) the read models at `data_dir`."""
        rm = cls(open_env(readmodels_path(data_dir), readonly=readonly, create=not readonly))
        rm.mode = "readonly" if readonly else "writable"
        return rm

    @classmethod
    def open_for_reading(cls, data_dir: str | os.PathLike[str]) -> ReadModels:
        """Open the read models of a ledger a reader may not be able to write.

        Writable where the directory allows it; read-only where it exists on a
        read-only directory or mount; else fresh ones in a temporary directory
        (removed on close), so queries still answer on a read-only copy.
        """
        import tempfile

        from ledger.errors import StoreFull

        path = readmodels_path(data_dir)
        if _writable(path):
            try:
                return cls.open(data_dir)
            except StoreFull:  # a full disk: read what is there, as a read-only reader
                pass
        if (path / "data.mdb").exists():
            return cls.open(data_dir, readonly=True)
        scratch = tempfile.mkdtemp(prefix="perpledger-readmodels-")
        rm = cls(open_env(readmodels_path(scratch)))
        rm.mode = "scratch"
        rm._scratch = scratch
        return rm

    def close(self) -> None:
        if self.shared is not None:
            close_env(self.shared)
            self.shared = None  # type: ignore[assignment]
        if self._scratch is not None:
            import shutil

            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> ReadModels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in one read transaction (a consistent MVCC snapshot).

        Damaged read-model bytes raise `StoreCorrupted` naming the command that
        rebuilds them (`rebuild_hint`), never a decoding traceback.
        """
        try:
            return run_read(self.shared, fn)
        except _DAMAGED as exc:
            raise self.damaged(exc) from exc

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run `fn` in one durable write transaction (all or nothing)."""
        try:
            return self.shared.run_write(cast(Callable[[lmdb.Transaction], T], fn))
        except _DAMAGED as exc:
            raise self.damaged(exc) from exc

    def rebuild_hint(self) -> str:
        """The command that rebuilds these read models from the chain."""
        data = self.path.parent
        return (f"they hold nothing the chain does not: rebuild them with `rm -rf {self.path} "
                f"&& ledgerctl rebuild --from genesis --data {data}`")

    def damaged(self, exc: BaseException) -> Exception:
        from ledger.errors import StoreCorrupted

        return StoreCorrupted(str(self.path), f"the read models do not decode "
                              f"({type(exc).__name__}: {str(exc)[:120]})",
                              fix=self.rebuild_hint())

    # -- meta ------------------------------------------------------------------

    def get_meta(self, txn: Txn, key: bytes) -> Any:
        raw = txn.get(key, db=self.meta)
        return None if raw is None else unpack(raw)

    def put_meta(self, txn: Txn, key: bytes, value: Any) -> None:
        txn.put(key, pack(value), db=self.meta)

    # -- range deletes -----------------------------------------------------------

    def drop_above(self, txn: Txn, ns: int, height: int) -> int:
        """Delete every entry of namespace `ns` above `height`; return the count."""
        pre = u32(ns)
        start = pre + u64(height + 1)
        n = 0
        cur = txn.cursor(self.hx)
        if cur.set_range(start):
            while cur.key().startswith(pre):
                key = cur.key()
                txn.delete(cur.value(), db=self.tables[key[4 + 16]])
                n += 1
                if not cur.delete():
                    break
        # Statement lines: the accounts each commit above the fork wrote for.
        straddling: set[bytes] = set()
        first_kept: int | None = None
        cur = txn.cursor(self.touch)
        if cur.set_range(start):
            while cur.key().startswith(pre):
                first, accts = unpack(cur.value())
                for acct_pre in accts:
                    n += _drop_range(txn, self.stmt, bytes(acct_pre), u64(height + 1))
                if first <= height:  # the commit straddles the fork: its lower lines stay
                    straddling.update(bytes(a) for a in accts)
                    first_kept = first if first_kept is None else min(first_kept, first)
                if not cur.delete():
                    break
        if straddling and first_kept is not None:
            self.add_touch(txn, ns, first_kept, height, straddling)
        return n

    def add_touch(self, txn: Txn, ns: int, first: int, last: int,
                  prefixes: Iterable[bytes]) -> None:
        """Record that the commit of heights first..last wrote lines under `prefixes`."""
        key = u32(ns) + u64(last)
        accts = set(prefixes)
        raw = txn.get(key, db=self.touch)
        if raw is not None:
            old_first, old = unpack(raw)
            first = min(first, old_first)
            accts.update(bytes(a) for a in old)
        txn.put(key, pack([first, sorted(accts)]), db=self.touch)

    def drop_namespace(self, txn: Txn, ns: int) -> None:
        """Delete every entry, fold state and checkpoint of namespace `ns`."""
        self.drop_above(txn, ns, -1)
        cur = txn.cursor(self.state)
        keys = [k for k in cur.iternext(keys=True, values=False) if k[k[0] + 1:k[0] + 5] == u32(ns)]
        for k in keys:
            txn.delete(k, db=self.state)
        for k in [k for k in txn.cursor(self.meta).iternext(keys=True, values=False)
                  if k.startswith(b"ckpt:") and k.endswith(b"@" + str(ns).encode())]:
            txn.delete(k, db=self.meta)

    def drop_all(self, txn: Txn) -> None:
        """Empty every table (identity and job records in meta are rewritten by callers)."""
        for db in (self.meta, self.state, self.stmt, self.funding, self.liqs, self.hx,
                   self.touch):
            txn.drop(db, delete=False)

    def namespaces(self, txn: Txn) -> list[int]:
        """Namespaces holding a checkpoint (0 and the branches read so far)."""
        out = set()
        for k in txn.cursor(self.meta).iternext(keys=True, values=False):
            if k.startswith(b"ckpt:"):
                out.add(int(k.rsplit(b"@", 1)[1]))
        return sorted(out)


def _drop_range(txn: Txn, db: Any, prefix: bytes, start: bytes) -> int:
    """Delete the keys of `db` that start with `prefix` and sort at or after prefix+start."""
    cur = txn.cursor(db)
    n = 0
    if not cur.set_range(prefix + start):
        return 0
    while cur.key().startswith(prefix):
        n += 1
        if not cur.delete():
            break
    return n


def put_entries(txn: Txn, rm: ReadModels, table: int,
                items: list[tuple[bytes, bytes]]) -> None:
    """Write (key, value) entries of one table (their `hx` companions go via `put_hx`)."""
    if items:
        items.sort()  # keys are unique, so only the keys are ever compared
        _putmulti(txn, rm.tables[table], items)


def put_hx(txn: Txn, rm: ReadModels, items: list[tuple[bytes, bytes]]) -> None:
    """Write `hx` companions: (ns height seq table k, key in its table)."""
    if items:
        items.sort()
        _putmulti(txn, rm.hx, items)


def _putmulti(txn: Txn, db: Any, items: list[tuple[bytes, bytes]]) -> None:
    """putmulti, with MDB_APPEND when every key sorts after the table's last (the usual
    case for height-ordered keys), which skips the B-tree descent per key."""
    cur = txn.cursor(db)
    append = not cur.last() or cur.key() < items[0][0]
    cur.putmulti(items, append=append)


def image(rm: ReadModels, *, tables: tuple[str, ...] = ("stmt", "funding", "liqs", "hx"),
          ) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every (key, value) of the named tables: for tests comparing two read models."""

    def fn(txn: Txn) -> dict[str, list[tuple[bytes, bytes]]]:
        return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(getattr(rm, name))]
                for name in tables}

    return rm.read(fn)
