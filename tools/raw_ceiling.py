"""The raw LMDB ceiling every benchmark divides by: the same events' bytes, no ledger.

- `raw_append`: each event's stored array (the ledger's exact bytes) encoded
  with msgspec's msgpack encoder, the fastest this machine has for them, and
  written with `putmulti(append=True)`, one durable (sync) transaction per
  block, the garbage collector paused per block as the sequencer pauses it. No
  checks, no indexes, no hashes.
- `raw_scan_decode`: a bare cursor walk over an events sub-database with an
  untyped msgspec decode of every value (faster than `msgpack.unpackb`).

Both ceilings moved from msgpack-python to msgspec with issue 13, making them
stricter (about 2x faster to encode, 1.1x to decode) than the figures quoted
before it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
import msgspec
from msgspec.structs import astuple

from ledger.gcpause import gc_paused

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def stored_bytes(env: Any) -> bytes:
    """An envelope's stored array, encoded without any check (the ledger's exact bytes)."""
    ev = env.event
    data: bytes = _encode((ev.TYPE_CODE, ev.VERSION, env.height, env.cause) + astuple(ev))
    return data


def raw_append(path: Path, blocks: Sequence[Sequence[Any]]) -> float:
    """Seconds to encode and durably write every block's envelopes, one transaction each."""
    env = lmdb.open(str(path), map_size=1 << 34, max_dbs=4, sync=True)
    db = env.open_db(b"events")
    t = time.perf_counter()
    for b in blocks:
        with gc_paused():
            items = [(e.seq.to_bytes(8, "big"), stored_bytes(e)) for e in b]
            with env.begin(write=True) as txn:
                txn.cursor(db).putmulti(items, append=True)
    dt = time.perf_counter() - t
    env.close()
    return dt


def raw_scan_decode(env: lmdb.Environment, db: Any) -> tuple[float, int]:
    """Seconds and values of a cursor walk over `db` decoding every value (untyped)."""
    decode = _decode
    n = 0
    t = time.perf_counter()
    with env.begin(db=db) as txn:
        for _k, v in txn.cursor():
            decode(v)
            n += 1
    return time.perf_counter() - t, n


def raw_scan(path: Path) -> tuple[float, int]:
    """`raw_scan_decode` over the `events` sub-database of the LMDB environment at `path`."""
    env = lmdb.open(str(path), map_size=1 << 34, max_dbs=4, readonly=True)
    try:
        return raw_scan_decode(env, env.open_db(b"events", create=False))
    finally:
        env.close()
