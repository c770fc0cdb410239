"""The LMDB layout of a ledger: sub-database names, key encodings, index chunks.

Canonical chain:
  events       seq u64be                -> stored event bytes (codec.py)
  blocks       height u64be             -> header (blocks.py)
  by_account   account utf8   (dupsort) -> posting chunk
  by_market    market utf8    (dupsort) -> posting chunk
  by_type      type code u8   (dupsort) -> posting chunk
Archived branches (rolled-back suffixes), the same shapes behind a branch id:
  arch_events      branch u32be + seq u64be
  arch_blocks      branch u32be + height u64be
  arch_by_account  branch u32be + account   (dupsort) -> posting chunk
  arch_by_market   branch u32be + market    (dupsort) -> posting chunk
  arch_by_type     branch u32be + code u8   (dupsort) -> posting chunk
  branches         branch u32be -> branch record
Other:
  snap_meta    height u64be -> [state_hash, block_time, size]
  snap_data    height u64be -> canonical state bytes
  journal      id u64be -> operator action record
  checkpoints  name utf8 -> checkpoint record
  block_sigs       height u64be -> [writer key id, signature] (signatures.py)
  arch_block_sigs  branch u32be + height u64be -> the same, archived
  meta         name -> value (schema version, chain id, config, genesis hash, head)

Big-endian integers make LMDB's byte order the numeric order, so range scans
are cursor walks and appends can use MDB_APPEND.

Index posting chunks (schema version 2; version 1 stored one dup per event):
a chunk is the seq u64be of its first event, then the offset (seq - first seq)
of each further event as u16 big-endian, strictly increasing. A chunk holds
seqs of ONE block only, at most `MAX_CHUNK_OFFSETS` offsets (a dupsort value
is at most 511 bytes) and offsets up to `MAX_CHUNK_SPAN`; a key with more
events in a block gets several chunks (`posting_chunks`). So appending a block
costs one put per (key, block), not one per event. LMDB sorts a key's dups by
their bytes, i.e. by the leading u64be first seq, which is unique per key;
chunks of one key never overlap in seqs, so its dups list its seqs in order.
A chunk never spans two blocks, so a truncation cuts between chunks.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, NamedTuple

import lmdb
import msgpack

from ledger.errors import IntegrityError
from ledger.events.codec import HEADER_LEN, index_positions

# The chunk layout lives in ledger.store.chunks (compiled with the core); re-exported.
from ledger.store.chunks import MAX_CHUNK_OFFSETS as MAX_CHUNK_OFFSETS
from ledger.store.chunks import MAX_CHUNK_SPAN as MAX_CHUNK_SPAN
from ledger.store.chunks import chunk_last as chunk_last
from ledger.store.chunks import chunk_seqs as chunk_seqs
from ledger.store.chunks import index_items as index_items
from ledger.store.chunks import posting_chunks as posting_chunks
from ledger.store.env import SharedEnv

if TYPE_CHECKING:
    from typing import TypeAlias

    # py-lmdb's stubs type a transaction's reads as `bytes | memoryview`, narrowed
    # by a type parameter its classes carry in the stubs only. Every transaction
    # on a ledger environment is begun with buffers=False (`SharedEnv.run_read`,
    # `SharedEnv.run_write`), so every key and value it reads is `bytes`.
    Txn: TypeAlias = lmdb.Transaction[bytes]
    Cursor: TypeAlias = lmdb.Cursor[bytes]
else:
    Txn = lmdb.Transaction
    Cursor = lmdb.Cursor
#: A sub-database handle.
Db = lmdb._Database

#: 2: index dups are per-block posting chunks (see the module docstring).
SCHEMA_VERSION = 2

#: The longest account or market id, in UTF-8 bytes, anywhere in the ledger. Every
#: key that embeds an id (the chain's indexes and archive, the read models' keys with
#: their u8 length prefix) is sized for it, so none can overflow LMDB's 511-byte keys
#: or a length field; the store refuses a block naming a longer id (BlockRejected).
MAX_ID_BYTES = 255

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
u64 = _U64.pack
u32 = _U32.pack


def read_u64(data: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(data, offset)[0])


def read_u32(data: bytes, offset: int = 0) -> int:
    return int(_U32.unpack_from(data, offset)[0])


def pack_record(obj: Any) -> bytes:
    """A meta, journal or branch record as stored: msgpack with bin type."""
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack_record(data: bytes) -> Any:
    """A record `pack_record` stored (maps keyed by anything, lists as lists)."""
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


INDEX_NAMES = ("account", "market", "type")


def _optional(db: Any, name: bytes) -> Db | None:
    try:
        handle: Db = db(name)
    except lmdb.NotFoundError:
        return None
    return handle


class Dbs:
    """Handles of every sub-database of one ledger environment."""

    def __init__(self, shared: SharedEnv) -> None:
        db = shared.db
        self.meta = db(b"meta")
        self.events = db(b"events")
        self.blocks = db(b"blocks")
        self.by_account = db(b"by_account", dupsort=True)
        self.by_market = db(b"by_market", dupsort=True)
        self.by_type = db(b"by_type", dupsort=True)
        self.arch_events = db(b"arch_events")
        self.arch_blocks = db(b"arch_blocks")
        self.arch_by_account = db(b"arch_by_account", dupsort=True)
        self.arch_by_market = db(b"arch_by_market", dupsort=True)
        self.arch_by_type = db(b"arch_by_type", dupsort=True)
        self.branches = db(b"branches")
        self.snap_meta = db(b"snap_meta")
        self.snap_data = db(b"snap_data")
        self.journal = db(b"journal")
        self.checkpoints = db(b"checkpoints")
        # Added by the signed-chain format; a read-only open of an older ledger has none.
        self.block_sigs: Db | None = _optional(db, b"block_sigs")
        self.arch_block_sigs: Db | None = _optional(db, b"arch_block_sigs")

    def index(self, name: str, branch: int | None) -> Db:
        """The index sub-database for `name` on the canonical chain or the archive."""
        if branch is None:
            return {"account": self.by_account, "market": self.by_market,
                    "type": self.by_type}[name]
        return {"account": self.arch_by_account, "market": self.arch_by_market,
                "type": self.arch_by_type}[name]


def meta_get(txn: Txn, dbs: Dbs, name: bytes) -> bytes:
    """A meta record every initialised ledger holds (raises `IntegrityError` if absent).

    `ChainStore.create` writes schema_version, chain_id, config, next_branch and
    head in its first transaction; later writes replace them, none deletes them.
    """
    raw = txn.get(name, db=dbs.meta)
    if raw is None:
        raise IntegrityError(f"the ledger's meta record {name.decode()!r} is missing; "
                             "the store is damaged")
    return raw


class Head(NamedTuple):
    """The tip of the canonical chain (height -1 and seq 0 before genesis)."""

    height: int
    seq: int
    hash: bytes
    time: int


def encode_head(head: Head) -> bytes:
    """The stored head record: msgpack `[height, seq, hash, time]` (the one definition)."""
    data: bytes = msgpack.packb([head.height, head.seq, head.hash, head.time], use_bin_type=True)
    return data


def decode_head(raw: bytes) -> Head:
    """A stored head record back into a `Head` (raises `IntegrityError` if malformed)."""
    try:
        h = msgpack.unpackb(raw, raw=False)
        return Head(int(h[0]), int(h[1]), bytes(h[2]), int(h[3]))
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        raise IntegrityError("the ledger's head record does not decode; the store is "
                             "damaged") from None


def read_head(txn: Txn, dbs: Dbs) -> Head:
    """The head record of a ledger inside a transaction."""
    return decode_head(meta_get(txn, dbs, b"head"))


def write_head(txn: lmdb.Transaction, dbs: Dbs, head: Head) -> None:
    """Replace the head record inside a write transaction."""
    txn.put(b"head", encode_head(head), db=dbs.meta)


def index_key(name: str, value: str | int) -> bytes:
    """The index key of an account, a market or a type code."""
    if name == "type":
        assert isinstance(value, int)
        return bytes((value,))
    assert isinstance(value, str)
    return value.encode()


_unpackb = msgpack.unpackb
# Per type code: the array positions of its account fields and of its market fields.
_KEY_AT: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}


def _ids(arr: tuple[Any, ...], at: tuple[int, ...]) -> tuple[str, ...]:
    """The non-empty ids at positions `at` of a decoded event, each once, in field order."""
    if len(at) == 1:
        a = arr[at[0]]
        return (a,) if a else ()
    if len(at) == 2:  # taker and maker, the common pair: no generator
        a, b = arr[at[0]], arr[at[1]]
        if a and b:
            return (a,) if a == b else (a, b)
        return (a,) if a else (b,) if b else ()
    return tuple(dict.fromkeys(x for i in at if (x := arr[i])))


def event_index_keys(data: bytes) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    """(type code, accounts, markets) an event's stored bytes are indexed under.

    Read from the msgpack array by field position (`codec.index_positions`),
    without building the record; each id once, in field order, and an empty
    id (a rejection naming no market) indexes nothing, as in `prepare_block`.
    """
    arr = _unpackb(data, use_list=False, raw=False)
    code = arr[0]
    at = _KEY_AT.get(code)
    if at is None:
        accts, mkts = index_positions(code)
        at = _KEY_AT[code] = (tuple(HEADER_LEN + i for i in accts),
                              tuple(HEADER_LEN + i for i in mkts))
    accts_at, mkts_at = at
    return (code, _ids(arr, accts_at) if accts_at else (),
            _ids(arr, mkts_at) if mkts_at else ())
