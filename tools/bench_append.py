"""`ledgerctl bench append`: the log's own cost against the raw LMDB ceiling.

All figures in one run, on the same records:
- ledger: the writer's append (validation, encoding, indexes, hash chain,
  durable commit), blocks of 1,000 events, block N+1 prepared while block N
  commits (`CommitPipeline`, as the sequencer appends), and the same serially
  (`ChainStore.append_block`);
- raw ceiling (tools/raw_ceiling.py): encode + `putmulti(append=True)`, one
  durable transaction per 1,000 events, no indexes, no hashes;
- eventsourcing Application on SQLite, 1,000 events per save (up to 100K events);
- full scan plus decode, ledger vs raw;
- `truncate_to` of the last 100K events from a 1M- and a 3M-event chain.

The mix imitates the engine's output: order placement and cancels (mostly by a
few market makers), fills, oracle and funding updates, settlements.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack

from ledger import compiled
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import CancelReason, OrderType, SelfTrade, Side, TimeInForce
from ledger.events.record import replace
from ledger.gcpause import gc_paused
from ledger.store.chain import ChainStore
from ledger.store.pipeline import CommitPipeline
from tools.raw_ceiling import raw_append, raw_scan, stored_bytes

BLOCK = 1000
MARKETS = ("BTC-PERP", "ETH-PERP", "SOL-PERP", "PAXG-PERP")


def mix(n: int, *, seed: int = 7, accounts: int = 10_000) -> Iterator[tuple[int, Any]]:
    """Yield (cause offset, record) pairs of a realistic event mix, deterministic by seed."""
    rng = random.Random(seed)
    makers = [f"mm{i:02d}" for i in range(8)]
    users = [f"u{i:06d}" for i in range(accounts)]
    oid = 0
    produced = 0
    while produced < n:
        r = rng.random()
        mkt = MARKETS[rng.randrange(4)]
        if r < 0.45:
            acct = rng.choice(makers) if rng.random() < 0.8 else rng.choice(users)
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            px = 5_000_000_000 + rng.randrange(-500, 500) * 100_000
            qty = rng.randrange(1, 50) * 1_000_000
            yield 0, c.PlaceOrder(acct, mkt, side, qty, px, OrderType.LIMIT, TimeInForce.GTC,
                                  False, None, SelfTrade.EXPIRE_MAKER)
            oid += 1
            yield 1, o.OrderPlaced(oid, acct, mkt, side, qty, px, OrderType.LIMIT,
                                   TimeInForce.GTC, False, None, SelfTrade.EXPIRE_MAKER)
            produced += 2
        elif r < 0.65:
            maker = rng.choice(makers)
            taker = rng.choice(users)
            qty = rng.randrange(1, 20) * 1_000_000
            px = 5_000_000_000 + rng.randrange(-500, 500) * 100_000
            v = qty * px // 10**9
            yield 0, o.Filled(mkt, oid - 3, oid, maker, taker, Side.BUY, qty, px, v,
                              -(v * 50 // 10**6), v * 300 // 10**6, rng.randrange(-10**6, 10**6),
                              0)
            produced += 1
        elif r < 0.80:
            acct = rng.choice(makers)
            yield 0, c.CancelOrder(acct, max(oid - 5, 1))
            yield 1, o.OrderCancelled(max(oid - 5, 1), acct, mkt, 1_000_000, CancelReason.USER)
            produced += 2
        elif r < 0.92:
            px = 5_000_000_000 + rng.randrange(-500, 500) * 100_000
            yield 0, c.UpdateOracle(mkt, px, rng.randrange(-50, 50))
            yield 1, o.OraclePriceUpdated(mkt, px, 10, 12, px + 600_000, 123_456, 60)
            produced += 2
        else:
            acct = rng.choice(users)
            yield 0, o.FundingSettled(acct, mkt, rng.randrange(-10**5, 10**5),
                                      600_000_000_000, 600_000_123_456, 789)
            produced += 1


def make_blocks(n: int, *, first_height: int = 1, seed: int = 7) -> list[list[Envelope]]:
    """Envelopes for `n` events in blocks of BLOCK, seqs from 1, heights from first_height."""
    out: list[list[Envelope]] = []
    cur: list[Envelope] = []
    height = first_height
    for seq, (off, rec) in enumerate(mix(n, seed=seed), 1):
        cur.append(Envelope(seq, height, seq - off if off else 0, rec))
        if len(cur) >= BLOCK:
            out.append(cur)
            cur = []
            height += 1
    if cur:
        out.append(cur)
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def ledger_append(path: Path, blocks: list[list[Envelope]], *, pipelined: bool = True) -> float:
    """Seconds to append every block durably, as the writer does.

    Pipelined (the sequencer's way): block N+1 is prepared (checks, encoding,
    index chunks, events hash) while block N commits in the background
    (`CommitPipeline`). Serial: `append_block`, prepare then commit.
    """
    store = ChainStore.create(path, chain_id="bench")
    pipe = CommitPipeline(store)
    try:
        # Genesis so that heights start at 1 as in real chains.
        store.append_block([Envelope(1, 0, 0, c.BeginBlock(0))], height=0, time=0,
                           state_hash=bytes(32))
        shifted = [[replace(e, seq=e.seq + 1) for e in b] for b in blocks]
        t = time.perf_counter()
        for i, b in enumerate(shifted):
            with gc_paused():  # as the sequencer appends
                if not pipelined:
                    store.append_block(b, height=i + 1, time=i + 1, state_hash=bytes(32))
                    continue
                block = store.prepare(b, height=i + 1, time=i + 1, state_hash=bytes(32),
                                      on=pipe.tip)
            if pipe.busy:
                pipe.finish()
            pipe.start(block)
        if pipe.busy:
            pipe.finish()
        return time.perf_counter() - t
    finally:
        pipe.close()
        store.close()


def ledger_scan(path: Path) -> tuple[float, int]:
    store = ChainStore.open(path)
    try:
        t = time.perf_counter()
        n = 0
        for _hdr, envs in store.iter_blocks():
            n += len(envs)
        return time.perf_counter() - t, n
    finally:
        store.close()


def ledger_scan_arrays(path: Path) -> tuple[float, int]:
    """The ledger's scan with every block's events hash checked, unpacked to plain arrays.

    Separates the store's own cost (cursor walk, hash verification) from the cost
    of building typed records, which `ledger_scan` adds on top.
    """
    from ledger.store import reads
    from ledger.store.blocks import events_hash

    store = ChainStore.open(path)
    unpack = msgpack.unpackb
    try:
        headers = store.blocks()
        t = time.perf_counter()
        n = 0
        for hdr in headers:
            datas = store._read(lambda txn, h=hdr: reads.values_from(
                txn, store.dbs, h.first_seq, h.count, None))
            if events_hash(datas) != hdr.events_hash:
                raise RuntimeError(f"events hash mismatch at {hdr.height}")
            for d in datas:
                unpack(d, use_list=False)
            n += len(datas)
        return time.perf_counter() - t, n
    finally:
        store.close()


def eventsourcing_sqlite(path: Path, n: int) -> float:
    """An eventsourcing Application on SQLite saving n events, 1,000 per save."""
    import os

    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Book(Aggregate):
        @event("Traded")
        def trade(self, acct: str, mkt: str, qty: int, price: int) -> None:
            self.last = (acct, mkt, qty, price)

    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite",
           "SQLITE_DBNAME": str(path / "es.sqlite")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        app: Application[Any] = Application()
        book = Book()
        app.save(book)
        t = time.perf_counter()
        done = 0
        while done < n:
            for i in range(BLOCK):
                book.trade(f"u{i:06d}", "BTC-PERP", 1_000_000 + i, 5_000_000_000)
            app.save(book)
            done += BLOCK
        dt = time.perf_counter() - t
        app.close()
        return dt
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def truncation(path: Path, n_events: int, cut: int) -> tuple[float, int]:
    """Build an n-event chain, then time truncate_to removing about `cut` events."""
    blocks = make_blocks(n_events)
    ledger_append(path, blocks)
    store = ChainStore.open(path, write=True)
    try:
        head = store.head
        target = head.height - cut // BLOCK
        dt, _ = _timed(lambda: store.truncate_to(target, reason="bench", operator="bench"))
        archived = store.branches()[-1]["events"]
        return dt, archived
    finally:
        store.close()


def run(events: int = 1_000_000, *, es_events: int = 100_000, truncate_big: int | None = None,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement in one process and return the figures."""
    say = progress or (lambda _m: None)
    tmp = Path(tempfile.mkdtemp(prefix="perpledger-bench-"))
    try:
        say(f"building {events:,} events")
        blocks = make_blocks(events)
        nbytes = sum(len(stored_bytes(e)) for b in blocks for e in b)
        say("raw LMDB append (ceiling)")
        raw_s = raw_append(tmp / "raw", blocks)
        say("ledger append")
        led_s = ledger_append(tmp / "ledger", blocks)
        say("ledger append, serial")
        serial_s = ledger_append(tmp / "serial", blocks, pipelined=False)
        say("scans")
        raw_scan_s, _ = raw_scan(tmp / "raw")
        led_scan_s, _ = ledger_scan(tmp / "ledger")
        led_arr_s, _ = ledger_scan_arrays(tmp / "ledger")
        es_n = min(es_events, events)
        say(f"eventsourcing/SQLite ({es_n:,} events)")
        (tmp / "es").mkdir()
        es_s = eventsourcing_sqlite(tmp / "es", es_n)
        cut = min(100_000, events // 10)
        say(f"truncate {cut:,} of {events:,}")
        tr1_s, tr1_n = truncation(tmp / "tr1", events, cut)
        big = truncate_big if truncate_big is not None else 3 * events
        say(f"truncate {cut:,} of {big:,}")
        tr3_s, tr3_n = truncation(tmp / "tr3", big, cut)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    led_rate = events / led_s
    raw_rate = events / raw_s
    es_rate = es_n / es_s
    return {
        "build": compiled.status()["build"],
        "events": events,
        "block_size": BLOCK,
        "bytes_per_event": round(nbytes / events, 1),
        "ledger_events_per_s": round(led_rate),
        "raw_events_per_s": round(raw_rate),
        "ratio_to_raw": round(led_rate / raw_rate, 3),
        "eventsourcing_sqlite_events": es_n,
        "eventsourcing_sqlite_events_per_s": round(es_rate),
        "ratio_to_eventsourcing": round(led_rate / es_rate, 2),
        "ledger_serial_events_per_s": round(events / serial_s),
        "serial_ratio_to_raw": round(raw_s / serial_s, 3),
        "ledger_scan_events_per_s": round(events / led_scan_s),
        "raw_scan_events_per_s": round(events / raw_scan_s),
        "scan_ratio_to_raw": round(raw_scan_s / led_scan_s, 3),
        "ledger_scan_arrays_events_per_s": round(events / led_arr_s),
        "scan_arrays_ratio_to_raw": round(raw_scan_s / led_arr_s, 3),
        "truncate_events": tr1_n,
        "truncate_s_small_chain": round(tr1_s, 4),
        "truncate_s_big_chain": round(tr3_s, 4),
        "truncate_chain_sizes": [events, big],
        "truncate_ratio_big_to_small": round(tr3_s / tr1_s, 3),
    }
