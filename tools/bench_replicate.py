"""`ledgerctl bench replicate`: the replicator against raw binary COPY into the same server.

All figures come from one run on one private PostgreSQL server (the system's
binaries, default durability settings: fsync on, synchronous_commit on)
unless `--dsn` names an empty database to use instead. The throughput part
runs `--repeat` times (ceilings and replicator interleaved, fresh databases
each time); each figure is reported as the median over the runs with its
spread (min, max), and every ratio is taken within one run before the median.

- `raw_copy_grouped_events_per_s`: the ceiling. The chain's stored event
  bytes, preloaded in memory, written by binary COPY as (seq, bytes) rows
  into a table with one primary key, in exactly the replicator's
  transactions (the same runs of whole blocks, `replica_grouping`);
  `raw_copy_block_events_per_s`, the same with one transaction per block.
- `replicator_events_per_s`: `replicate --once` of the same chain into a
  fresh database (blocks read from LMDB, events with filter columns, index
  chunks, audit read-model rows, tracking), `catch_up_s` the time for the
  whole chain; `ratio_to_raw` = replicator / grouped ceiling (goal >= 0.7),
  `ratio_to_raw_block` = replicator / per-block ceiling.
- `rows_copy_grouped_events_per_s`: what the server alone takes for the
  replicator's own rows: the replica's rows, copied out beforehand, loaded
  by binary COPY into a fresh replica schema in the same transactions (with
  the tracking update), no Python work in the timed part. `ratio_rows_to_raw`
  is the bound the replica's tables (about three rows into five B-trees per
  event, against one into one) put on any replicator of this schema, and
  `ratio_to_rows` how close the replicator comes to it.
- `lag_ms`: while `ledgerctl simulate` appends to a fresh ledger and a
  follower replicates it into the primary, which a `pg_basebackup -R` standby
  streams from, the time from a block's commit in LMDB (first seen by a
  5 ms poller) to its tracking row on the primary and on the standby: p50,
  p99; for the follower as it runs (`grouped`: runs of blocks when behind)
  and with one block per transaction (`one_block`), each `--repeat` times.
- `queries_ms`: the same Auditor queries on the LMDB ledger and on the
  replica (median of 5), and their PG/LMDB ratios.
- `load_average`: the machine's 1-minute load average at the start and the
  end (other work on the machine moves wall-clock figures; ratios less).
"""

from __future__ import annotations

import os
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

from ledger.errors import CommandInvalid, StoreError
from ledger.store.chain import ChainStore, ledger_exists
from ledger.store.pg import copybin
from ledger.store.pg.schema import SCHEMA, migrate
from projections.audit import Auditor
from projections.replica_grouping import GROUP_BLOCKS, GROUP_EVENTS, group_sizes
from projections.replicator import replicate
from tools.bench_projections import build_chain
from tools.pgcluster import PgCluster

Say = Callable[[str], None]


def _raw_copy(dsn: str, blocks: list[tuple[int, list[bytes]]], sizes: list[int]) -> float:
    """Seconds to COPY every event as (seq, bytes), one transaction per run of `sizes` blocks."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_events")
        conn.execute("CREATE TABLE raw_events (seq bigint PRIMARY KEY, data bytea NOT NULL)")
        groups: list[list[tuple[int, bytes]]] = []
        i = 0
        for n in sizes:
            groups.append([(first + k, d) for first, datas in blocks[i:i + n]
                           for k, d in enumerate(datas)])
            i += n
        t = time.perf_counter()
        for rows in groups:
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY raw_events (seq, data) FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(["int8", "bytea"])
                for row in rows:
                    cp.write_row(row)
        dt = time.perf_counter() - t
        conn.execute("DROP TABLE raw_events")
        return dt


#: The replica's tables a catch-up writes, each with the column range of one run.
_ROW_TABLES = (("blocks", "branch = 0 AND height BETWEEN %s AND %s", "height"),
               ("events", "branch = 0 AND seq BETWEEN %s AND %s", "seq"),
               ("index_chunks", "branch = 0 AND first_seq BETWEEN %s AND %s", "seq"),
               ("stmt_lines", "ns = 0 AND height BETWEEN %s AND %s", "height"),
               ("funding_ticks", "ns = 0 AND height BETWEEN %s AND %s", "height"),
               ("liquidations", "ns = 0 AND height BETWEEN %s AND %s", "height"),
               ("snapshots", "height BETWEEN %s AND %s", "height"),
               ("fold_states", "height BETWEEN %s AND %s", "height"))


_EMPTY_COPY = copybin.SIGNATURE + copybin.TRAILER


def _rows_copy(replica: str, target: str, runs: list[tuple[int, int, int, int]]) -> float:
    """Seconds to load the replica's own rows into a fresh replica schema at `target`, one
    transaction per run ((first, last height), (first, last seq)) with its tracking update;
    each run's rows are copied out of `replica` (binary COPY) before its timed load."""
    with psycopg.connect(replica, autocommit=True) as src, \
            psycopg.connect(target, autocommit=True) as dst:
        migrate(dst, target)
        dst.execute(f"INSERT INTO {SCHEMA}.tracking (id, height, seq, hash, time) VALUES "
                    "(1, -1, 0, ''::bytea, 0)")
        total = 0.0
        for h0, h1, s0, s1 in runs:
            payloads = []
            for table, where, by in _ROW_TABLES:
                lo, hi = (h0, h1) if by == "height" else (s0, s1)
                buf = bytearray()
                with src.cursor().copy(f"COPY (SELECT * FROM {SCHEMA}.{table} WHERE {where}) "
                                       "TO STDOUT (FORMAT BINARY)", (lo, hi)) as cp:
                    for chunk in cp:
                        buf += chunk
                if len(buf) > len(_EMPTY_COPY):
                    payloads.append((table, bytes(buf)))
            t = time.perf_counter()
            with dst.transaction():
                cur = dst.cursor()
                for table, data in payloads:
                    with cur.copy(f"COPY {SCHEMA}.{table} FROM STDIN (FORMAT BINARY)") as cp:
                        cp.write(data)
                cur.execute(f"UPDATE {SCHEMA}.tracking SET height = %s, seq = %s WHERE id = 1",
                            (h1, s1))
            total += time.perf_counter() - t
        return total


