"""`ledgerctl bench replicate`: the replicator against raw binary COPY into the same server.

All figures come from one run on one private PostgreSQL server (the system's
binaries, default durability settings: fsync on) unless `--dsn` names an
empty database to use instead:

- `raw_copy_block_events_per_s`: the ceiling. The chain's stored event bytes,
  preloaded in memory, written by binary COPY as (seq, bytes) rows, one
  transaction per block (the replicator's granularity); and
  `raw_copy_1000_events_per_s`, in 1,000-event transactions.
- `replicator_events_per_s`: `replicate --once` of the same chain into a fresh
  database (blocks read from LMDB, events with filter columns, index chunks,
  audit read-model rows, tracking; one transaction per block), and its
  `ratio_to_raw` (goal >= 0.7); `catch_up_s` is the time for the whole chain.
- `lag_ms`: while `ledgerctl simulate` appends to a fresh ledger and a
  follower replicates it into the primary, which a `pg_basebackup -R` standby
  streams from, the time from a block's commit in LMDB (first seen by a
  5 ms poller) to its tracking row on the primary and on the standby: p50, p99.
- `queries_ms`: the same Auditor queries on the LMDB ledger and on the
  replica (median of 5), and their PG/LMDB ratios.
"""

from __future__ import annotations

import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.replicator import replicate
from tools.bench_projections import build_chain
from tools.pgcluster import PgCluster

Say = Callable[[str], None]


