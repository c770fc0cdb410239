"""Truncate-with-archive, as a step inside one write transaction.

`truncate` moves the suffix above a height into a new archived branch: every
block header, event and index posting chunk is re-keyed under the branch id,
so the branch answers the same reads as the canonical chain. Cost is O(suffix):
cursors start at the first orphaned key; nothing below it is read.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import NotFound
from ledger.store.blocks import decode_header
from ledger.store.layout import (
    Dbs,
    Head,
    Txn,
    event_index_keys,
    meta_get,
    pack_record,
    read_head,
    read_u64,
    u32,
    u64,
    unpack_record,
    write_head,
)
from ledger.store.signatures import archive_signatures


def truncate(txn: Txn, dbs: Dbs, height: int, *, reason: str, operator: str,
             ) -> tuple[int, Head, dict[str, Any]]:
    """Archive everything above `height`; return (branch id, new head, journal facts).

    The caller journals the truncation in the same transaction (chain.truncate_to),
    after any block it appends on the new head.
    """
    head_height, head_seq, head_hash, head_time = read_head(txn, dbs)
    if height < 0 or height >= head_height:
        raise NotFound(f"cannot truncate to height {height}: the head is {head_height}, "
                       "so there is nothing above it to archive")
    base_raw = txn.get(u64(height), db=dbs.blocks)
    if base_raw is None:
        raise NotFound(f"no block at height {height}")
    base = decode_header(base_raw)
    first_seq = base.first_seq + base.count
    branch = unpack_record(meta_get(txn, dbs, b"next_branch"))
    bpre = u32(branch)

    # Block headers above the base.
    moved_blocks = []
    cur = txn.cursor(dbs.blocks)
    if cur.set_range(u64(height + 1)):
        for key, value in cur:
            moved_blocks.append((bpre + key, value))
    txn.cursor(dbs.arch_blocks).putmulti(moved_blocks, append=True)
    cur = txn.cursor(dbs.blocks)
    if cur.set_range(u64(height + 1)):
        while cur.delete():
            pass

    if dbs.block_sigs is not None and dbs.arch_block_sigs is not None:
        archive_signatures(txn, dbs, height, branch)

    # Events, and from their bytes the distinct index keys the suffix touched.
    moved: list[tuple[bytes, bytes]] = []
    acct_keys: dict[str, None] = {}
    mkt_keys: dict[str, None] = {}
    counts: dict[int, int] = {}
    cur = txn.cursor(dbs.events)
    if cur.set_range(u64(first_seq)):
        for key, value in cur:
            moved.append((bpre + key, value))
            code, accts, mkts = event_index_keys(value)
            counts[code] = counts.get(code, 0) + 1
            for a in accts:
                acct_keys[a] = None
            for m in mkts:
                mkt_keys[m] = None
    txn.cursor(dbs.arch_events).putmulti(moved, append=True)
    cur = txn.cursor(dbs.events)
    if cur.set_range(u64(first_seq)):
        while cur.delete():
            pass
    # Index posting chunks (layout.py) never span two blocks, so none straddles
    # the cut: a chunk is orphaned iff its first seq is >= first_seq, and the
    # orphaned chunks under a key are the tail of its dups (ordered by first
    # seq). One cursor walk per distinct key the suffix touched moves them
    # unchanged, re-keyed under the branch: O(suffix), not O(index).
    start = u64(first_seq)
    for live, arch, keys in (
            (dbs.by_account, dbs.arch_by_account, [k.encode() for k in acct_keys if k]),
            (dbs.by_market, dbs.arch_by_market, [k.encode() for k in mkt_keys if k]),
            (dbs.by_type, dbs.arch_by_type, [bytes((k,)) for k in sorted(counts)])):
        keys.sort()
        out: list[tuple[bytes, bytes]] = []
        cur = txn.cursor(live)
        for k in keys:
            if not cur.set_range_dup(k, start):
                continue
            pk = bpre + k
            tail = [(pk, v) for v in cur.iternext_dup()]
            out.extend(tail)
            cur.set_range_dup(k, start)
            for _ in range(len(tail)):
                cur.delete()
        txn.cursor(arch).putmulti(out, dupdata=True)

    # Snapshots above the base are no longer of this chain.
    dropped = []
    for db in (dbs.snap_meta, dbs.snap_data):
        cur = txn.cursor(db)
        if cur.set_range(u64(height + 1)):
            while cur.key():
                if db is dbs.snap_meta:
                    dropped.append(read_u64(cur.key()))
                if not cur.delete():
                    break

    record = {
        "branch": branch,
        "base_height": height,
        "base_hash": base.hash,
        "first_height": height + 1,
        "last_height": head_height,
        "first_seq": first_seq,
        "last_seq": head_seq,
        "events": len(moved),
        "blocks": len(moved_blocks),
        "events_by_type": {str(k): v for k, v in sorted(counts.items())},
        "head_hash": head_hash,
        "head_time": head_time,
        "reason": reason,
        "operator": operator,
        "snapshots_dropped": dropped,
    }
    txn.put(bpre, pack_record(record), db=dbs.branches)
    txn.put(b"next_branch", pack_record(branch + 1), db=dbs.meta)
    new_head = Head(height, first_seq - 1, base.hash, base.time)
    write_head(txn, dbs, new_head)
    facts = {"branch": branch, "to_height": height, "from_head_height": head_height,
             "from_head_hash": head_hash.hex(), "new_head_hash": base.hash.hex(),
             "events_archived": len(moved)}
    return branch, new_head, facts
