"""Keys of the eventsourcing sub-databases, and ordered range scans over them.

LMDB orders keys bytewise, so integers are u64 big-endian and variable-length
parts carry a u16 length: the keys of one aggregate (or one tracked
application) then form one contiguous range that no other id can fall into.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from uuid import UUID

import lmdb
from eventsourcing.persistence import DataError

U16 = struct.Struct(">H")
U64 = struct.Struct(">Q")
U64_MAX = (1 << 64) - 1
UUID_TAG = b"U"
STR_TAG = b"S"


def u64(value: int, what: str) -> bytes:
    """Encode a non-negative integer as 8 bytes big-endian; raise `DataError` if out of range."""
    if not 0 <= value <= U64_MAX:
        raise DataError(f"{what} must be in [0, 2**64), was {value}")
    return U64.pack(value)


def length_prefixed(text: str, max_len: int, what: str) -> bytes:
    """Encode text as u16 length + UTF-8; raise `DataError` if longer than `max_len` bytes."""
    raw = text.encode("utf-8")
    if len(raw) > max_len:
        raise DataError(f"{what} must be at most {max_len} UTF-8 bytes, was {len(raw)}")
    return U16.pack(len(raw)) + raw


def originator_prefix(originator_id: UUID | str, max_len: int) -> bytes:
    """Encode an originator id with its type: ``U`` + 16 bytes, or ``S`` + length + UTF-8.

    The tag makes ids read back as the type they were written with, without a
    per-store setting; a UUID and its string form are therefore two ids.
    """
    if isinstance(originator_id, UUID):
        return UUID_TAG + originator_id.bytes
    if isinstance(originator_id, str):
        return STR_TAG + length_prefixed(originator_id, max_len, "a str originator id")
    raise DataError(f"originator id must be a UUID or str, was {type(originator_id).__name__}")


def split_event_key(key: bytes) -> tuple[UUID | str, int]:
    """Decode an event key into (originator id, version)."""
    if key[:1] == UUID_TAG:
        return UUID(bytes=key[1:17]), U64.unpack_from(key, 17)[0]
    (length,) = U16.unpack_from(key, 1)
    return key[3 : 3 + length].decode("utf-8"), U64.unpack_from(key, 3 + length)[0]


def scan_range(
    cursor: lmdb.Cursor[bytes], low: bytes, high: bytes, *, desc: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """Yield the items with `low <= key <= high`, ascending or descending."""
    if desc:
        if cursor.set_range(high):
            if cursor.key() != high and not cursor.prev():
                return
        elif not cursor.last():
            return
        for key, value in cursor.iterprev():
            if key < low:
                return
            yield key, value
    else:
        if not cursor.set_range(low):
            return
        for key, value in cursor.iternext():
            if key > high:
                return
            yield key, value
