"""Writing a replica, one step at a time, inside the caller's PostgreSQL transaction.

The replicator (`projections.replicator`) composes these into ONE transaction
per block, or per run of whole consecutive blocks when it is behind:
`write_blocks` (headers, events with their filter columns, index chunks: one
binary COPY per table for the whole run), snapshots and journal records that
arrived, the audit read-model rows, and `advance` (compare-and-set of the
tracking row to the run's last block). A rollback is mirrored by
`archive_above` in one transaction too. Nothing here commits; a failure
anywhere rolls the whole transaction back, so a reader never sees half of
a block (or of a run).
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from psycopg import Cursor
from psycopg.types.json import Jsonb

from ledger.errors import IntegrityError
from ledger.store.blocks import BlockHeader, encode_header
from ledger.store.chain import Snapshot
from ledger.store.layout import Head, event_index_keys, index_items, pack_record, read_u64
from ledger.store.pg import copybin
from ledger.store.pg.schema import SCHEMA

#: `index_chunks.idx` of each LMDB index.
IDX_ACCOUNT, IDX_MARKET, IDX_TYPE = 0, 1, 2
INDEX_IDS = {"account": IDX_ACCOUNT, "market": IDX_MARKET, "type": IDX_TYPE}

_BLOCK_COPY = (f"COPY {SCHEMA}.blocks (branch, height, time, first_seq, count, prev_hash, "
               "events_hash, state_hash, hash, header, writer_key, writer_sig) FROM STDIN "
               "(FORMAT BINARY)")
_EVENT_COPY = (f"COPY {SCHEMA}.events (branch, seq, height, type_code, accounts, markets, "
               "data) FROM STDIN (FORMAT BINARY)")
_INDEX_COPY = (f"COPY {SCHEMA}.index_chunks (branch, idx, key, first_seq, chunk) FROM STDIN "
               "(FORMAT BINARY)")
# The fixed-width head of an events row (7 fields: branch, seq, height, type code) and
# of an index row (5 fields: branch, idx), each with its length prefixes; the tail of an
# index row after its key (first seq, and the chunk's length prefix).
_EVENT_HEAD = struct.Struct(">hiiiqiqih").pack
_INDEX_HEAD = struct.Struct(">hiiih").pack
_INDEX_TAIL = struct.Struct(">iqi").pack
_LEN = struct.Struct(">i").pack
# A blocks row's fixed-width head (12 fields: branch, height, time, first seq, count).
_BLOCK_HEAD = struct.Struct(">hiiiqiqiqii").pack

#: (type code, accounts, markets) of one event (`layout.event_index_keys`).
IndexKeys = tuple[int, tuple[str, ...], tuple[str, ...]]


def index_rows(first_seq: int, keys: Sequence[IndexKeys]) -> list[tuple[int, bytes, int, bytes]]:
    """(idx, key, first seq, chunk) of one block's index chunks, from its events' index keys
    in seq order from `first_seq`.

    The chunks are built with the writer's own layout (`layout.index_items`),
    exactly the chunks LMDB holds for the block. Keys are grouped as strings and
    encoded once each: UTF-8 keeps code point order, so the order is the same.
    """
    acct_g: defaultdict[str, list[int]] = defaultdict(list)
    mkt_g: defaultdict[str, list[int]] = defaultdict(list)
    type_g: defaultdict[int, list[int]] = defaultdict(list)
    seq = first_seq
    for code, accts, mkts in keys:
        for a in accts:
            acct_g[a].append(seq)
        for m in mkts:
            mkt_g[m].append(seq)
        type_g[code].append(seq)
        seq += 1
    groups = ((IDX_ACCOUNT, {k.encode(): v for k, v in acct_g.items()}),
              (IDX_MARKET, {k.encode(): v for k, v in mkt_g.items()}),
              (IDX_TYPE, {bytes((k,)): v for k, v in type_g.items()}))
    return [(idx, key, read_u64(chunk), chunk)
            for idx, by_key in groups for key, chunk in index_items(by_key)]


class EncodedBlock(NamedTuple):
    """One block's rows as binary COPY rows, without the stream's signature and trailer
    (CPU work done before the transaction; runs of blocks are concatenated)."""

    header: bytes
    events: bytes
    index_rows: bytes
    rows: int


def encode_block(hdr: BlockHeader, datas: Sequence[bytes], branch: int,
                 signature: tuple[str, bytes] | None) -> EncodedBlock:
    """A block's header row (with the writer's signature, if the block has one) and its
    events (stored bytes unchanged, with their filter columns) and index rows, encoded for
    binary COPY."""
    keys = [event_index_keys(d) for d in datas]
    head, arr, length = _EVENT_HEAD, copybin.text_array, _LEN
    parts: list[bytes] = []
    seq, height = hdr.first_seq, hdr.height
    for data, (code, accts, mkts) in zip(datas, keys, strict=True):
        parts += (head(7, 4, branch, 8, seq, 8, height, 2, code), arr(accts), arr(mkts),
                  length(len(data)), data)
        seq += 1
    index = index_rows(hdr.first_seq, keys)
    ix_parts: list[bytes] = []
    ix_head, ix_tail = _INDEX_HEAD, _INDEX_TAIL
    for idx, key, first, chunk in index:
        ix_parts += (ix_head(5, 4, branch, 2, idx), length(len(key)), key,
                     ix_tail(8, first, len(chunk)), chunk)
    raw = copybin.raw
    signed = (copybin.text(signature[0]), raw(signature[1])) if signature is not None \
        else (copybin.NULL, copybin.NULL)
    return EncodedBlock(
        b"".join((_BLOCK_HEAD(12, 4, branch, 8, hdr.height, 8, hdr.time, 8, hdr.first_seq,
                              4, hdr.count),
                  raw(hdr.prev_hash), raw(hdr.events_hash), raw(hdr.state_hash), raw(hdr.hash),
                  raw(encode_header(hdr)), *signed)),
        b"".join(parts), b"".join(ix_parts), 1 + len(datas) + len(index))


def write_blocks(cur: Cursor[Any], blocks: Sequence[EncodedBlock]) -> None:
    """Write encoded consecutive blocks (inside the caller's transaction): one COPY per
    table for all of them, whatever their number."""
    copy_rows(cur, _BLOCK_COPY, [e.header for e in blocks])
    copy_rows(cur, _EVENT_COPY, [e.events for e in blocks])
    copy_rows(cur, _INDEX_COPY, [e.index_rows for e in blocks])


def copy_rows(cur: Cursor[Any], sql: str, parts: Sequence[bytes]) -> None:
    """Binary COPY of rows already encoded (`copybin.row`s, concatenated in `parts`) as one
    stream; nothing if there are none."""
    if any(parts):
        with cur.copy(sql) as cp:
            cp.write(b"".join((copybin.SIGNATURE, *parts, copybin.TRAILER)))


def put_snapshot(cur: Cursor[Any], snap: Snapshot) -> None:
    cur.execute(f"INSERT INTO {SCHEMA}.snapshots (height, state_hash, time, size, data) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (height) DO NOTHING",
                (snap.height, snap.state_hash, snap.time, len(snap.data), snap.data))


def put_journal(cur: Cursor[Any], records: Sequence[dict[str, Any]]) -> None:
    for rec in records:
        cur.execute(f"INSERT INTO {SCHEMA}.journal (id, action, operator, reason, head_height, "
                    "recorded_at, record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (rec["id"], rec["action"], rec["operator"], rec["reason"],
                     rec["head_height"], rec["recorded_at"], pack_record(rec)))


def put_branch(cur: Cursor[Any], rec: dict[str, Any]) -> None:
    cur.execute(f"INSERT INTO {SCHEMA}.branches (branch, base_height, first_height, "
                "last_height, reason, operator, record) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (rec["branch"], rec["base_height"], rec["first_height"], rec["last_height"],
                 rec["reason"], rec["operator"], pack_record(rec)))


def put_meta(cur: Cursor[Any], key: str, value: Any) -> None:
    cur.execute(f"INSERT INTO {SCHEMA}.meta (key, value) VALUES (%s, %s) ON CONFLICT (key) "
                "DO UPDATE SET value = EXCLUDED.value", (key, Jsonb(value)))


def init_tracking(cur: Cursor[Any], head: Head) -> None:
    """The tracking row before any block (height -1, the genesis prev hash)."""
    cur.execute(f"INSERT INTO {SCHEMA}.tracking (id, height, seq, hash, time) VALUES "
                "(1, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (head.height, head.seq, head.hash, head.time))


def advance(cur: Cursor[Any], expected: Head, new: Head) -> None:
    """Move the tracking row from `expected` to `new`, or raise `IntegrityError`.

    Compare-and-set: if another writer moved it, this transaction must not
    commit (the replicator's advisory lock makes that a bug or a forced
    second writer, never a race to be won).
    """
    cur.execute(f"UPDATE {SCHEMA}.tracking SET height = %s, seq = %s, hash = %s, time = %s, "
                "replicated_at = now() WHERE id = 1 AND height = %s AND hash = %s",
                (new.height, new.seq, new.hash, new.time, expected.height, expected.hash))
    if cur.rowcount != 1:
        raise IntegrityError(f"the replica's tracking row moved away from height "
                             f"{expected.height} under this replicator (another writer?); "
                             "nothing of this block was committed")


def archive_above(cur: Cursor[Any], height: int, first_seq: int, branch: int) -> dict[str, int]:
    """Move the canonical chain's rows above `height` (events from `first_seq`) to `branch`,
    and drop the snapshots above it, as LMDB's truncate-with-archive does; row counts."""
    moved = {}
    for table, where in (("blocks", "height > %s"), ("events", "seq >= %s"),
                         ("index_chunks", "first_seq >= %s")):
        cur.execute(f"UPDATE {SCHEMA}.{table} SET branch = %s WHERE branch = 0 AND {where}",
                    (branch, first_seq if table != "blocks" else height))
        moved[table] = cur.rowcount
    cur.execute(f"DELETE FROM {SCHEMA}.snapshots WHERE height > %s", (height,))
    moved["snapshots_dropped"] = cur.rowcount
    return moved
