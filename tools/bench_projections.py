"""`ledgerctl bench rebuild|audit`: the read side against its ceilings, measured in one run.

Chains are real: the simulator's workload through the real engine, appended as
the sequencer appends (block, state hash, a snapshot every 100 blocks).

`bench_rebuild(events)`:
- `raw_scan_events_per_s`: the ceiling, a bare cursor walk over the chain's
  events sub-database decoding every event (tools/raw_ceiling.py, no checks);
- `fold_events_per_s`: the exchange-state fold alone (`rebuild --from genesis`
  of the state in memory: verified block reads, typed decode of what evolve
  uses, evolve, the state hash per block compared with the header's), and its
  ratio to the raw scan (`fold_ratio_to_raw`), measured in the same run;
- `rebuild_events_per_s`: `ledgerctl rebuild --from genesis` on fresh read
  models (exchange state with a state-hash check per block and the audit read
  models, the latter in a worker process when there are 200K+ events;
  checkpointed commits), chain events per second of the job;
- `readmodels_rebuild_events_per_s` / `exchange_rebuild_events_per_s`: the
  two projections of that job on their own;
- `eventsourcing_runner_events_per_s`: the same events (the first
  `es_events`) as domain events of an eventsourcing `Application` on the
  ledger's LMDB persistence module, folded by the library's
  `ProjectionRunner` into the same statement lines (same fold code) in a
  `TrackingRecorder` view.

`bench_audit(events_list)`: on a chain of each size, the account query
(`Auditor.account`: time travel to the head and the last 100 blocks of
statement lines) and a time-travel query (`Auditor.state` at random heights),
median latencies, and the 3M/1M ratios.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ledger import compiled
from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events.commands import BeginBlock
from ledger.markets import DEMO_MARKETS
from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.audit_models import AuditProjection
from projections.exchange_state import rebuild as rebuild_state
from projections.jobs import rebuild
from projections.readmodels import ReadModels
from tools.raw_ceiling import raw_scan_decode
from tools.simulate import SIM_GENESIS_TIME, make_workload

SNAPSHOT_EVERY = 100
Say = Callable[[str], None]


def build_chain(path: Path, events: int, *, accounts: int = 2000, seed: int = 3,
                say: Say | None = None) -> int:
    """A simulated chain of at least `events` events; returns its head height."""
    wl = make_workload(seed=seed, accounts=accounts, inject=[])
    engine = Engine()
    store = ChainStore.create(path, chain_id="bench-projections",
                              config={"snapshot_every": SNAPSHOT_EVERY})
    try:
        def run(height: int, cmds: list[Any]) -> None:
            r = engine.run_block(height, cmds)
            store.append_block(r.envelopes, height=height, time=cmds[0].time,
                               state_hash=r.state_hash)
            if height % SNAPSHOT_EVERY == 0:
                store.put_snapshot(height, r.state_hash, engine.snapshot_bytes())

        run(0, genesis_commands(DEMO_MARKETS, time=SIM_GENESIS_TIME, guards_enabled=True))
        run(1, [BeginBlock(wl.block_time(1)), *wl.setup_commands()])
        height = 1
        while store.head.seq < events:
            height += 1
            run(height, wl.next_block(height, engine))
            if say is not None and height % 500 == 0:
                say(f"building: {store.head.seq:,} of {events:,} events")
        return height
    finally:
        store.close()


def raw_scan(path: Path) -> tuple[float, int]:
    """Seconds and events of a bare cursor walk + decode over the chain's events."""
    with ChainStore.open(path) as store:
        return raw_scan_decode(store.shared_env.env, store.dbs.events)


