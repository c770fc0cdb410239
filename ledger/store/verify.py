"""Walk the chain and check everything a byte-flip could break.

Checks, block by block: the header decodes, its own hash, the link to the
previous block (genesis: to the chain id), heights and seqs contiguous, the
events hash over the stored bytes, every event decodes and carries the
block's height, and the block's index posting chunks: rebuilt from its events
with the writer's own layout (`layout.index_items`), each must be stored
exactly (a missing or altered chunk is reported at its block). Then no index
may hold a chunk beyond those (the first such is reported at the height of its
first seq). The first failure is returned with its height.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from itertools import pairwise
from typing import Any, NamedTuple

from ledger.errors import CodecError, IntegrityError
from ledger.events.codec import decode, index_keys
from ledger.store.blocks import (
    BlockHeader,
    decode_header,
    events_hash,
    genesis_prev_hash,
    header_hash,
)
from ledger.store.failures import DAMAGE
from ledger.store.layout import (
    Db,
    Dbs,
    Head,
    Txn,
    chunk_seqs,
    index_items,
    posting_chunks,
    read_head,
    read_u64,
    u32,
    u64,
)


class VerifyReport(NamedTuple):
    ok: bool
    height: int | None
    reason: str
    blocks: int
    events: int


def verify_chain(txn: Txn, dbs: Dbs, chain_id: str, *,
                 branch: int | None = None, expected_prev: bytes | None = None,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the canonical chain (or an archived branch) inside one read txn.

    LMDB reporting damage (a corrupted page, a page that does not exist) is a
    failed verification at the height and sub-database being read, not a crash.
    """
    where: list[Any] = [None, "blocks"]
    try:
        return _verify_chain(txn, dbs, chain_id, branch, expected_prev, progress, where)
    except DAMAGE as exc:
        return VerifyReport(False, where[0], f"LMDB reports {type(exc).__name__} reading "
                            f"sub-database {where[1]!r}: {exc}", 0, 0)