def _raw_copy(dsn: str, blocks: list[tuple[int, list[bytes]]], per_txn: int | None) -> float:
    """Seconds to COPY every event as (seq, bytes), per block or per `per_txn` events."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_events")
        conn.execute("CREATE TABLE raw_events (seq bigint PRIMARY KEY, data bytea NOT NULL)")
        groups: list[list[tuple[int, bytes]]] = []
        if per_txn is None:
            groups = [[(first + i, d) for i, d in enumerate(datas)] for first, datas in blocks]
        else:
            flat = [(first + i, d) for first, datas in blocks for i, d in enumerate(datas)]
            groups = [flat[i:i + per_txn] for i in range(0, len(flat), per_txn)]
        t = time.perf_counter()
        for rows in groups:
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY raw_events (seq, data) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "bytea"])
                for row in rows:
                    cp.write_row(row)
        return time.perf_counter() - t


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _tracking(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT height FROM perpledger.tracking").fetchone()
            return -1 if row is None else int(row[0])
    except psycopg.Error:
        return -1


def _lag(primary: PgCluster, replica: PgCluster, tmp: Path, blocks: int,
         say: Say) -> dict[str, Any]:
    data = tmp / "lag-ledger"
    cli = [sys.executable, "-m", "tools.cli"]
    subprocess.run([*cli, "init", "--data", str(data)], check=True, capture_output=True)
    to, standby = primary.dsn("lag"), replica.dsn("lag")
    follower = subprocess.Popen([*cli, "replicate", "--to", to, "--data", str(data), "--poll",
                                 "0.005", "--json"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    seen: dict[str, dict[int, float]] = {"lmdb": {}, "primary": {}, "standby": {}}
    done = threading.Event()

    def poll(name: str, read: Callable[[], int]) -> None:
        last = -1
        while not done.is_set():
            h = read()
            now = time.perf_counter()
            for k in range(last + 1, h + 1):
                seen[name].setdefault(k, now)
            last = max(last, h)
            time.sleep(0.005)

    def lmdb_head() -> int:
        try:
            with ChainStore.open(data) as store:
                return store.head.height
        except Exception:
            return -1

    pollers = [threading.Thread(target=poll, args=a) for a in (
        ("lmdb", lmdb_head), ("primary", lambda: _tracking(to)),
        ("standby", lambda: _tracking(standby)))]
    for t in pollers:
        t.start()
    try:
        say(f"lag: simulate appends {blocks} blocks while the follower replicates")
        subprocess.run([*cli, "simulate", "--data", str(data), "--blocks", str(blocks),
                        "--accounts", "300", "--seed", "9"], check=True, capture_output=True)
        with ChainStore.open(data) as store:
            head = store.head.height
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and head not in seen["standby"]:
            time.sleep(0.05)
    finally:
        done.set()
        for t in pollers:
            t.join()
        follower.terminate()
        follower.wait(timeout=60)
    out: dict[str, Any] = {"blocks": blocks}
    for name in ("primary", "standby"):
        lags = [(seen[name][h] - seen["lmdb"][h]) * 1000 for h in seen["lmdb"]
                if h in seen[name] and h > 1]
        out[name] = {"p50": round(_pct(lags, 50), 1), "p99": round(_pct(lags, 99), 1),
                     "blocks_seen": len(lags)}
    return out


def _queries(chain: Path, dsn: str, say: Say) -> dict[str, Any]:
    say("audit queries on LMDB and PostgreSQL")
    rng = random.Random(5)
    out: dict[str, Any] = {}
    with Auditor.open(chain) as lm, Auditor.open(dsn) as pg:
        head = lm.store.head.height
        accts = [f"u{rng.randrange(1, 2000):05d}" for _ in range(5)]
        heights = [rng.randrange(head // 2, head) for _ in range(5)]
        queries: dict[str, Callable[[Auditor, int], object]] = {
            "account": lambda a, i: a.account(accts[i], from_height=max(0, head - 100)),
            "statement_last_100_blocks": lambda a, i: a.statement(accts[i],
                                                                  from_height=max(0, head - 100)),
            "fills_of_account": lambda a, i: a.fills(account=accts[i]),
            "funding_market": lambda a, i: a.funding("ETH-PERP", from_height=max(0, head - 500)),
            "liquidations": lambda a, i: a.liquidations(from_height=max(0, head - 1000)),
            "events_by_type_100": lambda a, i: a.events(type_name="Filled",
                                                        from_height=heights[i], limit=100),
            "state_at_height": lambda a, i: a.state(at_height=heights[i]),
        }
        for name, q in queries.items():
            timings: dict[str, float] = {}
            for label, au in (("lmdb", lm), ("postgresql", pg)):
                samples = []
                for i in range(5):
                    t = time.perf_counter()
                    q(au, i)
                    samples.append((time.perf_counter() - t) * 1000)
                timings[label] = statistics.median(samples)
            out[name] = {"lmdb_ms": round(timings["lmdb"], 2),
                         "postgresql_ms": round(timings["postgresql"], 2),
                         "ratio": round(timings["postgresql"] / timings["lmdb"], 2)
                         if timings["lmdb"] > 0 else None}
    return out


def run(events: int = 1_000_000, *, lag_blocks: int = 300, dsn: str | None = None,
        say: Say = lambda _m: None) -> dict[str, Any]:
    """The whole benchmark (see module docstring); one JSON-able dict."""
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-replicate-"))
    primary: PgCluster | None = None
    replica: PgCluster | None = None
    try:
        chain = tmp / "chain"
        say(f"building a {events:,}-event chain")
        build_chain(chain, events, say=say)
        with ChainStore.open(chain) as store:
            blocks = [(h.first_seq, d) for h, d in store.iter_block_bytes()]
            n = store.head.seq
            n_blocks = store.head.height + 1
        if dsn is None:
            say("starting a private PostgreSQL")
            primary = PgCluster.create()
            primary.start()
            raw_dsn = primary.create_database("raw")
            rep_dsn = primary.create_database("replica")
        else:
            raw_dsn = rep_dsn = dsn
        say("raw binary COPY, one transaction per block")
        raw_block_s = _raw_copy(raw_dsn, blocks, None)
        say("raw binary COPY, 1,000-event transactions")
        raw_1000_s = _raw_copy(raw_dsn, blocks, 1000)
        with psycopg.connect(raw_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS raw_events")
        del blocks
        say("replicate --once")
        with ChainStore.open(chain) as store:
            t = time.perf_counter()
            report = replicate(store, rep_dsn)
            catch_up = time.perf_counter() - t
        doc: dict[str, Any] = {
            "events": n, "blocks": n_blocks, "events_per_block": round(n / n_blocks, 1),
            "raw_copy_block_events_per_s": round(n / raw_block_s),
            "raw_copy_1000_events_per_s": round(n / raw_1000_s),
            "replicator_events_per_s": round(report.events / catch_up),
            "ratio_to_raw": round(raw_block_s / catch_up, 3),
            "ratio_to_raw_1000": round(raw_1000_s / catch_up, 3),
            "catch_up_s": round(catch_up, 2),
            "catch_up_s_per_1m_events": round(catch_up * 1_000_000 / n, 2),
        }
        if primary is not None:
            say("streaming replica (pg_basebackup -R)")
            primary.create_database("lag")
            replica = primary.replica()
            replica.start()
            doc["lag_ms"] = _lag(primary, replica, tmp, lag_blocks, say)
        doc["queries_ms"] = _queries(chain, rep_dsn, say)
        return doc
    finally:
        for c in (replica, primary):
            if c is not None:
                c.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