def bench_rebuild(events: int = 1_000_000, *, es_events: int = 5_000, accounts: int = 2000,
                  say: Say | None = None) -> dict[str, Any]:
    """Rebuild events/s against the raw scan and the eventsourcing projection runner."""
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-rebuild-"))
    try:
        chain = tmp / "chain"
        head = build_chain(chain, events, accounts=accounts, say=say)
        if say:
            say("raw scan + decode")
        raw_s, n = raw_scan(chain)
        if say:
            say("exchange-state fold from genesis")
        with ChainStore.open(chain) as store:
            fold = rebuild_state(store, from_="genesis")
        if say:
            say("ledgerctl rebuild --from genesis")
        with ChainStore.open(chain) as store, ReadModels.open(chain) as rm:
            job = rebuild(store, rm, from_="genesis")
        if say:
            say(f"eventsourcing ProjectionRunner ({min(es_events, n):,} events)")
        es_n, es_s = eventsourcing_runner(chain, tmp / "es", es_events)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    raw_rate = n / raw_s
    rate = n / job["seconds"]
    ex, au = job["exchange"], job["audit"]
    es_rate = es_n / es_s
    fold_rate = fold.events / fold.seconds
    return {
        "build": compiled.status()["build"],
        "events": n,
        "blocks": head + 1,
        "accounts": accounts,
        "raw_scan_events_per_s": round(raw_rate),
        "fold_events_per_s": round(fold_rate),
        "fold_ratio_to_raw": round(fold_rate / raw_rate, 3),
        "fold_matches_head": fold.match,
        "rebuild_events_per_s": round(rate),
        "ratio_to_raw": round(rate / raw_rate, 3),
        "rebuild_matches_head": job["match"],
        "audit_in_worker_process": bool(au.get("worker_process")),
        "exchange_rebuild_events_per_s": ex["events_per_s"],
        "readmodels_rebuild_events_per_s": au["events_per_s"],
        "readmodels_ratio_to_raw": round(au["events_per_s"] / raw_rate, 3),
        "eventsourcing_runner_events": es_n,
        "eventsourcing_runner_events_per_s": round(es_rate),
        "ratio_to_eventsourcing": round(rate / es_rate, 2),
        "readmodels_ratio_to_eventsourcing": round(au["events_per_s"] / es_rate, 2),
    }


# -- the eventsourcing baseline -------------------------------------------------------------


