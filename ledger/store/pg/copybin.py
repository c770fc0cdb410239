"""PostgreSQL's binary COPY format, encoded here for the replicator's few column types.

psycopg's `write_row` dumps each value through its adapters; its array adapter
is pure Python and cost more than everything else the replicator does per
event. The format is small and fixed (PostgreSQL docs, "COPY ... Binary
Format"): a signature, then per row an int16 field count and per field an
int32 length and the type's binary send form; an int16 -1 trailer. Each
function here returns one field, length prefix included.
"""

from __future__ import annotations

import struct

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # flags 0, no header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
TEXT_OID = 25

_I2 = struct.Struct(">ih")
_I4 = struct.Struct(">ii")
_I8 = struct.Struct(">iq")
_LEN = struct.Struct(">i")
_ARRAY_HEAD = struct.Struct(">iiiiii")  # length, ndim, has nulls, element oid, dim, lbound
_EMPTY_TEXT_ARRAY = struct.pack(">iiii", 12, 0, 0, TEXT_OID)
_NUMERIC_ZERO = struct.pack(">ihhhh", 8, 0, 0, 0, 0)
_NBASE = 10_000
_NUMERIC_NEG = 0x4000
_arrays: dict[tuple[str, ...], bytes] = {}


def int2(v: int) -> bytes:
    return _I2.pack(2, v)


def int4(v: int) -> bytes:
    return _I4.pack(4, v)


def int8(v: int) -> bytes:
    return _I8.pack(8, v)


def raw(b: bytes) -> bytes:
    """A bytea (or any value already in its send form)."""
    return _LEN.pack(len(b)) + b


def text(s: str | None) -> bytes:
    if s is None:
        return NULL
    b = s.encode()
    return _LEN.pack(len(b)) + b


def text_array(items: tuple[str, ...]) -> bytes:
    """A one-dimensional text[] (cached: the same few ids recur in every block)."""
    got = _arrays.get(items)
    if got is not None:
        return got
    if not items:
        return _EMPTY_TEXT_ARRAY
    elems = b"".join(_LEN.pack(len(b)) + b for b in (s.encode() for s in items))
    body_len = 20 + len(elems)
    got = _ARRAY_HEAD.pack(body_len, 1, 0, TEXT_OID, len(items), 1) + elems
    if len(_arrays) > 100_000:
        _arrays.clear()
    _arrays[items] = got
    return got


def numeric(n: int) -> bytes:
    """An integer as `numeric` (exact at any size): base-10000 digits, no scale."""
    if n == 0:
        return _NUMERIC_ZERO
    sign = _NUMERIC_NEG if n < 0 else 0
    a = -n if n < 0 else n
    digits: list[int] = []
    while a:
        a, d = divmod(a, _NBASE)
        digits.append(d)
    weight = len(digits) - 1
    digits.reverse()
    while digits[-1] == 0:  # trailing zero digits are implied by the weight
        digits.pop()
    body = struct.pack(f">hhhh{len(digits)}h", len(digits), weight, sign, 0, *digits)
    return _LEN.pack(len(body)) + body


def row(*fields: bytes) -> bytes:
    return len(fields).to_bytes(2, "big") + b"".join(fields)
