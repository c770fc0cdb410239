"""Walk the chain and check everything a byte-flip could break.

Checks, block by block: the header decodes, its own hash, the link to the
previous block (genesis: to the chain id), heights and seqs contiguous, the
events hash over the stored bytes, every event decodes and carries the
block's height. Then the indexes: every entry an event should own is present,
and no index holds an entry no event owns (the first such is reported at the
height of its seq). The first failure is returned with its height.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

from ledger.errors import CodecError
from ledger.events.codec import decode, index_positions
from ledger.store.blocks import decode_header, events_hash, genesis_prev_hash, header_hash
from ledger.store.layout import Db, Dbs, Txn, read_u64, u32, u64


class VerifyReport(NamedTuple):
    ok: bool
    height: int | None
    reason: str
    blocks: int
    events: int


def verify_chain(txn: Txn, dbs: Dbs, chain_id: str, *,
                 branch: int | None = None, expected_prev: bytes | None = None,
                 progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the canonical chain (or an archived branch) inside one read txn."""
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
    ev_cur = txn.cursor(events_db)
    cur = txn.cursor(blocks_db)
    positioned = cur.set_range(pre)
    while positioned and cur.key().startswith(pre):
        key, raw = cur.item()
        height = read_u64(key, n)
        try:
            hdr = decode_header(raw)
        except CodecError as exc:
            return VerifyReport(False, height, f"header does not decode: {exc}", n_blocks,
                                n_events)
        if hdr.height != height:
            return VerifyReport(False, height, f"header says height {hdr.height}", n_blocks,
                                n_events)
        if expected_height is not None and height != expected_height:
            return VerifyReport(False, expected_height, f"block missing (next is {height})",
                                n_blocks, n_events)
        if header_hash(*hdr[:7]) != hdr.hash:
            return VerifyReport(False, height, "header hash does not match its contents",
                                n_blocks, n_events)
        if hdr.prev_hash != prev_hash:
            return VerifyReport(False, height, "prev hash does not link to the block before",
                                n_blocks, n_events)
        if expected_seq is not None and hdr.first_seq != expected_seq:
            return VerifyReport(False, height, f"first seq {hdr.first_seq}, expected "
                                f"{expected_seq}", n_blocks, n_events)
        encoded: list[bytes] = []
        seq = hdr.first_seq
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
            bad = _check_index_entries(txn, ix_dbs, pre, env.event, u64(seq), owned)
            if bad:
                return VerifyReport(False, height, f"event seq {seq}: {bad}", n_blocks,
                                    n_events)
            encoded.append(bytes(data))
            seq += 1
            found = ev_cur.next()
        if len(encoded) != hdr.count:
            return VerifyReport(False, height, f"block holds {len(encoded)} of its {hdr.count} "
                                "events", n_blocks, n_events)
        if events_hash(encoded) != hdr.events_hash:
            return VerifyReport(False, height, "events hash does not match the stored events",
                                n_blocks, n_events)
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
        head = txn.get(b"head", db=dbs.meta)
        if head is None:
            return VerifyReport(False, None, "the head record is missing", n_blocks,
                                n_events)
        h = msgpack.unpackb(head, raw=False)
        if h[0] != (heights[-1] if heights else -1) or (heights and h[2] != prev_hash):
            return VerifyReport(False, h[0], "head record does not match the last block",
                                n_blocks, n_events)
    # No event may lie outside the blocks (e.g. past the head's seq).
    n_stored = _count_prefixed(txn, events_db, pre) if pre else txn.stat(events_db)["entries"]
    if n_stored != n_events:
        return VerifyReport(False, heights[-1] if heights else None,
                            f"the store holds {n_stored} events, its blocks {n_events}",
                            n_blocks, n_events)
    # Any entry beyond those the events own is stray: find the first one's height.
    for name, db in ix_dbs.items():
        total = _count_prefixed(txn, db, pre) if pre else txn.stat(db)["entries"]
        if total != owned[name]:
            stray = _first_stray(txn, db, pre, events_db, name)
            where = None
            if stray is not None and first_seqs:
                i = bisect.bisect_right(first_seqs, stray) - 1
                where = heights[max(i, 0)]
            return VerifyReport(False, where, f"{name} index holds {total} entries, events own "
                                f"{owned[name]} (stray entry for seq {stray})", n_blocks,
                                n_events)
    return VerifyReport(True, None, "ok", n_blocks, n_events)


def _check_index_entries(txn: Txn, ix_dbs: dict[str, Db], pre: bytes,
                         ev: Any, seq_b: bytes, owned: dict[str, int]) -> str | None:
    code = type(ev).TYPE_CODE
    accts, mkts = index_positions(code)
    item = ev.__getitem__
    wanted = [("account", pre + item(i).encode()) for i in accts if item(i)]
    wanted += [("market", pre + item(i).encode()) for i in mkts if item(i)]
    wanted.append(("type", pre + bytes((code,))))
    seen: set[tuple[str, bytes]] = set()
    for name, key in wanted:
        if (name, key) in seen:
            continue
        seen.add((name, key))
        cur = txn.cursor(ix_dbs[name])
        if not cur.set_key_dup(key, seq_b):
            return f"missing from the {name} index under {key[len(pre):]!r}"
        owned[name] += 1
    return None


def _count_prefixed(txn: Txn, db: Db, pre: bytes) -> int:
    cur = txn.cursor(db)
    count = 0
    if cur.set_range(pre):
        for key in cur.iternext(keys=True, values=False):
            if not key.startswith(pre):
                break
            count += 1
    return count


def _first_stray(txn: Txn, db: Db, pre: bytes, events_db: Db,
                 name: str) -> int | None:
    """The smallest seq an index entry names whose event does not own it."""
    cur = txn.cursor(db)
    best: int | None = None
    if not cur.set_range(pre):
        return None
    for key, seq_b in cur:
        if not key.startswith(pre):
            break
        seq = read_u64(seq_b)
        raw = txn.get(pre + seq_b, db=events_db)
        ok = False
        if raw is not None:
            ev = decode(raw, seq).event
            code = type(ev).TYPE_CODE
            accts, mkts = index_positions(code)
            # Judge the entry against the keys of ITS index only.
            fields = {"account": accts, "market": mkts, "type": ()}[name]
            keys = {ev[i].encode() for i in fields if ev[i]}
            if name == "type":
                keys.add(bytes((code,)))
            ok = key[len(pre):] in keys
        if not ok and (best is None or seq < best):
            best = seq
    return best