def _spread(values: list[float]) -> tuple[float, list[float]]:
    return statistics.median(values), [min(values), max(values)]


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


def _lag(primary: PgCluster, replica: PgCluster, tmp: Path, blocks: int, name: str,
         follower_args: list[str], say: Say) -> dict[str, Any]:
    """One lag run: a fresh ledger and database `name`; once the follower has caught up
    with the new ledger (so its start-up is not measured), `simulate` appends `blocks`."""
    data = tmp / f"lag-ledger-{name}"
    cli = [sys.executable, "-m", "tools.cli"]
    subprocess.run([*cli, "init", "--data", str(data)], check=True, capture_output=True)
    with ChainStore.open(data) as store:
        start = store.head.height
    primary.create_database(name)
    to, standby = primary.dsn(name), replica.dsn(name)
    follower = subprocess.Popen([*cli, "replicate", "--to", to, "--data", str(data), "--poll",
                                 "0.005", "--json", *follower_args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and start not in seen["primary"]:
            time.sleep(0.01)
        say(f"lag ({name}): simulate appends {blocks} blocks while the follower replicates")
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
    shutil.rmtree(data, ignore_errors=True)
    out: dict[str, Any] = {}
    for where in ("primary", "standby"):
        lags = [(seen[where][h] - seen["lmdb"][h]) * 1000 for h in seen["lmdb"]
                if h in seen[where] and h > start]
        out[where] = {"p50": round(_pct(lags, 50), 1), "p99": round(_pct(lags, 99), 1),
                      "blocks_seen": len(lags)}
    return out


def _lags(primary: PgCluster, replica: PgCluster, tmp: Path, blocks: int, repeat: int,
          group: list[str], say: Say) -> dict[str, Any]:
    """Lag of the follower as it runs (`grouped`) and with one block per transaction
    (`one_block`), `repeat` runs each, interleaved: medians of p50 and p99, spreads."""
    variants = {"grouped": group, "one_block": ["--group-blocks", "1"]}
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for r in range(repeat):
        for variant, args in variants.items():
            runs[variant].append(_lag(primary, replica, tmp, blocks, f"lag_{variant}_{r}",
                                      args, say))
    out: dict[str, Any] = {"blocks": blocks}
    for variant, got in runs.items():
        doc: dict[str, Any] = {}
        for where in ("primary", "standby"):
            for p in ("p50", "p99"):
                med, spread = _spread([g[where][p] for g in got])
                doc[f"{where}_{p}"] = round(med, 1)
                doc[f"{where}_{p}_spread"] = spread
        out[variant] = doc
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


def _build_or_open(chain: Path, events: int, say: Say) -> None:
    if ledger_exists(chain):
        with ChainStore.open(chain) as store:
            say(f"using the chain at {chain} ({store.head.seq:,} events)")
            return
    say(f"building a {events:,}-event chain")
    build_chain(chain, events, say=say)


def _throughput(chain: Path, fresh: Callable[[str], str], drop: Callable[[str], None] | None,
                repeat: int, group_events: int, group_blocks: int, say: Say
                ) -> tuple[dict[str, Any], str]:
    """The ceilings and the replicator, `repeat` times; the figures and the DSN of the last
    replica, left in place. `fresh` gives a fresh database by name; with no `drop` (one
    given database) the rows ceiling, which needs two, is left out."""
    with ChainStore.open(chain) as store:
        blocks = [(h.first_seq, d) for h, d in store.iter_block_bytes()]
        headers = list(store.blocks())
    n = sum(len(d) for _, d in blocks)
    sizes = group_sizes([h.count for h in headers], group_events, group_blocks)
    runs_at: list[tuple[int, int, int, int]] = []
    i = 0
    for k in sizes:
        first, last = headers[i], headers[i + k - 1]
        runs_at.append((first.height, last.height, first.first_seq, last.last_seq))
        i += k
    per_run: list[dict[str, float]] = []
    replica = rep = ""
    for r in range(repeat):
        say(f"run {r + 1}/{repeat}: raw binary COPY, one transaction per block")
        raw = fresh(f"raw_{r}")
        raw_block_s = _raw_copy(raw, blocks, [1] * len(blocks))
        say(f"run {r + 1}/{repeat}: raw binary COPY, the replicator's transactions")
        raw_grouped_s = _raw_copy(raw, blocks, sizes)
        if drop is not None:
            drop(f"raw_{r}")
        say(f"run {r + 1}/{repeat}: replicate --once")
        if replica and drop is not None:
            drop(replica)
        replica = f"replica_{r}"
        rep = fresh(replica)
        with ChainStore.open(chain) as store:
            t = time.perf_counter()
            report = replicate(store, rep, group_events=group_events, group_blocks=group_blocks)
            catch_up = time.perf_counter() - t
        if report.transactions != len(sizes) or report.events != n:
            raise StoreError(f"the replicator wrote {report.transactions} transactions of "
                             f"{report.events} events, the ceiling {len(sizes)} of {n}")
        figures: dict[str, float] = {}
        if drop is not None:
            say(f"run {r + 1}/{repeat}: the replicator's rows, loaded by binary COPY")
            rows_s = _rows_copy(rep, fresh(f"rows_{r}"), runs_at)
            drop(f"rows_{r}")
            figures = {"rows_copy_grouped_events_per_s": n / rows_s,
                       "ratio_rows_to_raw": raw_grouped_s / rows_s,
                       "ratio_to_rows": rows_s / catch_up}
        per_run.append({
            "raw_copy_grouped_events_per_s": n / raw_grouped_s,
            "raw_copy_block_events_per_s": n / raw_block_s,
            "replicator_events_per_s": n / catch_up,
            "ratio_to_raw": raw_grouped_s / catch_up,
            "ratio_to_raw_block": raw_block_s / catch_up,
            "catch_up_s": catch_up,
            "catch_up_s_per_1m_events": catch_up * 1_000_000 / n,
            **figures,
        })
    doc: dict[str, Any] = {"events": n, "blocks": len(headers),
                           "events_per_block": round(n / len(headers), 1),
                           "group_events": group_events, "group_blocks": group_blocks,
                           "transactions": len(sizes), "repeat": repeat}
    spreads: dict[str, list[float]] = {}
    for key in per_run[0]:
        digits = 3 if key.startswith("ratio") else (0 if key.endswith("per_s") else 2)
        med, spread = _spread([run[key] for run in per_run])
        doc[key] = round(med, digits) if digits else round(med)
        spreads[key] = [round(v, digits) if digits else round(v) for v in spread]
    doc["spread"] = spreads
    doc["runs"] = [{k: round(v, 3 if k.startswith("ratio") else 2) for k, v in run.items()}
                   for run in per_run]
    return doc, rep


def run(events: int = 1_000_000, *, lag_blocks: int = 300, dsn: str | None = None,
        repeat: int = 3, chain: Path | None = None, group_events: int = GROUP_EVENTS,
        group_blocks: int = GROUP_BLOCKS, say: Say = lambda _m: None) -> dict[str, Any]:
    """The whole benchmark (see module docstring); one JSON-able dict. `chain`: a chain to
    reuse (built there first if none is there)."""
    if repeat < 1:
        raise CommandInvalid(f"--repeat must be 1 or more, was {repeat}")
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-replicate-"))
    primary: PgCluster | None = None
    replica: PgCluster | None = None
    load0 = os.getloadavg()[0]
    try:
        path = chain or tmp / "chain"
        _build_or_open(path, events, say)
        if dsn is None:
            say("starting a private PostgreSQL")
            primary = PgCluster.create()
            primary.start()
            server = primary

            def drop(db: str) -> None:
                server.psql(f'DROP DATABASE "{db}"')

            doc, rep_dsn = _throughput(path, server.create_database, drop, repeat,
                                       group_events, group_blocks, say)
        else:
            def reset(_name: str) -> str:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
                return dsn

            doc, rep_dsn = _throughput(path, reset, None, repeat, group_events, group_blocks,
                                       say)
        if primary is not None and lag_blocks > 0:
            say("streaming replica (pg_basebackup -R)")
            replica = primary.replica()
            replica.start()
            doc["lag_ms"] = _lags(primary, replica, tmp, lag_blocks, repeat,
                                  ["--group-events", str(group_events), "--group-blocks",
                                   str(group_blocks)], say)
        doc["queries_ms"] = _queries(path, rep_dsn, say)
        doc["load_average"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        return doc
    finally:
        for c in (replica, primary):
            if c is not None:
                c.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