def _verify_chain(txn: Txn, dbs: Dbs, chain_id: str, branch: int | None,
                  expected_prev: bytes | None, progress: Callable[[int], None] | None,
                  where: list[Any]) -> VerifyReport:
    pre = b"" if branch is None else u32(branch)
    n = len(pre)
    blocks_db = dbs.blocks if branch is None else dbs.arch_blocks
    events_db = dbs.events if branch is None else dbs.arch_events
    prev_hash = expected_prev if expected_prev is not None else genesis_prev_hash(chain_id)
    expected_height: int | None = None if branch is not None else 0
    expected_seq: int | None = None if branch is not None else 1
    first_seqs: list[int] = []
    heights: list[int] = []
    owned = {"account": 0, "market": 0, "type": 0}
    n_blocks = n_events = 0
    ix_dbs = {name: dbs.index(name, branch) for name in owned}
    ix_curs = {name: txn.cursor(db) for name, db in ix_dbs.items()}
    ev_cur = txn.cursor(events_db)
    cur = txn.cursor(blocks_db)
    positioned = cur.set_range(pre)
    while positioned and cur.key().startswith(pre):
        key, raw = cur.item()
        height = read_u64(key, n)
        where[:] = [height, "blocks" if branch is None else "arch_blocks"]
        try:
            hdr = decode_header(raw)
        except CodecError as exc:
            return VerifyReport(False, height, f"header does not decode: {exc}", n_blocks,
                                n_events)
        fault = header_fault(hdr, height, prev_hash, expected_height, expected_seq)
        if fault is not None:
            return VerifyReport(False, fault[0], fault[1], n_blocks, n_events)
        encoded: list[bytes] = []
        # Index name -> key -> this block's seqs under it, as `prepare_block` groups them.
        groups: dict[str, dict[bytes, list[int]]] = {name: {} for name in owned}
        seq = hdr.first_seq
        where[1] = "events" if branch is None else "arch_events"
        found = ev_cur.set_key(pre + u64(seq))
        while found and len(encoded) < hdr.count:
            ekey, data = ev_cur.item()
            if not ekey.startswith(pre) or read_u64(ekey, n) != seq:
                break
            try:
                env = decode(data, seq)
            except CodecError as exc:
                return VerifyReport(False, height, f"event seq {seq} does not decode: {exc}",
                                    n_blocks, n_events)
            if env.height != height:
                return VerifyReport(False, height, f"event seq {seq} carries height "
                                    f"{env.height}", n_blocks, n_events)
            _group_index_keys(groups, env.event, seq)
            encoded.append(bytes(data))
            seq += 1
            found = ev_cur.next()
        if len(encoded) != hdr.count:
            return VerifyReport(False, height, f"block holds {len(encoded)} of its {hdr.count} "
                                "events", n_blocks, n_events)
        if events_hash(encoded) != hdr.events_hash:
            return VerifyReport(False, height, "events hash does not match the stored events",
                                n_blocks, n_events)
        for name, by_key in groups.items():
            where[1] = f"by_{name}" if branch is None else f"arch_by_{name}"
            items = index_items(by_key)
            ix_cur = ix_curs[name]
            for key, chunk in items:
                # set_key_dup matches a dup's bytes exactly: an altered chunk is missing.
                if not ix_cur.set_key_dup(pre + key, chunk):
                    seqs = chunk_seqs(chunk)
                    return VerifyReport(False, height, f"the {name} index under {key!r} lacks "
                                        f"the chunk of seqs {seqs[0]}..{seqs[-1]} (missing or "
                                        "altered)", n_blocks, n_events)
            owned[name] += len(items)
        first_seqs.append(hdr.first_seq)
        heights.append(height)
        prev_hash = hdr.hash
        expected_height = height + 1
        expected_seq = hdr.first_seq + hdr.count
        n_blocks += 1
        n_events += hdr.count
        if progress is not None:
            progress(height)
        positioned = cur.next()
    if branch is None:
        try:
            head = read_head(txn, dbs)
        except IntegrityError as exc:
            return VerifyReport(False, None, str(exc), n_blocks, n_events)
        if not head_matches(head, heights[-1] if heights else None, prev_hash):
            return VerifyReport(False, head.height, "head record does not match the last block",
                                n_blocks, n_events)
    # No event may lie outside the blocks (e.g. past the head's seq).
    n_stored = _count_prefixed(txn, events_db, pre) if pre else txn.stat(events_db)["entries"]
    if n_stored != n_events:
        return VerifyReport(False, heights[-1] if heights else None,
                            f"the store holds {n_stored} events, its blocks {n_events}",
                            n_blocks, n_events)
    # Any chunk beyond those the events own is stray: find the first one's height.
    for name, db in ix_dbs.items():
        total = _count_prefixed(txn, db, pre) if pre else txn.stat(db)["entries"]
        if total != owned[name]:
            stray = _first_stray(txn, db, pre, events_db, name, first_seqs, expected_seq)
            at = None
            if stray is not None and first_seqs:
                i = bisect.bisect_right(first_seqs, stray) - 1
                at = heights[max(i, 0)]
            return VerifyReport(False, at, f"{name} index holds {total} chunks, events own "
                                f"{owned[name]} (stray chunk from seq {stray})", n_blocks,
                                n_events)
    return VerifyReport(True, None, "ok", n_blocks, n_events)


def header_fault(hdr: BlockHeader, height: int, prev_hash: bytes, expected_height: int | None,
                 expected_seq: int | None) -> tuple[int, str] | None:
    """The first thing wrong with a decoded header stored at `height`, as (height, reason).

    Checks its stated height, that no block is missing before it, its own
    hash, its link to the block before and that its seqs continue the chain's.
    Shared by every store's verify, so each judges a header the same way.
    """
    if hdr.height != height:
        return height, f"header says height {hdr.height}"
    if expected_height is not None and height != expected_height:
        return expected_height, f"block missing (next is {height})"
    if header_hash(*hdr[:7]) != hdr.hash:
        return height, "header hash does not match its contents"
    if hdr.prev_hash != prev_hash:
        return height, "prev hash does not link to the block before"
    if expected_seq is not None and hdr.first_seq != expected_seq:
        return height, f"first seq {hdr.first_seq}, expected {expected_seq}"
    return None