def eventsourcing_runner(chain: Path, es_dir: Path, limit: int) -> tuple[int, float]:
    """Load the chain's first `limit` events into an eventsourcing Application (LMDB
    persistence module), then time the library's ProjectionRunner folding them into
    statement lines. Returns (events, seconds)."""
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import Tracking
    from eventsourcing.projection import Projection, ProjectionRunner

    from ledger.events.codec import decode_verified
    from ledger.store.blocks import BlockHeader
    from ledger.store.eventsourcing_lmdb import LMDBTrackingRecorder

    class LedgerBlock(Aggregate):
        """One chain block; each ledger event is one of its domain events."""

        @event("Appended")
        def append(self, seq: int, height: int, data: str) -> None:
            self.last = seq

    class LedgerApp(Application[Any]):
        pass

    class StatementView(LMDBTrackingRecorder):
        def __init__(self, shared: Any, **kw: Any) -> None:
            super().__init__(shared, **kw)
            self.rm = ReadModels(shared)

        def record(self, proj: AuditProjection, tracking: Tracking) -> None:
            def fn(txn: Any) -> None:
                proj.flush(txn, self.rm, 0, touch=False)  # the entries the runner writes
                self._put_tracking(txn, tracking)
            self._write(fn)

    class StatementProjection(Projection[StatementView]):
        name = "statements"

        def __init__(self, view: StatementView) -> None:
            super().__init__(view)
            self.fold = AuditProjection()

        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            if not hasattr(domain_event, "data"):
                self.view.insert_tracking(tracking)  # the aggregate's Created event
                return
            data = bytes.fromhex(domain_event.data)
            seq = domain_event.seq
            hdr = BlockHeader(domain_event.height, 0, seq, 1, b"", b"", b"", b"")
            decode_verified(data, seq)  # the same decode the runner's fold does
            self.fold.fold(hdr, [data], True)
            self.view.record(self.fold, tracking)

    with ChainStore.open(chain) as store:
        rows = [(seq, data) for seq, data in store.iter_raw(1, min(limit, store.head.seq))]
        heights = {}
        for hdr in store.blocks(0, store.height_of_seq(rows[-1][0])):
            for s in range(hdr.first_seq, hdr.last_seq + 1):
                heights[s] = hdr.height
    env = {"PERSISTENCE_MODULE": "ledger.store.eventsourcing_lmdb",
           "LMDB_PATH": str(es_dir)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app = LedgerApp(env)
        block: LedgerBlock | None = None
        current = -1
        for seq, data in rows:
            h = heights[seq]
            if h != current:
                if block is not None:
                    app.save(block)
                block, current = LedgerBlock(), h
            assert block is not None
            block.append(seq, h, data.hex())
        if block is not None:
            app.save(block)
        last_id = app.recorder.max_notification_id()
        app.close()
        t = time.perf_counter()
        with ProjectionRunner(application_class=LedgerApp,
                              projection_class=StatementProjection,
                              view_class=StatementView, env=env) as runner:
            runner.wait(last_id, timeout=3600)
            seconds = time.perf_counter() - t
        return len(rows), seconds
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- audit query latency ----------------------------------------------------------------


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def audit_latency(chain: Path, *, queries: int = 30, seed: int = 1) -> dict[str, Any]:
    """Catch the read models up, then time the account and time-travel queries."""
    rng = random.Random(seed)
    with Auditor.open(chain, catch_up=False) as au:
        t = time.perf_counter()
        au.catch_up()
        catch_up_s = time.perf_counter() - t
        head = au.store.head.height
        accts = [a for a in (f"u{i:05d}" for i in range(0, 2000, 37))
                 if au.statement(a, from_height=max(0, head - 99))["lines"]][:10] or ["u00001"]
        picks = iter(rng.choice(accts) for _ in range(queries * 2))
        account_ms = _median_ms(lambda: au.account(next(picks), from_height=max(0, head - 99)),
                                queries)
        statement_ms = _median_ms(lambda: au.statement(next(picks),
                                                       from_height=max(0, head - 99)), queries)
        heights = iter(rng.randrange(1, head + 1) for _ in range(queries))
        travel_ms = _median_ms(lambda: au.state(at_height=next(heights)), queries)
        return {"events": au.store.head.seq, "blocks": head + 1,
                "catch_up_events_per_s": round(au.store.head.seq / catch_up_s),
                "account_query_ms": account_ms, "statement_query_ms": statement_ms,
                "time_travel_ms": travel_ms}


def bench_audit(events_list: tuple[int, ...] = (1_000_000, 3_000_000), *,
                queries: int = 30, say: Say | None = None) -> dict[str, Any]:
    """Account and time-travel query latency on chains of each size, and their ratios."""
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-audit-"))
    out: dict[str, Any] = {"events": list(events_list)}
    per: list[dict[str, Any]] = []
    try:
        for n in events_list:
            chain = tmp / f"chain{n}"
            if say:
                say(f"building a {n:,}-event chain")
            build_chain(chain, n, say=say)
            if say:
                say(f"queries on the {n:,}-event chain")
            per.append(audit_latency(chain, queries=queries))
            shutil.rmtree(chain, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for n, r in zip(events_list, per, strict=True):
        tag = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)
        for k in ("account_query_ms", "statement_query_ms", "time_travel_ms",
                  "catch_up_events_per_s"):
            out[f"{k}_{tag}"] = r[k]
    if len(per) >= 2:
        a, b = per[0], per[-1]
        out["account_query_ratio"] = round(b["account_query_ms"] / a["account_query_ms"], 3)
        out["statement_query_ratio"] = round(b["statement_query_ms"] / a["statement_query_ms"],
                                             3)
        out["time_travel_ratio"] = round(b["time_travel_ms"] / a["time_travel_ms"], 3)
    return out
