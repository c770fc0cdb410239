"""Verify a PostgreSQL replica: its hash chain, events hashes, headers, filter columns, index rows.

The same judgement as LMDB's `verify` (`header_fault`, `events_hash`,
`index_items`), walked over three server-side cursors in lockstep (blocks by
height, events by seq, index chunks by first seq) inside one REPEATABLE READ
transaction, so a replicator committing meanwhile changes nothing seen. Also
checked, because a replica has them: the header columns against the stored
header bytes, and each event's filter columns (height, type, accounts,
markets) against its bytes. The first failure is reported with its height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from ledger.errors import CodecError
from ledger.events.codec import decode
from ledger.store.blocks import decode_header, events_hash, genesis_prev_hash
from ledger.store.layout import event_index_keys
from ledger.store.pg.chain import PgChain
from ledger.store.pg.schema import SCHEMA
from ledger.store.pg.writer import IndexKeys, index_rows
from ledger.store.verify import VerifyReport, head_matches, header_fault

_ITERSIZE = 2000


def verify_replica(chain: PgChain, *, branch: int | None = None,
                   progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the replica's canonical chain, or one archived branch; the first bad height."""
    # The named (server-side) cursors are closed on the way out: the snapshot may be an
    # outer one (`pinned` is re-entrant) that verifies the chain and then a branch.
    with chain.pinned(), ExitStack() as cursors:
        return _walk(chain, branch, progress, cursors)


def _cursor(chain: PgChain, name: str, sql: str, params: tuple[Any, ...],
            cursors: ExitStack) -> Iterator[Any]:
    cur = cursors.enter_context(chain.conn.cursor(name=name))
    cur.itersize = _ITERSIZE
    cur.execute(sql, params)
    return iter(cur)


def _walk(chain: PgChain, branch: int | None, progress: Callable[[int], None] | None,
          cursors: ExitStack) -> VerifyReport:
    b = branch or 0
    if branch is None:
        prev_hash = genesis_prev_hash(chain.chain_id)
        expected_height: int | None = 0
        expected_seq: int | None = 1
    else:
        prev_hash = bytes(chain.branch(branch)["base_hash"])
        expected_height = expected_seq = None
    blocks = _cursor(chain, "verify_blocks", f"SELECT height, time, first_seq, count, "
                     f"prev_hash, events_hash, state_hash, hash, header FROM {SCHEMA}.blocks "
                     "WHERE branch = %s ORDER BY height", (b,), cursors)
    events = _cursor(chain, "verify_events", f"SELECT seq, height, type_code, accounts, "
                     f"markets, data FROM {SCHEMA}.events WHERE branch = %s ORDER BY seq", (b,),
                     cursors)
    index = _cursor(chain, "verify_index", f"SELECT idx, key, first_seq, chunk FROM "
                    f"{SCHEMA}.index_chunks WHERE branch = %s ORDER BY first_seq, idx, key",
                    (b,), cursors)
    ev = next(events, None)
    ix = next(index, None)
    n_blocks = n_events = 0
    last: int | None = None

    def fail(height: int | None, reason: str) -> VerifyReport:
        return VerifyReport(False, height, reason, n_blocks, n_events)

    for row in blocks:
        height = int(row[0])
        try:
            hdr = decode_header(bytes(row[8]))
        except CodecError as exc:
            return fail(height, f"header does not decode: {exc}")
        if (hdr.height, hdr.time, hdr.first_seq, hdr.count, hdr.prev_hash, hdr.events_hash,
                hdr.state_hash, hdr.hash) != (height, row[1], row[2], row[3], bytes(row[4]),
                                              bytes(row[5]), bytes(row[6]), bytes(row[7])):
            return fail(height, "the header columns do not match the stored header")
        fault = header_fault(hdr, height, prev_hash, expected_height, expected_seq)
        if fault is not None:
            return fail(*fault)
        datas: list[bytes] = []
        keys: list[IndexKeys] = []
        seq = hdr.first_seq
        if ev is not None and int(ev[0]) < seq:  # an event below the block: a stray
            return fail(height, f"event seq {ev[0]} lies outside every block")
        while ev is not None and len(datas) < hdr.count and int(ev[0]) == seq:
            data = bytes(ev[5])
            try:
                env = decode(data, seq)
            except CodecError as exc:
                return fail(height, f"event seq {seq} does not decode: {exc}")
            if env.height != height or int(ev[1]) != height:
                return fail(height, f"event seq {seq} carries height {env.height} (column "
                            f"{ev[1]})")
            code, accts, mkts = event_index_keys(data)
            if (int(ev[2]), list(ev[3]), list(ev[4])) != (code, list(accts), list(mkts)):
                return fail(height, f"event seq {seq}: its filter columns (type, accounts, "
                            "markets) do not match its bytes")
            datas.append(data)
            keys.append((code, accts, mkts))
            seq += 1
            ev = next(events, None)
        if len(datas) != hdr.count:
            return fail(height, f"block holds {len(datas)} of its {hdr.count} events")
        if events_hash(datas) != hdr.events_hash:
            return fail(height, "events hash does not match the stored events")
        stored = set()
        while ix is not None and int(ix[2]) <= hdr.last_seq:
            stored.add((int(ix[0]), bytes(ix[1]), int(ix[2]), bytes(ix[3])))
            ix = next(index, None)
        made = set(index_rows(hdr.first_seq, keys))
        if stored != made:
            missing = sorted(made - stored)
            what = (f"lacks the chunk of key {missing[0][1]!r} from seq {missing[0][2]} "
                    "(missing or altered)" if missing else
                    f"holds a stray chunk from seq {min(s[2] for s in stored - made)}")
            return fail(height, f"the index rows of the block {what}")
        prev_hash = hdr.hash
        expected_height = height + 1
        expected_seq = hdr.first_seq + hdr.count
        n_blocks += 1
        n_events += hdr.count
        last = height
        if progress is not None:
            progress(height)
    if ev is not None:
        return fail(last, f"event seq {ev[0]} lies beyond the last block")
    if ix is not None:
        return fail(last, f"an index chunk from seq {ix[2]} lies beyond the last block")
    if branch is None and not head_matches(chain.head, last, prev_hash):
        return fail(chain.head.height, "the tracking row does not match the last block")
    return VerifyReport(True, None, "ok", n_blocks, n_events)