def head_matches(head: Head, last_height: int | None, last_hash: bytes) -> bool:
    """True if a head record names the last block walked (height -1 for an empty chain)."""
    if last_height is None:
        return head.height == -1
    return head.height == last_height and head.hash == last_hash


def _index_keys(ev: Any) -> tuple[list[bytes], list[bytes], bytes]:
    """The keys an event is indexed under: (accounts, markets, type code)."""
    accts, mkts = index_keys(ev)
    # An empty id indexes nothing (as in prepare_block).
    return ([a.encode() for a in accts if a], [m.encode() for m in mkts if m],
            bytes((type(ev).TYPE_CODE,)))


def _group_index_keys(groups: dict[str, dict[bytes, list[int]]], ev: Any, seq: int) -> None:
    """Add `seq` under each key its event is indexed under (seqs arrive increasing)."""
    accts, mkts, code = _index_keys(ev)
    for name, keys in (("account", accts), ("market", mkts), ("type", (code,))):
        by_key = groups[name]
        for key in keys:
            by_key.setdefault(key, []).append(seq)


def _count_prefixed(txn: Txn, db: Db, pre: bytes) -> int:
    cur = txn.cursor(db)
    count = 0
    if cur.set_range(pre):
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(pre):
                break
            count += 1
    return count


def _first_stray(txn: Txn, db: Db, pre: bytes, events_db: Db, name: str,
                 first_seqs: list[int], end_seq: int | None) -> int | None:
    """The smallest first seq of a stored chunk the events do not own.

    Called once every owned chunk was found in place. A chunk is owned if it is
    well formed, lies in one block (`end_seq`: one past the last seq), every
    seq it lists has an event indexed under its key in THIS index, and it is
    one of the chunks `posting_chunks` makes of all such seqs of its key and
    block. A key's dups come in first-seq order, so one block's chunks of a key
    are consecutive: they are judged together.
    """
    cur = txn.cursor(db)
    best: int | None = None
    group: tuple[bytes, int] | None = None
    members: list[tuple[bytes, list[int]]] = []

    def close_group() -> None:
        nonlocal best
        if not members:
            return
        seqs = sorted({s for _, listed in members for s in listed})
        made = set(posting_chunks(seqs))
        for chunk, listed in members:
            if chunk not in made and (best is None or listed[0] < best):
                best = listed[0]
        members.clear()

    if not cur.set_range(pre):
        return None
    for key, chunk in cur:
        if not key.startswith(pre):
            break
        first = int.from_bytes(chunk[:8], "big")
        block = bisect.bisect_right(first_seqs, first) - 1
        if (key, block) != group:
            close_group()
            group = (key, block)
        try:
            listed = chunk_seqs(chunk)
        except IntegrityError:
            listed = []
        if _owned(txn, pre, events_db, name, key[len(pre):], listed, first_seqs, block,
                  end_seq):
            members.append((chunk, listed))
        elif best is None or first < best:
            best = first
    close_group()
    return best


def _owned(txn: Txn, pre: bytes, events_db: Db, name: str, key: bytes, listed: list[int],
           first_seqs: list[int], block: int, end_seq: int | None) -> bool:
    """True if `listed` (a chunk's seqs) is strictly increasing within one block and
    every event it names is indexed under `key` in the `name` index."""
    if not listed or block < 0 or end_seq is None:
        return False
    block_end = first_seqs[block + 1] if block + 1 < len(first_seqs) else end_seq
    if listed[-1] >= block_end or any(a >= b for a, b in pairwise(listed)):
        return False
    for seq in listed:
        raw = txn.get(pre + u64(seq), db=events_db)
        if raw is None:
            return False
        try:
            accts, mkts, code = _index_keys(decode(raw, seq).event)
        except CodecError:
            return False
        # Judge the chunk against the keys of ITS index only.
        if key not in {"account": accts, "market": mkts, "type": {code}}[name]:
            return False
    return True
