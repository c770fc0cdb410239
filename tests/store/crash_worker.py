"""Test support for the chain-store tests, and the worker they run as a subprocess.

Imported by the tests (`tests.store.crash_worker`) for its builders and the
store image; run as a script (`python tests/store/crash_worker.py MODE ...`)
it is the other process of the multi-process tests:

    append   PATH SEED MAP_SIZE   append blocks forever; prints `A height hash` after
                                  each `append_block` returns, `S height` after a snapshot
    truncate PATH SEED MAP_SIZE   append a few blocks, truncate (half the time with the
                                  new branch's first block), repeat; prints `A ...`,
                                  `P head_height head_hash target branches with_first`
                                  just before `truncate_to`, `T branch target head_height
                                  head_hash`
                                  after it returns
    hold     PATH                 take the writer lock, print `READY pid`, sleep
    trylock  PATH                 try to take the writer lock; print `LOCKED msg` or
                                  `ACQUIRED`
    read     PATH STOP MAP_SIZE   read consistent snapshots until the file STOP exists;
                                  prints `OK iterations distinct_heads max_height` or
                                  `FAIL reason` (exit 1)

Every line is flushed as it is printed, so a parent that SIGKILLs the worker
knows exactly which operations were acknowledged.

Events are arbitrary catalogue records built from the record annotations (every
registered type can appear); the state hash is a deterministic fake derived
from the height. The store does not interpret either.
"""

from __future__ import annotations

import os
import random
import sys
import time
import types
import typing
from collections.abc import Iterator, Sequence
from enum import IntEnum
from hashlib import blake2b
from pathlib import Path
from typing import Any, NamedTuple

import lmdb
import msgpack
import structlog

from ledger.errors import LedgerLocked
from ledger.events.codec import Envelope
from ledger.events.record import BY_CODE, field_types, is_record_type
from ledger.store.blocks import BlockHeader
from ledger.store.chain import ChainStore, Head, verify_store
from ledger.store.layout import read_u64

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve()
CHAIN_ID = "perpledger-test"
ACCOUNTS = ("alice", "bob", "carol", "dave", "erin", "vault")
MARKETS = ("BTC-USD", "ETH-USD", "SOL-USD")
#: Every registered record class, by code (fixed order: generated chains are reproducible).
EVENT_TYPES: tuple[type[Any], ...] = tuple(BY_CODE[c] for c in sorted(BY_CODE))


# -- builders ------------------------------------------------------------------------


def fake_state_hash(height: int) -> bytes:
    """A deterministic 32-byte stand-in for the state hash after block `height`."""
    return blake2b(f"state:{height}".encode(), digest_size=32).digest()


