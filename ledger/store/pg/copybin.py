"""PostgreSQL's binary COPY format, encoded here for the replicator's few column types.

psycopg's `write_row` dumps each value through its adapters; its array adapter
is pure Python and cost more than everything else the replicator does per
event. The format is small and fixed (PostgreSQL docs, "COPY ... Binary
Format"): a signature, then per row an int16 field count and per field an
int32 length and the type's binary send form; an int16 -1 trailer. Each
function here returns one field, length prefix included.
"""

from __future__ import annotations

import functools
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
# The length prefix and body of a numeric of k base-10000 digits (k < 64: |n| < 10**256).
_NUMERIC_BODY = [struct.Struct(f">ihhhh{k}h") for k in range(64)]
_NUMERIC_NEG = 0x4000


def int2(v: int) -> bytes:
    return _I2.pack(2, v)


def int4(v: int) -> bytes:
    return _I4.pack(4, v)


def int8(v: int) -> bytes:
    return _I8.pack(8, v)


def raw(b: bytes) -> bytes:
    """A bytea (or any value already in its send form)."""
    return _LEN.pack(len(b)) + b


@functools.lru_cache(maxsize=1 << 16)
def text(s: str | None) -> bytes:
    """A text value, or NULL (cached: ids and kinds recur)."""
    if s is None:
        return NULL
    b = s.encode()
    return _LEN.pack(len(b)) + b


@functools.lru_cache(maxsize=1 << 16)
def text_array(items: tuple[str, ...]) -> bytes:
    """A one-dimensional text[] (cached: the same few ids recur in every block)."""
    if not items:
        return _EMPTY_TEXT_ARRAY
    elems = b"".join(_LEN.pack(len(b)) + b for b in (s.encode() for s in items))
    body_len = 20 + len(elems)
    return _ARRAY_HEAD.pack(body_len, 1, 0, TEXT_OID, len(items), 1) + elems


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
    k = len(digits)
    body = _NUMERIC_BODY[k] if k < len(_NUMERIC_BODY) else struct.Struct(f">ihhhh{k}h")
    return body.pack(8 + 2 * k, k, weight, sign, 0, *digits)


def row(*fields: bytes) -> bytes:
    return len(fields).to_bytes(2, "big") + b"".join(fields)
