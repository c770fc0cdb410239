"""Grouped transactions: runs of whole blocks when behind keep every guarantee of one block each.

The server itself says which rows one transaction wrote: the `xmin` of a
row is the id of the transaction that wrote it. So these tests read the
runs of canonical blocks committed together from `xmin`, and check them
against the grouping rule (`replica_grouping`): whole consecutive blocks up
to the bounds, never across a rollback, one block per transaction once the
follower is caught up. A reader polling meanwhile only ever sees the
tracking row at the end of a committed run, with exactly its blocks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.store.chain import ChainStore
from projections.replica_grouping import group_sizes
from projections.replicator import Replicator, replicate
from tests.projections.chains import ChainWriter
from tests.projections.replica_checks import assert_replica_equals_chain, reader_view

pytestmark = pytest.mark.needs_postgres


def committed_runs(dsn: str, branch: int = 0) -> list[tuple[int, list[int]]]:
    """(transaction id, heights) of each run of blocks one transaction wrote, in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("SELECT height, xmin::text::bigint FROM perpledger.blocks WHERE "
                            "branch = %s ORDER BY height", (branch,)).fetchall()
    runs: list[tuple[int, list[int]]] = []
    for height, xid in rows:
        if runs and runs[-1][0] == xid:
            runs[-1][1].append(int(height))
        else:
            runs.append((int(xid), [int(height)]))
    return runs


def watching(dsn: str, fn: Callable[[], Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Run `fn` while a reader polls the replica (each view checked whole)."""
    views: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            views.append(reader_view(dsn))

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        result = fn()
    finally:
        done.set()
        reader.join()
    return result, views


def test_a_backlog_is_written_in_runs_of_whole_blocks_and_tracking_names_the_last(
        chain: Path, pg_dsn: str) -> None:
    with ChainStore.open(chain) as store:
        counts = [h.count for h in store.blocks()]
        sizes = group_sizes(counts, 400, 256)
        report, views = watching(pg_dsn, lambda: replicate(store, pg_dsn, group_events=400))
    assert 1 < len(sizes) < len(counts) // 3, "the rule groups several blocks a transaction"
    assert report.transactions == len(sizes) and report.blocks == len(counts)
    runs = committed_runs(pg_dsn)
    assert [len(heights) for _, heights in runs] == sizes  # the server's own record
    ends = {-1} | {end - 1 for end in accumulate(sizes)}
    seen = {v["height"] for v in views}
    assert seen <= ends, f"a reader saw tracking inside a run: {sorted(seen - ends)}"
    assert len(views) > 0
    assert_replica_equals_chain(chain, pg_dsn)


def test_a_rollback_in_the_middle_of_a_backlog_is_never_grouped_across(
        chain: Path, pg_dsn: str) -> None:
    """The replica is at 20 when the chain is rolled back to 40 and goes on: with bounds
    that would take everything at once, one transaction carries 21..40 along the old
    chain, the mirror of branch 1 its own, then one the new chain's blocks."""
    with ChainStore.open(chain) as store, Replicator(store, pg_dsn, group_blocks=1) as rep:
        rep.run(stop=lambda: rep.tracking.height >= 20)
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        assert w.rollback(40) == 1
        w.append(6)
    with ChainStore.open(chain) as store:
        head = store.head.height
        report, views = watching(pg_dsn, lambda: replicate(
            store, pg_dsn, group_events=10**9, group_blocks=10**6))
    assert report.branches_mirrored == [1]
    assert report.transactions == 2
    runs = committed_runs(pg_dsn)
    assert [heights for _, heights in runs[-2:]] == [list(range(21, 41)),
                                                      list(range(41, head + 1))]
    (mirror_xid, archived), = committed_runs(pg_dsn, branch=1)
    assert archived == list(range(41, 62))  # the old 41..61, copied by the mirror
    assert runs[-2][0] < mirror_xid < runs[-1][0], "old run, then the mirror, then the new"
    assert {v["height"] for v in views} <= {20, 40, head}
    assert_replica_equals_chain(chain, pg_dsn)


def test_a_caught_up_follower_writes_one_block_per_transaction(chain: Path,
                                                               pg_dsn: str) -> None:
    stop = threading.Event()
    reports: list[Any] = []
    # One process, one environment: the follower reads through the writer's store.
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        store = w.store
        backlog = store.head.height + 1

        def follow() -> None:
            reports.append(replicate(store, pg_dsn, follow=True, poll=0.01, stop=stop.is_set))

        follower = threading.Thread(target=follow)
        follower.start()
        try:
            for _ in range(3):
                _caught_up(pg_dsn, store.head.height)
                w.append(1)
            head = store.head.height
            _caught_up(pg_dsn, head)
        finally:
            stop.set()
            follower.join()
    runs = committed_runs(pg_dsn)
    assert [heights for _, heights in runs[-3:]] == [[h] for h in range(head - 2, head + 1)]
    assert len(runs) - 3 < backlog, "the backlog before them was grouped"
    assert reports[0].blocks == head + 1
    assert_replica_equals_chain(chain, pg_dsn)


def _caught_up(dsn: str, height: int) -> None:
    """Wait (at most 10 s) for the replica's head to reach `height`."""
    for _ in range(500):
        if reader_view(dsn)["height"] == height:
            break
        time.sleep(0.02)
    assert reader_view(dsn)["height"] == height