def random_value(tp: Any, rng: random.Random, *, str_len: int = 8) -> Any:
    """A random well-typed value for one field annotation of the catalogue."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if rng.random() < 0.3 else random_value(inner[0], rng, str_len=str_len)
    if origin is tuple:
        return tuple(random_value(typing.get_args(tp)[0], rng, str_len=str_len)
                     for _ in range(rng.randrange(3)))
    if tp is bool:
        return rng.random() < 0.5
    if tp is int:
        return rng.randrange(-(10**12), 10**15)
    if tp is str:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-")
                       for _ in range(rng.randrange(str_len + 1)))
    if tp is bytes:
        return rng.randbytes(rng.choice((0, 8, 32)))
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return rng.choice(list(tp))
    if is_record_type(tp):
        return random_record(tp, rng, str_len=str_len)
    raise TypeError(f"no builder for field type {tp!r}")


def random_record(cls: type[Any], rng: random.Random, *, str_len: int = 8) -> Any:
    """A random record of `cls`; indexed fields draw from small account/market pools.

    An indexed field is sometimes the empty id, which the store indexes under nothing.
    """
    accounts = getattr(cls, "ACCOUNT_FIELDS", ())
    markets = getattr(cls, "MARKET_FIELDS", ())
    values = []
    for name, tp in field_types(cls):
        if name in accounts:
            values.append("" if rng.random() < 0.04 else rng.choice(ACCOUNTS))
        elif name in markets:
            values.append("" if rng.random() < 0.04 else rng.choice(MARKETS))
        else:
            values.append(random_value(tp, rng, str_len=str_len))
    return cls(*values)


def random_events(rng: random.Random, n: int, *, str_len: int = 8) -> list[Any]:
    """`n` random catalogue events of any registered type."""
    return [random_record(rng.choice(EVENT_TYPES), rng, str_len=str_len) for _ in range(n)]


def envelopes_for(head: Head, events: Sequence[Any]) -> list[Envelope]:
    """Wrap events as the next block after `head`: seqs continue, height is head+1."""
    height = head.height + 1
    out = []
    for i, ev in enumerate(events):
        seq = head.seq + 1 + i
        cause = 0 if getattr(type(ev), "KIND", "IN") == "IN" else seq - 1
        out.append(Envelope(seq, height, cause, ev))
    return out


def append_events(store: ChainStore, events: Sequence[Any],
                  time_step: int = 1) -> tuple[BlockHeader, list[Envelope]]:
    """Append `events` as the next block; returns its header and envelopes."""
    head = store.head
    envs = envelopes_for(head, events)
    height = head.height + 1
    header = store.append_block(envs, height=height, time=head.time + time_step,
                                state_hash=fake_state_hash(height))
    return header, envs


def append_random(store: ChainStore, rng: random.Random, n: int, *,
                  str_len: int = 8) -> tuple[BlockHeader, list[Envelope]]:
    """Append a block of `n` random events; returns its header and envelopes."""
    return append_events(store, random_events(rng, n, str_len=str_len),
                         time_step=rng.randrange(3))


# -- a byte-exact image of a store -----------------------------------------------------


class StoreImage(NamedTuple):
    """Everything observable about a store: through the API and byte for byte in LMDB."""

    head: Head
    stats: dict[str, Any]
    headers: list[BlockHeader]
    raw_events: list[tuple[int, bytes]]
    tables: dict[str, list[tuple[bytes, bytes]]]
    last_txnid: int


def dump_tables(store: ChainStore) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every (key, value) of every sub-database (dups included), read with raw LMDB.

    `<main>` is LMDB's main database: the sub-database records themselves, so a
    sub-database added behind the store's back, or any page a commit touched,
    shows up too.
    """
    env = store.shared_env.env
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    with env.begin(buffers=False) as txn:
        out["<main>"] = [(bytes(k), bytes(v)) for k, v in txn.cursor()]
        for name, db in sorted(vars(store.dbs).items()):
            if isinstance(db, lmdb._Database):
                out[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
    return out


def store_image(store: ChainStore) -> StoreImage:
    """Capture a `StoreImage` (reads past the head too, to see stray events)."""
    head = store.head
    return StoreImage(
        head=head,
        stats=store.stats(),
        headers=store.blocks(),
        raw_events=list(store.iter_raw(1, head.seq + 64)),
        tables=dump_tables(store),
        last_txnid=int(store.shared_env.env.info()["last_txnid"]),
    )


def image_diff(before: StoreImage, after: StoreImage) -> list[str]:
    """Human-readable differences between two images (empty: identical)."""
    diffs = []
    for field in ("head", "stats", "headers", "raw_events", "last_txnid"):
        a, b = getattr(before, field), getattr(after, field)
        if a != b:
            diffs.append(f"{field}: {str(a)[:200]} -> {str(b)[:200]}")
    for name in sorted(set(before.tables) | set(after.tables)):
        a_rows, b_rows = before.tables.get(name), after.tables.get(name)
        if a_rows != b_rows:
            a_set, b_set = set(a_rows or ()), set(b_rows or ())
            diffs.append(f"sub-database {name}: {len(a_set - b_set)} rows gone, "
                         f"{len(b_set - a_set)} rows new, e.g. {sorted(b_set - a_set)[:2]}")
    return diffs


# -- worker modes ------------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _block_size(rng: random.Random) -> int:
    # Mostly small blocks, sometimes a big one so a kill often lands inside a long
    # write transaction (its commit, its page writes, or a map growth).
    return rng.randrange(1500, 4000) if rng.random() < 0.12 else rng.randrange(1, 60)


def run_append(path: str, seed: int, map_size: int) -> None:
    store = ChainStore.open(path, write=True, map_size=map_size)
    rng = random.Random(seed)
    _say(f"READY {store.head.height}")
    while True:
        header, _ = append_random(store, rng, _block_size(rng), str_len=24)
        _say(f"A {header.height} {header.hash.hex()}")
        if rng.random() < 0.1:
            data = rng.randbytes(rng.randrange(1, 300_000))
            store.put_snapshot(header.height, header.state_hash, data)
            _say(f"S {header.height}")


def run_truncate(path: str, seed: int, map_size: int) -> None:
    store = ChainStore.open(path, write=True, map_size=map_size)
    rng = random.Random(seed)
    _say(f"READY {store.head.height}")
    while True:
        appended = rng.randint(2, 4)
        for _ in range(appended):
            header, _ = append_random(store, rng, rng.randrange(100, 700), str_len=24)
            _say(f"A {header.height} {header.hash.hex()}")
            if rng.random() < 0.3:
                store.put_snapshot(header.height, header.state_hash, rng.randbytes(5000))
                _say(f"S {header.height}")
        head = store.head
        target = max(0, head.height - rng.randint(1, appended + 1))
        first: dict[str, Any] = {}
        if rng.random() < 0.5:  # the new branch's first block in the same transaction
            base = store.block(target)
            first = {"then_append": envelopes_for(
                Head(target, base.last_seq, base.hash, base.time),
                random_events(rng, rng.randrange(50, 300), str_len=24)),
                "block_time": base.time + 1, "state_hash": fake_state_hash(target + 1)}
        _say(f"P {head.height} {head.hash.hex()} {target} {len(store.branches())} "
             f"{int(bool(first))}")
        branch = store.truncate_to(target, reason="crash test", operator="crash-worker",
                                   details={"seed": seed}, **first)
        head = store.head
        _say(f"T {branch} {target} {head.height} {head.hash.hex()}")


def run_hold(path: str) -> None:
    store = ChainStore.open(path, write=True)
    _say(f"READY {os.getpid()}")
    try:
        while True:
            time.sleep(3600)
    finally:
        store.close()


def run_trylock(path: str) -> None:
    try:
        store = ChainStore.open(path, write=True)
    except LedgerLocked as exc:
        _say(f"LOCKED {exc}")
        return
    store.close()
    _say("ACQUIRED")


def _consistent_view(store: ChainStore) -> tuple[list[Any], int, int, int, int]:
    """Head record, event/block counts and last keys, all from ONE read transaction."""
    dbs = store.dbs

    def fn(txn: lmdb.Transaction) -> tuple[list[Any], int, int, int, int]:
        head = msgpack.unpackb(txn.get(b"head", db=dbs.meta), raw=False)
        n_events = int(txn.stat(dbs.events)["entries"])
        n_blocks = int(txn.stat(dbs.blocks)["entries"])
        cur = txn.cursor(dbs.events)
        last_seq = read_u64(bytes(cur.key())) if cur.last() else 0
        cur = txn.cursor(dbs.blocks)
        last_height = read_u64(bytes(cur.key())) if cur.last() else -1
        return head, n_events, n_blocks, last_seq, last_height

    return store.shared_env.run_read(fn)


def _reader_pass(store: ChainStore) -> tuple[int, str | None]:
    """One round of reads; returns (head height seen, first inconsistency or None)."""
    head, n_events, n_blocks, last_seq, last_height = _consistent_view(store)
    if not (head[0] == last_height == n_blocks - 1 and head[1] == last_seq == n_events):
        return head[0], (f"torn view: head {head[:2]}, {n_blocks} blocks (last {last_height}),"
                         f" {n_events} events (last seq {last_seq})")
    report = verify_store(store)
    if not report.ok:
        return head[0], f"verify_store: {report}"
    if report.events < head[1]:
        return head[0], f"verify saw {report.events} events after head seq {head[1]}"
    now = store.head
    lo = max(0, now.height - 3)
    headers = store.blocks(lo, now.height)
    events = store.events(lo, now.height)
    if not headers or headers[-1].height != now.height:
        return now.height, f"blocks({lo}, {now.height}) ended at {headers[-1:]}"
    want = list(range(headers[0].first_seq, now.seq + 1))
    if [e.seq for e in events] != want:
        return now.height, f"events({lo}, {now.height}) seqs are not {want[0]}..{want[-1]}"
    for hdr in headers:
        if sum(1 for e in events if e.height == hdr.height) != hdr.count:
            return now.height, f"block {hdr.height} holds {hdr.count} events, read others"
    return now.height, None


def run_read(path: str, stop_file: str, map_size: int) -> None:
    store = ChainStore.open(path, map_size=map_size)
    _say("READY")
    seen: set[int] = set()
    iterations = 0
    last_round = False
    while True:
        last_round = os.path.exists(stop_file)
        height, problem = _reader_pass(store)
        iterations += 1
        seen.add(height)
        if problem is not None:
            _say(f"FAIL {problem}")
            sys.exit(1)
        if last_round:
            break
    _say(f"OK {iterations} {len(seen)} {max(seen)}")


def worker_env() -> dict[str, str]:
    """The environment a worker subprocess runs in (`ledger` importable from the repo)."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def worker_args(*args: object) -> list[str]:
    """The command line of a worker subprocess."""
    return [sys.executable, str(WORKER), *(str(a) for a in args)]


def iter_lines(stream: typing.IO[str]) -> Iterator[str]:
    """Complete lines of a worker's output (a torn last line is dropped)."""
    for line in stream:
        if line.endswith("\n"):
            yield line.rstrip("\n")


def main(argv: list[str]) -> None:
    # stdout carries the acknowledgement protocol; the store's logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    mode, path = argv[0], argv[1]
    if mode == "append":
        run_append(path, int(argv[2]), int(argv[3]))
    elif mode == "truncate":
        run_truncate(path, int(argv[2]), int(argv[3]))
    elif mode == "hold":
        run_hold(path)
    elif mode == "trylock":
        run_trylock(path)
    elif mode == "read":
        run_read(path, argv[2], int(argv[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
