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
from typing import TYPE_CHECKING

import lmdb

from ledger.errors import IntegrityError

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

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
u64 = _U64.pack
u32 = _U32.pack


def read_u64(data: bytes, offset: int = 0) -> int:
    return int(_U64.unpack_from(data, offset)[0])


def read_u32(data: bytes, offset: int = 0) -> int:
    return int(_U32.unpack_from(data, offset)[0])


INDEX_NAMES = ("account", "market", "type")


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


def index_key(name: str, value: str | int) -> bytes:
    """The index key of an account, a market or a type code."""
    if name == "type":
        assert isinstance(value, int)
        return bytes((value,))
    assert isinstance(value, str)
    return value.encode()
