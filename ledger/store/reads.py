"""Reads over the canonical chain or an archived branch, inside one read transaction.

Every function takes an open LMDB transaction, so a caller composes several
reads over one consistent MVCC snapshot. Costs are O(result): ranges are
cursor walks from a `set_range`, index queries walk one key's posting chunks
(its duplicates, see layout.py) from a `set_range_dup`.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from ledger.errors import NotFound
from ledger.events.codec import Envelope, decode
from ledger.store.blocks import BlockHeader, decode_header, split_by_block
from ledger.store.layout import (
    Cursor,
    Dbs,
    Txn,
    chunk_last,
    chunk_seqs,
    index_key,
    read_u64,
    u32,
    u64,
)


def _prefix(branch: int | None) -> bytes:
    return b"" if branch is None else u32(branch)


def block(txn: Txn, dbs: Dbs, height: int, branch: int | None) -> BlockHeader:
    db = dbs.blocks if branch is None else dbs.arch_blocks
    raw = txn.get(_prefix(branch) + u64(height), db=db) if height >= 0 else None
    if raw is None:
        where = "the canonical chain" if branch is None else f"branch {branch}"
        raise NotFound(f"no block at height {height} on {where}")
    return decode_header(raw)


def blocks(txn: Txn, dbs: Dbs, from_height: int | None, to_height: int | None,
           branch: int | None) -> Iterator[BlockHeader]:
    db = dbs.blocks if branch is None else dbs.arch_blocks
    pre = _prefix(branch)
    cur = txn.cursor(db)
    if not cur.set_range(pre + u64(max(from_height or 0, 0))):
        return
    for key, raw in cur:
        if not key.startswith(pre):
            return
        h = decode_header(raw)
        if to_height is not None and h.height > to_height:
            return
        yield h


def bounds(txn: Txn, dbs: Dbs, branch: int | None) -> tuple[int, int] | None:
    """(first, last) height held by the chain or branch, or None if it holds no block."""
    db = dbs.blocks if branch is None else dbs.arch_blocks
    pre = _prefix(branch)
    cur = txn.cursor(db)
    if not cur.set_range(pre) or not cur.key().startswith(pre):
        return None
    first = read_u64(cur.key(), len(pre))
    if branch is None:
        cur.last()
    else:
        if not cur.set_range(u32(branch + 1)):
            cur.last()
        else:
            cur.prev()
    return first, read_u64(cur.key(), len(pre))


def seq_range(txn: Txn, dbs: Dbs, from_height: int | None,
              to_height: int | None, branch: int | None) -> tuple[int, int]:
    """The inclusive seq range of an inclusive height range (empty: lo > hi)."""
    b = bounds(txn, dbs, branch)
    if b is None:
        return 1, 0
    lo_h = b[0] if from_height is None else max(from_height, b[0])
    hi_h = b[1] if to_height is None else min(to_height, b[1])
    if lo_h > hi_h:
        return 1, 0
    return block(txn, dbs, lo_h, branch).first_seq, block(txn, dbs, hi_h, branch).last_seq


def raw_by_seq(txn: Txn, dbs: Dbs, lo: int, hi: int,
               branch: int | None) -> list[tuple[int, bytes]]:
    db = dbs.events if branch is None else dbs.arch_events
    pre = _prefix(branch)
    n = len(pre)
    cur = txn.cursor(db)
    out: list[tuple[int, bytes]] = []
    if not cur.set_range(pre + u64(lo)):
        return out
    for key, value in cur:
        if not key.startswith(pre):
            break
        seq = read_u64(key, n)
        if seq > hi:
            break
        out.append((seq, value))
    return out


def values_from(txn: Txn, dbs: Dbs, lo: int, count: int,
                branch: int | None) -> list[bytes]:
    """The stored bytes of `count` events from seq `lo` (seqs are gap-free in a chain).

    One C-level cursor walk; keys are not decoded. The caller checks the count.
    """
    db = dbs.events if branch is None else dbs.arch_events
    cur = txn.cursor(db)
    if count <= 0 or not cur.set_key(_prefix(branch) + u64(lo)):
        return []
    return list(islice(cur.iternext(keys=False, values=True), count))


def block_bytes(txn: Txn, dbs: Dbs, headers: list[BlockHeader],
                branch: int | None) -> list[tuple[BlockHeader, list[bytes]]]:
    """Stored bytes of a run of consecutive blocks, split per block, in one cursor walk.

    A block whose chunk comes back short is returned short: `check_events` rejects it.
    """
    if not headers:
        return []
    lo = headers[0].first_seq
    return split_by_block(headers, values_from(txn, dbs, lo, headers[-1].last_seq - lo + 1,
                                               branch))


def events_by_seq(txn: Txn, dbs: Dbs, lo: int, hi: int,
                  branch: int | None) -> list[Envelope]:
    return [decode(value, seq) for seq, value in raw_by_seq(txn, dbs, lo, hi, branch)]


def events_by(txn: Txn, dbs: Dbs, *, account: str | None, market: str | None,
              type_code: int | None, from_height: int | None, to_height: int | None,
              branch: int | None, limit: int | None) -> list[Envelope]:
    """Index-driven query; see ChainStore.events_by."""
    if limit is not None and limit <= 0:
        return []
    if account == "" or market == "":
        return []  # an empty id indexes nothing (and is no LMDB key)
    lo, hi = seq_range(txn, dbs, from_height, to_height, branch)
    if lo > hi:
        return []
    driver: tuple[str, str | int]
    if account is not None:
        driver = ("account", account)
    elif market is not None:
        driver = ("market", market)
    elif type_code is not None:
        driver = ("type", type_code)
    else:
        out = events_by_seq(txn, dbs, lo, hi if limit is None else min(hi, lo + limit - 1),
                            branch)
        return out
    ev_db = dbs.events if branch is None else dbs.arch_events
    pre = _prefix(branch)
    key = pre + index_key(driver[0], driver[1])
    result: list[Envelope] = []
    get = txn.get
    for seq in _indexed_seqs(txn.cursor(dbs.index(driver[0], branch)), key, lo, hi):
        raw = get(pre + u64(seq), db=ev_db)
        if raw is None:
            raise NotFound(f"index entry for seq {seq} points at no event")
        env = decode(raw, seq)
        if not matches(env, account, market, type_code):
            continue
        result.append(env)
        if limit is not None and len(result) >= limit:
            break
    return result


def _indexed_seqs(cur: Cursor, key: bytes, lo: int, hi: int) -> Iterator[int]:
    """The seqs in [lo, hi] an index lists under `key`, in order: O(result).

    A key's chunks are its dups in first-seq order and never overlap, so only
    the chunk before the first one starting at or after `lo` can also hold seqs
    >= lo. Height ranges map to block-aligned seq ranges, which never cut a
    chunk, but any `lo` is answered exactly.
    """
    start = u64(lo)
    found = cur.set_range_dup(key, start)  # the first chunk starting at or after lo
    if not found or cur.value()[:8] != start:
        # The chunk before it, if any (a failed step unpositions the cursor).
        before = cur.prev_dup() if found else cur.set_key(key) and cur.last_dup()
        if before and chunk_last(cur.value()) >= lo:
            pass  # start at the chunk before
        elif not found or not cur.set_range_dup(key, start):
            return
    for chunk in cur.iternext_dup():
        if len(chunk) == 8:  # a key's only event in its block: no offsets to unpack
            seq = int.from_bytes(chunk, "big")
            if seq > hi:
                return
            if seq >= lo:
                yield seq
            continue
        for seq in chunk_seqs(chunk):
            if seq > hi:
                return
            if seq >= lo:
                yield seq


def matches(env: Envelope, account: str | None, market: str | None,
            type_code: int | None) -> bool:
    """True if an event is of `type_code` and names `account` and `market` (None: any)."""
    cls = type(env.event)
    if type_code is not None and type_code != cls.TYPE_CODE:
        return False
    if account is not None and all(getattr(env.event, f) != account
                                   for f in cls.ACCOUNT_FIELDS):
        return False
    return market is None or any(getattr(env.event, f) == market for f in cls.MARKET_FIELDS)
