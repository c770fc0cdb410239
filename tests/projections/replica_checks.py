"""Checks shared by the replica tests: a replica equals its chain; what a reader may see."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from ledger.errors import LedgerError
from ledger.events import outcomes as o
from ledger.store.chain import ChainStore, verify_store
from ledger.store.pg.chain import PgChain
from ledger.store.pg.verify import verify_replica
from projections.audit import Auditor


def assert_replica_equals_chain(chain: Path, dsn: str) -> None:
    """Every block with its writer's signature, every event, branch, snapshot and journal
    record, verify on both, and the audit answers of a few accounts: the replica is the
    chain."""
    with ChainStore.open(chain) as ref, PgChain.open(dsn) as pg:
        assert pg.head == ref.head
        assert verify_store(ref).ok and verify_replica(pg).ok, verify_replica(pg)
        assert [b["branch"] for b in pg.branches()] == [b["branch"] for b in ref.branches()]
        assert pg.branches() == ref.branches()
        for rec in ref.branches():
            b = int(rec["branch"])
            assert verify_store(ref, branch=b).ok
            assert verify_replica(pg, branch=b).ok, verify_replica(pg, branch=b)
            assert list(pg.iter_block_bytes(branch=b)) == list(ref.iter_block_bytes(branch=b))
            lo, hi = int(rec["first_height"]), int(rec["last_height"])
            assert pg.block_signatures(lo, hi, branch=b) == ref.block_signatures(lo, hi, branch=b)
        assert list(pg.iter_block_bytes()) == list(ref.iter_block_bytes())
        top = ref.head.height
        assert pg.block_signatures(0, top) == ref.block_signatures(0, top)
        assert pg.snapshots() == ref.snapshots() and pg.journal() == ref.journal()
        deposits = ref.events_by(type_code=o.Deposited.TYPE_CODE, limit=8)  # type: ignore[attr-defined]
        accounts = sorted({e.event.acct for e in deposits} | {"LIQ_VAULT", "FEES"})
        branches = [None] + [int(r["branch"]) for r in ref.branches()]
    with Auditor.open(chain) as want, Auditor.open(dsn) as got:
        for branch in branches:
            queries: list[tuple[Any, Callable[[Auditor], Any]]] = [
                ("liquidations", lambda au, b=branch: au.liquidations(branch=b))]
            queries += [(acct, lambda au, a=acct, b=branch: au.statement(a, branch=b))
                        for acct in accounts]
            for what, query in queries:
                assert _answer(query, want, branch) == _answer(query, got, branch), \
                    (what, branch)


def _answer(query: Callable[[Auditor], Any], au: Auditor, branch: int | None) -> Any:
    """A query's answer; on an archived branch, the ledger's own refusal (a branch whose
    base has left the chain) must be the same from both stores. Anything else raises."""
    if branch is None:
        return query(au)
    try:
        return query(au)
    except LedgerError as exc:
        return repr(exc)


def reader_view(dsn: str) -> dict[str, Any]:
    """What one reader's snapshot shows, checked whole: the canonical blocks are heights
    0..t linked by hash, the tracking row names block t, and the events are exactly
    the blocks' seqs (no half-written block, no mix of two branches)."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if conn.execute("SELECT to_regclass('perpledger.tracking')").fetchone() == (None,):
            return {"height": -1}  # the replicator has not created its schema yet
        t = conn.execute("SELECT height, seq, hash FROM perpledger.tracking").fetchone()
        if t is None:
            return {"height": -1}
        blocks = conn.execute("SELECT height, first_seq, count, prev_hash, hash FROM "
                              "perpledger.blocks WHERE branch = 0 ORDER BY height").fetchall()
        n, lo, hi = conn.execute("SELECT count(*), min(seq), max(seq) FROM perpledger.events "
                                 "WHERE branch = 0").fetchone()
        lines_above = conn.execute("SELECT count(*) FROM perpledger.stmt_lines WHERE ns = 0 "
                                   "AND height > %s", (t[0],)).fetchone()[0]
    height, seq, head_hash = int(t[0]), int(t[1]), bytes(t[2])
    assert [int(b[0]) for b in blocks] == list(range(height + 1)), "canonical heights"
    for a, b in zip(blocks, blocks[1:], strict=False):
        assert bytes(b[3]) == bytes(a[4]), f"block {b[0]} does not link"
    if blocks:
        assert bytes(blocks[-1][4]) == head_hash and int(blocks[-1][1]) + \
            int(blocks[-1][2]) - 1 == seq
        assert (n, lo, hi) == (seq, 1, seq), "events are exactly the blocks' seqs"
    assert lines_above == 0, "read-model rows above the tracked head"
    return {"height": height, "seq": seq}
