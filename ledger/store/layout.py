"""The LMDB layout of a ledger: sub-database names and key encodings.

Canonical chain:
  events       seq u64be                -> stored event bytes (codec.py)
  blocks       height u64be             -> header (blocks.py)
  by_account   account utf8   (dupsort) -> seq u64be
  by_market    market utf8    (dupsort) -> seq u64be
  by_type      type code u8   (dupsort) -> seq u64be
Archived branches (rolled-back suffixes), the same shapes behind a branch id:
  arch_events      branch u32be + seq u64be
  arch_blocks      branch u32be + height u64be
  arch_by_account  branch u32be + account   (dupsort) -> seq u64be
  arch_by_market   branch u32be + market    (dupsort) -> seq u64be
  arch_by_type     branch u32be + code u8   (dupsort) -> seq u64be
  branches         branch u32be -> branch record
Other:
  snap_meta    height u64be -> [state_hash, block_time, size]
  snap_data    height u64be -> canonical state bytes
  journal      id u64be -> operator action record
  checkpoints  name utf8 -> checkpoint record
  meta         name -> value (schema version, chain id, config, genesis hash, head)

Big-endian integers make LMDB's byte order the numeric order, so range scans
are cursor walks and appends can use MDB_APPEND.
"""

from __future__ import annotations

import struct
from typing import Any

from ledger.store.env import SharedEnv

SCHEMA_VERSION = 1

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
        self.meta: Any = db(b"meta")
        self.events: Any = db(b"events")
        self.blocks: Any = db(b"blocks")
        self.by_account: Any = db(b"by_account", dupsort=True)
        self.by_market: Any = db(b"by_market", dupsort=True)
        self.by_type: Any = db(b"by_type", dupsort=True)
        self.arch_events: Any = db(b"arch_events")
        self.arch_blocks: Any = db(b"arch_blocks")
        self.arch_by_account: Any = db(b"arch_by_account", dupsort=True)
        self.arch_by_market: Any = db(b"arch_by_market", dupsort=True)
        self.arch_by_type: Any = db(b"arch_by_type", dupsort=True)
        self.branches: Any = db(b"branches")
        self.snap_meta: Any = db(b"snap_meta")
        self.snap_data: Any = db(b"snap_data")
        self.journal: Any = db(b"journal")
        self.checkpoints: Any = db(b"checkpoints")

    def index(self, name: str, branch: int | None) -> Any:
        """The index sub-database for `name` on the canonical chain or the archive."""
        if branch is None:
            return {"account": self.by_account, "market": self.by_market,
                    "type": self.by_type}[name]
        return {"account": self.arch_by_account, "market": self.arch_by_market,
                "type": self.arch_by_type}[name]


def index_key(name: str, value: str | int) -> bytes:
    """The index key of an account, a market or a type code."""
    if name == "type":
        assert isinstance(value, int)
        return bytes((value,))
    assert isinstance(value, str)
    return value.encode()
