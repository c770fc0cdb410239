"""The LMDB chain store: append, reads, validation, verify, truncate, snapshots, map, locks.

Real LMDB in temporary directories throughout. Corruption is written behind the
store's back with raw LMDB (`store.shared_env.env`, `store.dbs.*`), the other
processes are real subprocesses (`crash_worker.py`), and "changes nothing" is
checked byte for byte over every sub-database (`store_image`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import lmdb
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import (
    BlockRejected,
    CodecError,
    LedgerError,
    LedgerLocked,
    NotFound,
    StoreError,
)
from ledger.events.codec import Envelope, encode
from ledger.events.commands import CreateAccount, Deposit, ListMarket, PlaceOrder
from ledger.events.record import BY_CODE, BY_NAME, field_names, replace
from ledger.store import reads
from ledger.store.blocks import BlockHeader, encode_header, genesis_prev_hash, make_header
from ledger.store.chain import ChainStore, Head, verify_store
from ledger.store.journal import JournalEntry
from ledger.store.layout import (
    MAX_CHUNK_OFFSETS,
    MAX_CHUNK_SPAN,
    chunk_last,
    chunk_seqs,
    index_items,
    posting_chunks,
    read_u64,
    u32,
    u64,
)
from tests.store.crash_worker import (
    ACCOUNTS,
    CHAIN_ID,
    EVENT_TYPES,
    MARKETS,
    StoreImage,
    append_events,
    append_random,
    envelopes_for,
    fake_state_hash,
    image_diff,
    iter_lines,
    random_events,
    random_record,
    store_image,
    worker_args,
    worker_env,
)

# -- fixtures and models ------------------------------------------------------------------


class Chain(NamedTuple):
    """A store with the headers and envelopes the test appended to it."""

    store: ChainStore
    headers: list[BlockHeader]
    envelopes: list[Envelope]


def build_chain(path: Path, *, blocks: int, seed: int, sizes: tuple[int, int] = (1, 60),
                map_size: int | None = None) -> Chain:
    """Genesis holding one event of every registered type, then `blocks` random blocks."""
    kwargs: dict[str, Any] = {} if map_size is None else {"map_size": map_size}
    store = ChainStore.create(path, chain_id=CHAIN_ID, **kwargs)
    rng = random.Random(seed)
    headers: list[BlockHeader] = []
    envelopes: list[Envelope] = []
    header, envs = append_events(store, [random_record(cls, rng) for cls in EVENT_TYPES])
    headers.append(header)
    envelopes.extend(envs)
    for _ in range(blocks):
        header, envs = append_random(store, rng, rng.randint(*sizes))
        headers.append(header)
        envelopes.extend(envs)
    return Chain(store, headers, envelopes)


def accounts_of(env: Envelope) -> set[str]:
    """The accounts an event is indexed under (an empty id indexes nothing)."""
    return {getattr(env.event, f) for f in type(env.event).ACCOUNT_FIELDS} - {""}


def markets_of(env: Envelope) -> set[str]:
    """The markets an event is indexed under (an empty id indexes nothing)."""
    return {getattr(env.event, f) for f in type(env.event).MARKET_FIELDS} - {""}


def expected(envs: list[Envelope], *, account: str | None = None, market: str | None = None,
             type_code: int | None = None, lo: int | None = None,
             hi: int | None = None) -> list[Envelope]:
    """The model answer of `events_by`: filter the appended envelopes."""
    return [e for e in envs
            if (account is None or account in accounts_of(e))
            and (market is None or market in markets_of(e))
            and (type_code is None or type_code == type(e.event).TYPE_CODE)
            and (lo is None or e.height >= lo) and (hi is None or e.height <= hi)]


def raw_write(store: ChainStore, fn: Callable[[lmdb.Transaction], object]) -> None:
    """Write behind the store's back, in one raw LMDB transaction."""
    with store.shared_env.env.begin(write=True) as txn:
        fn(txn)


def assert_unchanged(before: StoreImage, store: ChainStore) -> None:
    diffs = image_diff(before, store_image(store))
    assert not diffs, "the store changed:\n" + "\n".join(diffs)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A read-only chain for the query tests: genesis plus 24 blocks of random events."""
    built = build_chain(tmp_path_factory.mktemp("chain") / "data", blocks=24, seed=7)
    yield built
    built.store.close()


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Chain]:
    """A fresh writable chain: genesis plus 3 small blocks."""
    built = build_chain(tmp_path / "data", blocks=3, seed=11, sizes=(2, 8))
    yield built
    built.store.close()


# -- append and read round trip ------------------------------------------------------------


def test_heights_are_contiguous_and_seqs_gap_free_across_blocks(chain: Chain) -> None:
    store, headers, envs = chain
    stored = store.blocks()
    assert stored == headers
    assert [h.height for h in stored] == list(range(len(headers)))
    assert stored[0].first_seq == 1
    assert stored[0].prev_hash == genesis_prev_hash(CHAIN_ID)
    for prev, cur in zip(stored, stored[1:], strict=False):
        assert cur.first_seq == prev.last_seq + 1
        assert cur.prev_hash == prev.hash
        assert cur.time >= prev.time
    for h in headers:
        assert store.block(h.height) == h
        assert h.state_hash == fake_state_hash(h.height)
    last = headers[-1]
    assert store.head == Head(last.height, last.last_seq, last.hash, last.time)
    assert store.genesis_hash == headers[0].hash
    stats = store.stats()
    assert (stats["events"], stats["blocks"], stats["archived_events"]) == (
        len(envs), len(headers), 0)
    assert [e.seq for e in store.events()] == list(range(1, len(envs) + 1))


def test_events_read_back_exactly_as_appended(chain: Chain) -> None:
    store, _, envs = chain
    got = store.events()
    assert got == envs
    assert [type(e.event) for e in got] == [type(e.event) for e in envs]
    assert {type(e.event).TYPE_CODE for e in got} == set(BY_CODE), "every type is stored"
    assert list(store.iter_events(batch=7)) == envs
    # The stored bytes are exactly the codec's encoding of what was appended.
    assert list(store.iter_raw(1, len(envs))) == [(e.seq, encode(e)) for e in envs]


@pytest.mark.parametrize("lo,hi", [
    (None, None), (0, 0), (3, 3), (3, 9), (None, 5), (20, None), (9, 3), (23, 40),
    (30, 40), (-5, 2), (None, -1), (24, 24),
])
def test_height_range_reads_are_inclusive(chain: Chain, lo: int | None, hi: int | None) -> None:
    store, headers, envs = chain
    want = expected(envs, lo=lo, hi=hi)
    assert store.events(lo, hi) == want
    assert list(store.iter_events(lo, hi, batch=5)) == want
    assert store.blocks(lo, hi) == [h for h in headers
                                    if (lo is None or h.height >= lo)
                                    and (hi is None or h.height <= hi)]


@pytest.mark.parametrize("lo,hi", [(1, 1), (1, 60), (57, 140), (100, 99), (200, 10_000)])
def test_seq_range_reads_return_the_stored_bytes(chain: Chain, lo: int, hi: int) -> None:
    store, _, envs = chain
    want = [(e.seq, encode(e)) for e in envs if lo <= e.seq <= hi]
    assert list(store.iter_raw(lo, hi)) == want
    assert list(store.iter_raw(lo, hi, batch=3)) == want


def test_height_of_seq_names_the_block_holding_it(chain: Chain) -> None:
    store, _, envs = chain
    for env in envs[::17]:
        assert store.height_of_seq(env.seq) == env.height
    with pytest.raises(NotFound):
        store.height_of_seq(len(envs) + 1)


def test_index_queries_return_exactly_the_matching_events(chain: Chain) -> None:
    store, headers, envs = chain
    for acct in ACCOUNTS:
        assert store.events_by(account=acct) == expected(envs, account=acct)
        assert store.events_by(account=acct, from_height=4, to_height=4) == expected(
            envs, account=acct, lo=4, hi=4)
    for mkt in MARKETS:
        assert store.events_by(market=mkt) == expected(envs, market=mkt)
    for code in BY_CODE:
        assert store.events_by(type_code=code) == expected(envs, type_code=code)
    assert store.events_by(account="nobody") == []
    assert store.events_by(market="DOGE-USD") == []
    # Every indexed event is found under each of its accounts and markets.
    assert sum(len(store.events_by(account=a)) for a in ACCOUNTS) == sum(
        len(accounts_of(e)) for e in envs)
    assert sum(len(store.events_by(market=m)) for m in MARKETS) == sum(
        len(markets_of(e)) for e in envs)


@settings(max_examples=150, deadline=None)
@given(
    account=st.none() | st.sampled_from([*ACCOUNTS, "nobody"]),
    market=st.none() | st.sampled_from([*MARKETS, "DOGE-USD"]),
    type_code=st.none() | st.sampled_from([*sorted(BY_CODE), 63, 127]),
    lo=st.none() | st.integers(-2, 27),
    hi=st.none() | st.integers(-2, 27),
    limit=st.none() | st.integers(1, 6),
)
def test_combined_index_queries_match_the_model(
        chain: Chain, account: str | None, market: str | None, type_code: int | None,
        lo: int | None, hi: int | None, limit: int | None) -> None:
    _assert_query_matches_the_model(chain, account, market, type_code, lo, hi, limit)


def _assert_query_matches_the_model(
        chain: Chain, account: str | None, market: str | None, type_code: int | None,
        lo: int | None, hi: int | None, limit: int | None) -> None:
    want = expected(chain.envelopes, account=account, market=market, type_code=type_code,
                    lo=lo, hi=hi)
    got = chain.store.events_by(account=account, market=market, type_code=type_code,
                                from_height=lo, to_height=hi, limit=limit)
    assert got == (want if limit is None else want[:limit])


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """Genesis plus 4 blocks of 2,000..2,600 random events, so that each market
    has more events in a block than one posting chunk holds."""
    built = build_chain(tmp_path_factory.mktemp("crowded") / "data", blocks=4, seed=13,
                        sizes=(2000, 2600))
    yield built
    built.store.close()


@settings(max_examples=60, deadline=None)
@given(
    account=st.none() | st.sampled_from(ACCOUNTS),
    market=st.none() | st.sampled_from(MARKETS),
    type_code=st.none() | st.sampled_from(sorted(BY_CODE)),
    lo=st.none() | st.integers(-1, 5),
    hi=st.none() | st.integers(-1, 5),
    limit=st.none() | st.integers(1, 600),
)
def test_combined_index_queries_over_multi_chunk_blocks_match_the_model(
        crowded: Chain, account: str | None, market: str | None, type_code: int | None,
        lo: int | None, hi: int | None, limit: int | None) -> None:
    _assert_query_matches_the_model(crowded, account, market, type_code, lo, hi, limit)


def test_events_by_with_limit_zero_returns_nothing(chain: Chain) -> None:
    # BUG (ledger/store/reads.py events_by): with an index driver the limit is
    # checked after the first match is appended, so limit=0 returns one event,
    # while the same query without a driver returns none.
    assert chain.store.events_by(limit=0) == []
    assert chain.store.events_by(type_code=type(chain.envelopes[0].event).TYPE_CODE,
                                 limit=0) == []
    assert chain.store.events_by(account=ACCOUNTS[0], limit=0) == []


# -- index posting chunks -------------------------------------------------------------------


def test_posting_chunks_split_at_the_count_and_the_offset_limits() -> None:
    run = list(range(10, 610))
    chunks = posting_chunks(run)
    # 251 offsets after the first seq fill 510 bytes, within LMDB's 511 for a dup.
    assert [len(c) for c in chunks] == [8 + 2 * MAX_CHUNK_OFFSETS] * 2 + [8 + 2 * 95]
    assert [chunk_seqs(c) for c in chunks] == [run[:252], run[252:504], run[504:]]
    span = MAX_CHUNK_SPAN
    sparse = [5, 5 + span, 6 + span, 6 + 2 * span, 7 + 2 * span, 10**12]
    assert [chunk_seqs(c) for c in posting_chunks(sparse)] == [
        [5, 5 + span], [6 + span, 6 + 2 * span], [7 + 2 * span], [10**12]]
    assert posting_chunks([7]) == [u64(7)]
    assert posting_chunks([7, 9]) == [u64(7) + (2).to_bytes(2, "big")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 70_000), min_size=1, max_size=700, unique=True),
       st.integers(0, 2**40))
def test_posting_chunks_list_every_seq_once_in_order_within_the_limits(
        offsets: list[int], base: int) -> None:
    seqs = sorted(base + o for o in offsets)
    chunks = posting_chunks(seqs)
    assert [s for c in chunks for s in chunk_seqs(c)] == seqs
    for c in chunks:
        listed = chunk_seqs(c)
        assert len(c) <= 511 and listed[-1] - listed[0] <= MAX_CHUNK_SPAN
        assert chunk_last(c) == listed[-1]
    # The writer's batch form is the same layout, key by key in key order.
    assert index_items({b"k": seqs, b"a": seqs[:1]}) == [
        (b"a", posting_chunks(seqs[:1])[0]), *((b"k", c) for c in chunks)]


class Dense(NamedTuple):
    """`small` plus three blocks in which a key has more events than one chunk holds."""

    chain: Chain
    blocks: list[BlockHeader]
    envelopes: list[Envelope]


@pytest.fixture
def dense(small: Chain) -> Dense:
    many = [CreateAccount("bob" if i % 3 == 2 else "alice") for i in range(900)]
    headers: list[BlockHeader] = []
    envs: list[Envelope] = []
    for events in (many, [CreateAccount("alice"), CreateAccount("carol")], many[:300]):
        header, block = append_events(small.store, events)
        headers.append(header)
        envs.extend(block)
    return Dense(small, headers, envs)


def _chunks_under(store: ChainStore, attr: str, key: bytes) -> list[list[int]]:
    """The seqs of every chunk stored under `key`, in dup order."""
    db = getattr(store.dbs, attr)
    with store.shared_env.env.begin(buffers=False) as txn:
        cur = txn.cursor(db)
        if not cur.set_key(key):
            return []
        return [chunk_seqs(c) for c in cur.iternext_dup()]


def test_a_key_with_more_events_in_a_block_than_a_chunk_holds_gets_several_chunks(
        dense: Dense) -> None:
    store = dense.chain.store
    first = dense.blocks[0]
    alice = [e.seq for e in dense.envelopes if e.height == first.height
             and e.event.acct == "alice"]
    assert len(alice) > 2 * (MAX_CHUNK_OFFSETS + 1)
    in_first = [c for c in _chunks_under(store, "by_account", b"alice")
                if first.first_seq <= c[0] <= first.last_seq]
    assert in_first == [alice[:252], alice[252:504], alice[504:]]
    # Every event of the dense blocks is a CreateAccount: runs of 252 seqs per block.
    code = bytes((CreateAccount.TYPE_CODE,))
    assert [c for c in _chunks_under(store, "by_type", code) if c[0] >= first.first_seq] == [
        list(range(lo, min(lo + 252, h.last_seq + 1)))
        for h in dense.blocks for lo in range(h.first_seq, h.last_seq + 1, 252)]
    assert verify_store(store).ok


@pytest.mark.parametrize("query", [
    {"account": "alice"}, {"type_code": CreateAccount.TYPE_CODE},
    {"account": "bob", "type_code": CreateAccount.TYPE_CODE}, {"account": "carol"}],
    ids=["account", "type", "account and type", "rare account"])
def test_events_by_across_chunk_boundaries_honours_heights_and_limit(
        dense: Dense, query: dict[str, Any]) -> None:
    store = dense.chain.store
    every = dense.chain.envelopes + dense.envelopes
    h1, h2, h3 = (h.height for h in dense.blocks)
    for lo, hi in [(None, None), (h1, h1), (h1, h2), (h2, h3), (h3, None), (h2, h2),
                   (None, h1 - 1), (h1 - 1, h1)]:
        want = expected(every, **query, lo=lo, hi=hi)
        for limit in (None, 1, 251, 252, 253, 300, 504, 505, 10_000):
            got = store.events_by(**query, from_height=lo, to_height=hi, limit=limit)
            assert got == want[:limit], (lo, hi, limit)


def test_an_index_walk_from_any_seq_lists_exactly_the_seqs_at_or_above_it(
        dense: Dense) -> None:
    # Height ranges give block-aligned seqs, which never cut a chunk; the walk
    # must be exact from a seq inside a chunk too.
    store = dense.chain.store
    alice = [e.seq for e in dense.chain.envelopes + dense.envelopes
             if "alice" in accounts_of(e)]
    hi = store.head.seq
    starts = sorted({1, *range(alice[0] - 2, alice[-1] + 3, 7),
                     *(s + d for s in alice[::84] for d in (-1, 0, 1))})

    def walk(txn: Any, lo: int, top: int) -> list[int]:
        cur = txn.cursor(store.dbs.by_account)
        return list(reads._indexed_seqs(cur, b"alice", lo, top))

    for lo in starts:
        for top in (hi, lo + 300):
            got = store._read(lambda txn, a=lo, b=top: walk(txn, a, b))
            assert got == [s for s in alice if lo <= s <= top], (lo, top)
    assert store._read(lambda txn: list(reads._indexed_seqs(
        txn.cursor(store.dbs.by_account), b"nobody", 1, hi))) == []


def test_truncate_moves_every_chunk_above_the_cut_unchanged_into_the_branch(
        dense: Dense) -> None:
    store = dense.chain.store
    target = dense.blocks[1].height  # keeps the first dense block, archives the last
    cut = dense.blocks[1].last_seq
    before = store_image(store).tables
    branch = store.truncate_to(target, reason="r", operator="o")
    after = store_image(store).tables
    for name in ("by_account", "by_market", "by_type"):
        assert after[name] == [(k, c) for k, c in before[name] if read_u64(c) <= cut], name
        assert after["arch_" + name] == [
            (u32(branch) + k, c) for k, c in before[name] if read_u64(c) > cut], name
    orphaned = [e for e in dense.envelopes if e.seq > cut]
    kept = dense.chain.envelopes + [e for e in dense.envelopes if e.seq <= cut]
    for query in ({"account": "alice"}, {"account": "bob"}, {"account": "carol"},
                  {"type_code": CreateAccount.TYPE_CODE}):
        assert store.events_by(**query) == expected(kept, **query)
        assert store.events_by(**query, branch=branch) == expected(orphaned, **query)
        assert store.events_by(**query, branch=branch, limit=260) == expected(
            orphaned, **query)[:260]
    assert verify_store(store).ok
    assert verify_store(store, branch=branch).ok


def test_reopened_store_is_identical(tmp_path: Path) -> None:
    built = build_chain(tmp_path / "data", blocks=6, seed=3)
    before = store_image(built.store)
    built.store.close()
    with ChainStore.open(tmp_path / "data") as reader:
        assert not image_diff(before, store_image(reader))
        assert verify_store(reader).ok
    with ChainStore.open(tmp_path / "data", write=True) as writer:
        header, _ = append_random(writer, random.Random(1), 4)
        assert header.prev_hash == before.head.hash
        assert header.first_seq == before.head.seq + 1


def test_a_ledger_of_schema_version_1_is_refused_with_both_versions_named(
        tmp_path: Path) -> None:
    # Version 1 stored one index dup per event; this perpledger reads only chunks.
    build_chain(tmp_path / "data", blocks=1, seed=3).store.close()
    env = lmdb.open(str(tmp_path / "data"), max_dbs=64, subdir=True)
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", msgpack.packb(1), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match="schema version 1, this perpledger reads 2"):
        ChainStore.open(tmp_path / "data")


# -- invalid blocks ------------------------------------------------------------------------


class Attempt(NamedTuple):
    envelopes: list[Envelope]
    height: int
    time: int
    state_hash: Any


def _valid(store: ChainStore, n: int = 4) -> Attempt:
    head = store.head
    envs = envelopes_for(head, random_events(random.Random(99), n))
    return Attempt(envs, head.height + 1, head.time + 1, fake_state_hash(head.height + 1))


def _with_last(store: ChainStore, event: Any) -> Attempt:
    """A valid block whose LAST event is `event` (earlier events would be written first)."""
    head = store.head
    envs = envelopes_for(head, [*random_events(random.Random(5), 5), event])
    return Attempt(envs, head.height + 1, head.time + 1, fake_state_hash(head.height + 1))


def _at_height(store: ChainStore, height: int) -> Attempt:
    a = _valid(store)
    return a._replace(height=height,
                      envelopes=[replace(e, height=height) for e in a.envelopes])


def _reseq(a: Attempt, i: int, seq: int) -> Attempt:
    envs = list(a.envelopes)
    envs[i] = replace(envs[i], seq=seq)
    return a._replace(envelopes=envs)


def _field(cls: type[Any], **changes: Any) -> Any:
    return replace(random_record(cls, random.Random(1)), **changes)


class NotInCatalogue(NamedTuple):
    acct: str


INVALID: dict[str, Callable[[ChainStore], Attempt]] = {
    # The envelopes carry the block's (wrong) height, so only the height check stops it.
    "height skips one": lambda s: _at_height(s, s.head.height + 2),
    "height repeats the head": lambda s: _at_height(s, s.head.height),
    "height far below the head": lambda s: _at_height(s, 0),
    "seq gap before the first event": lambda s: Attempt(
        envelopes_for(s.head._replace(seq=s.head.seq + 1), random_events(random.Random(2), 3)),
        s.head.height + 1, s.head.time, fake_state_hash(0)),
    "seq gap inside the block": lambda s: _reseq(_valid(s), 3, s.head.seq + 9),
    "seq duplicated inside the block": lambda s: _reseq(_valid(s), 2, s.head.seq + 2),
    "seq repeats a stored one": lambda s: Attempt(
        envelopes_for(s.head._replace(seq=s.head.seq - 1), random_events(random.Random(2), 3)),
        s.head.height + 1, s.head.time, fake_state_hash(0)),
    "envelope carries another height": lambda s: (lambda a: a._replace(envelopes=[
        *a.envelopes[:-1], replace(a.envelopes[-1], height=a.height - 1)]))(_valid(s)),
    "envelope cause is not an int": lambda s: (lambda a: a._replace(envelopes=[
        *a.envelopes[:-1], replace(a.envelopes[-1], cause="1")]))(  # type: ignore[arg-type]
            _valid(s)),
    "field of the wrong type": lambda s: _with_last(s, CreateAccount(5)),  # type: ignore[arg-type]
    "bool where an int is expected": lambda s: _with_last(s, _field(Deposit, amount_qq=True)),
    "enum value out of range": lambda s: _with_last(s, _field(PlaceOrder, side=99)),
    "nested record of the wrong type": lambda s: _with_last(s, _field(ListMarket, params=5)),
    "record not in the catalogue": lambda s: _with_last(s, NotInCatalogue("alice")),
    "plain tuple instead of a record": lambda s: _with_last(s, ("alice",)),
    "state hash of 31 bytes": lambda s: _valid(s)._replace(state_hash=bytes(31)),
    "state hash of 33 bytes": lambda s: _valid(s)._replace(state_hash=bytes(33)),
    "state hash that is not bytes": lambda s: _valid(s)._replace(state_hash="0" * 32),
    "empty block": lambda s: _valid(s)._replace(envelopes=[]),
    "time going backwards": lambda s: _valid(s)._replace(time=s.head.time - 1),
    "time that is not an int": lambda s: _valid(s)._replace(
        time=float(s.head.time + 1)),  # type: ignore[arg-type]
    "account id longer than 255 bytes": lambda s: _with_last(s, CreateAccount("x" * 256)),
    "market id longer than an LMDB key": lambda s: _with_last(
        s, _field(ListMarket, mkt="é" * 300)),
    # BUG: the two below leak OverflowError / UnicodeEncodeError from msgpack
    # (prepare_block only turns CodecError into BlockRejected).
    "int beyond 64 bits": lambda s: _with_last(s, _field(Deposit, amount_qq=2**64)),
    "lone surrogate in a string": lambda s: _with_last(s, _field(Deposit, ext_ref="\ud800")),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_block_is_rejected_and_leaves_the_store_identical(small: Chain,
                                                                  case: str) -> None:
    store = small.store
    attempt = INVALID[case](store)
    before = store_image(store)
    with pytest.raises(Exception) as info:  # noqa: B017  (the type is asserted below)
        store.append_block(attempt.envelopes, height=attempt.height, time=attempt.time,
                           state_hash=attempt.state_hash)
    assert_unchanged(before, store)
    assert isinstance(info.value, BlockRejected | CodecError), (
        f"append_block raised {type(info.value).__module__}.{type(info.value).__name__} "
        f"({info.value}); its contract is BlockRejected (or CodecError)")
    # Nothing is wedged: the writer's view of the head is intact and the next block lands.
    header, _ = append_random(store, random.Random(4), 3)
    assert header.height == before.head.height + 1
    assert header.first_seq == before.head.seq + 1
    assert header.prev_hash == before.head.hash
    assert verify_store(store).ok


def test_a_journal_record_is_written_with_its_block_and_names_it(small: Chain) -> None:
    store = small.store
    attempt = _valid(store)
    entry = JournalEntry("refunds", "ops-alice", "INC-7", {"accounts": 3})
    header = store.append_block(attempt.envelopes, height=attempt.height, time=attempt.time,
                                state_hash=attempt.state_hash, journal=entry)
    rec = store.journal()[-1]
    assert (rec["action"], rec["operator"], rec["reason"], rec["details"]) == (
        "refunds", "ops-alice", "INC-7", {"accounts": 3})
    assert (rec["head_height"], rec["head_hash"]) == (header.height, header.hash.hex())


@pytest.mark.parametrize("case", ["height skips one", "int beyond 64 bits"])
def test_a_rejected_block_writes_no_journal_record(small: Chain, case: str) -> None:
    store = small.store
    attempt = INVALID[case](store)
    before = store_image(store)
    with pytest.raises(BlockRejected):
        store.append_block(attempt.envelopes, height=attempt.height, time=attempt.time,
                           state_hash=attempt.state_hash,
                           journal=JournalEntry("refunds", "ops", "never written"))
    assert_unchanged(before, store)


def test_empty_ids_index_nothing_and_255_byte_ids_are_indexed(small: Chain) -> None:
    store = small.store
    long_acct, long_mkt = "a" * 255, "é" * 127 + "x"
    _, envs = append_events(store, [
        CreateAccount(""), CreateAccount(long_acct), _field(ListMarket, mkt=""),
        _field(ListMarket, mkt=long_mkt)])
    assert store.events_by(account=long_acct) == [envs[1]]
    assert store.events_by(market=long_mkt) == [envs[3]]
    code = BY_NAME["CreateAccount"].TYPE_CODE
    assert store.events_by(type_code=code, from_height=envs[0].height) == envs[:2]
    assert verify_store(store).ok
    store.truncate_to(envs[0].height - 1, reason="r", operator="o")
    assert verify_store(store, branch=1).ok
    assert store.events_by(account=long_acct, branch=1) == [envs[1]]


@pytest.mark.parametrize("query", [{"account": ""}, {"market": ""}, {"account": "x" * 600}],
                         ids=["empty account", "empty market", "account too long to store"])
def test_a_query_for_an_id_that_cannot_be_indexed_returns_nothing(
        small: Chain, query: dict[str, str]) -> None:
    # BUG (ledger/store/reads.py events_by): the empty id (and one longer than an
    # LMDB key) is passed to the cursor as is, which raises lmdb.BadValsizeError
    # instead of answering [] (nothing can be indexed under such an id).
    append_events(small.store, [CreateAccount(""), _field(ListMarket, mkt="")])
    assert small.store.events_by(**query) == []  # type: ignore[arg-type]


def test_a_read_only_store_refuses_every_write(small: Chain, tmp_path: Path) -> None:
    small.store.close()
    with ChainStore.open(tmp_path / "data") as reader:
        before = store_image(reader)
        a = _valid(reader)
        with pytest.raises(StoreError):
            reader.append_block(a.envelopes, height=a.height, time=a.time,
                                state_hash=a.state_hash)
        with pytest.raises(StoreError):
            reader.truncate_to(1, reason="r", operator="o")
        with pytest.raises(StoreError):
            reader.put_snapshot(1, fake_state_hash(1), b"state")
        assert_unchanged(before, reader)


# -- verify_store against corruption written behind the store's back ---------------------

BAD_HEIGHT = 5


@pytest.fixture
def eight(tmp_path: Path) -> Iterator[Chain]:
    """Genesis plus 8 blocks, each holding one event of every registered type."""
    store = ChainStore.create(tmp_path / "data", chain_id=CHAIN_ID)
    rng = random.Random(21)
    headers: list[BlockHeader] = []
    envelopes: list[Envelope] = []
    for _ in range(9):
        events = [random_record(cls, rng) for cls in EVENT_TYPES]
        rng.shuffle(events)
        header, envs = append_events(store, events)
        headers.append(header)
        envelopes.extend(envs)
    yield Chain(store, headers, envelopes)
    store.close()


def _in_block(chain: Chain, height: int, want: Callable[[Envelope], bool]) -> Envelope:
    return next(e for e in chain.envelopes if e.height == height and want(e))


def test_verify_store_passes_on_a_good_chain(eight: Chain) -> None:
    report = verify_store(eight.store)
    assert report.ok, report
    assert (report.blocks, report.events, report.height) == (9, len(eight.envelopes), None)


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes((data[-1] ^ 0x01,))


EVENT_CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "last payload byte flipped": _flip_last_byte,
    "type code changed to an unknown one": lambda d: d[:1] + bytes((0x7E,)) + d[2:],
    "type code changed to another type": lambda d: d[:1] + bytes((
        next(c for c in BY_CODE if c != d[1] and c < 0x80),)) + d[2:],
    "event height rewritten": lambda d: msgpack.packb(
        (lambda a: [*a[:2], a[2] + 1, *a[3:]])(msgpack.unpackb(d)), use_bin_type=True),
    "one byte appended": lambda d: d + b"\x00",
}


@pytest.mark.parametrize("case", list(EVENT_CORRUPTIONS))
def test_verify_store_names_the_height_of_a_changed_event(eight: Chain, case: str) -> None:
    store = eight.store
    # 2..11 fields: a fixarray, so byte 1 is the type code.
    victim = _in_block(eight, BAD_HEIGHT, lambda e: 1 < len(field_names(type(e.event))) <= 11)
    key = u64(victim.seq)

    def corrupt(txn: lmdb.Transaction) -> None:
        stored = txn.get(key, db=store.dbs.events)
        assert stored is not None
        data = bytes(stored)
        changed = EVENT_CORRUPTIONS[case](data)
        assert changed != data
        txn.put(key, changed, db=store.dbs.events)

    raw_write(store, corrupt)
    report = verify_store(store)
    assert not report.ok
    assert report.height == BAD_HEIGHT, report


def _header_change(field: str) -> Callable[[BlockHeader], bytes]:
    def change(h: BlockHeader) -> bytes:
        value = getattr(h, field)
        new: Any = value + 1 if isinstance(value, int) else _flip_last_byte(value)
        return encode_header(h._replace(**{field: new}))
    return change


HEADER_CORRUPTIONS: dict[str, Callable[[BlockHeader], bytes]] = {
    **{f"{f} changed": _header_change(f) for f in BlockHeader._fields},
    "a raw byte flipped mid-header": lambda h: (lambda d: d[:20] + bytes((d[20] ^ 0x40,))
                                                + d[21:])(encode_header(h)),
    "truncated header": lambda h: encode_header(h)[:-5],
}


@pytest.mark.parametrize("case", list(HEADER_CORRUPTIONS))
def test_verify_store_names_the_height_of_a_changed_header(eight: Chain, case: str) -> None:
    store = eight.store
    original = store.block(BAD_HEIGHT)
    raw_write(store, lambda txn: txn.put(u64(BAD_HEIGHT), HEADER_CORRUPTIONS[case](original),
                                         db=store.dbs.blocks))
    report = verify_store(store)
    assert not report.ok
    assert report.height == BAD_HEIGHT, report


@pytest.mark.parametrize("field,found_at", [
    ("prev_hash", BAD_HEIGHT), ("events_hash", BAD_HEIGHT), ("first_seq", BAD_HEIGHT),
    ("count", BAD_HEIGHT),
    # A consistent forgery of what the block itself cannot check is caught by the
    # next block's link to it.
    ("state_hash", BAD_HEIGHT + 1), ("time", BAD_HEIGHT + 1),
])
def test_verify_store_catches_a_header_forged_with_its_own_hash_recomputed(
        eight: Chain, field: str, found_at: int) -> None:
    store = eight.store
    original = store.block(BAD_HEIGHT)
    value = getattr(original, field)
    new: Any = value + 1 if isinstance(value, int) else _flip_last_byte(value)
    forged = original._replace(**{field: new})
    rehashed = make_header(*forged[:7])
    raw_write(store, lambda txn: txn.put(u64(BAD_HEIGHT), encode_header(rehashed),
                                         db=store.dbs.blocks))
    report = verify_store(store)
    assert not report.ok
    assert report.height == found_at, report


def test_verify_store_catches_a_forged_head_block(eight: Chain) -> None:
    store = eight.store
    last = store.block(store.head.height)
    forged = make_header(*last._replace(state_hash=bytes(32))[:7])
    raw_write(store, lambda txn: txn.put(u64(last.height), encode_header(forged),
                                         db=store.dbs.blocks))
    report = verify_store(store)
    assert not report.ok
    assert report.height == last.height, report


Corruption = Callable[[Chain, lmdb.Transaction], None]


def _chunk_in_block(txn: lmdb.Transaction, db: Any, key: bytes, height: int,
                    chain: Chain) -> bytes:
    """The (first) posting chunk under `key` listing seqs of block `height`."""
    hdr = chain.headers[height]
    cur = txn.cursor(db)
    assert cur.set_range_dup(key, u64(hdr.first_seq)), key
    chunk = bytes(cur.value())
    assert hdr.first_seq <= read_u64(chunk) <= hdr.last_seq, key
    return chunk


def _put_new(txn: lmdb.Transaction, db: Any, key: bytes, chunk: bytes) -> None:
    assert txn.put(key, chunk, db=db, dupdata=False)  # a new dup, never a no-op


def _index_cases() -> dict[str, Corruption]:
    """name -> a corruption of block BAD_HEIGHT's index chunks, written in one txn."""

    def acct_event(c: Chain) -> Envelope:
        return _in_block(c, BAD_HEIGHT, lambda e: bool(accounts_of(e)))

    def mkt_event(c: Chain) -> Envelope:
        return _in_block(c, BAD_HEIGHT, lambda e: bool(markets_of(e)))

    def no_alice(c: Chain) -> Envelope:
        return _in_block(c, BAD_HEIGHT, lambda e: "alice" not in accounts_of(e))

    def acct_of(e: Envelope) -> bytes:
        return min(accounts_of(e)).encode()

    def other_code(e: Envelope) -> bytes:
        return bytes((next(c for c in sorted(BY_CODE) if c != type(e.event).TYPE_CODE),))

    def code_of(e: Envelope) -> bytes:
        return bytes((type(e.event).TYPE_CODE,))

    def busy_account(c: Chain) -> tuple[bytes, list[int]]:
        """An account with several events in the block, and their seqs."""
        seqs: dict[str, list[int]] = {}
        for e in c.envelopes:
            if e.height == BAD_HEIGHT:
                for a in accounts_of(e):
                    seqs.setdefault(a, []).append(e.seq)
        acct = min(a for a in seqs if len(seqs[a]) > 1)
        return acct.encode(), seqs[acct]

    def extra(attr: str, key: Callable[[Chain], bytes],
              seq: Callable[[Chain], int]) -> Corruption:
        return lambda c, txn: _put_new(txn, getattr(c.store.dbs, attr), key(c), u64(seq(c)))

    def missing(attr: str, key: Callable[[Chain], bytes]) -> Corruption:
        def corrupt(c: Chain, txn: lmdb.Transaction) -> None:
            db = getattr(c.store.dbs, attr)
            assert txn.delete(key(c), _chunk_in_block(txn, db, key(c), BAD_HEIGHT, c), db=db)
        return corrupt

    def replaced(attr: str, key: Callable[[Chain], bytes], new_key: Callable[[Chain], bytes],
                 change: Callable[[Chain, bytes], bytes]) -> Corruption:
        """Delete a key's chunk of the block; store `change(chunk)` under `new_key`."""
        def corrupt(c: Chain, txn: lmdb.Transaction) -> None:
            db = getattr(c.store.dbs, attr)
            chunk = _chunk_in_block(txn, db, key(c), BAD_HEIGHT, c)
            assert txn.delete(key(c), chunk, db=db)
            new = change(c, chunk)
            assert (new_key(c), new) != (key(c), chunk)
            _put_new(txn, db, new_key(c), new)
        return corrupt

    def moved_to(key: Callable[[Chain], bytes]) -> Callable[[Chain], bytes]:
        """Another account than those of `acct_event`, for a chunk moved to the wrong key."""
        return lambda c: min(a for a in ACCOUNTS if a not in accounts_of(acct_event(c))).encode()

    def same(c: Chain, chunk: bytes) -> bytes:
        return chunk

    return {
        "extra chunk under a new account": extra(
            "by_account", lambda c: b"zz-stray", lambda c: acct_event(c).seq),
        "extra chunk under a known account": extra(
            "by_account", lambda c: b"alice", lambda c: no_alice(c).seq),
        "extra market chunk": extra(
            "by_market", lambda c: b"DOGE-USD", lambda c: mkt_event(c).seq),
        "extra type chunk": extra(
            "by_type", lambda c: other_code(acct_event(c)), lambda c: acct_event(c).seq),
        # A key the event owns in ANOTHER index: judged against this index's keys.
        "extra market chunk under the event's own account name": extra(
            "by_market", lambda c: acct_of(acct_event(c)), lambda c: acct_event(c).seq),
        # Every seq it lists is owned by its key, but another chunk already lists it.
        "extra chunk repeating a seq its key's chunk lists": extra(
            "by_account", lambda c: busy_account(c)[0], lambda c: busy_account(c)[1][1]),
        "missing account chunk": missing("by_account", lambda c: acct_of(acct_event(c))),
        "missing market chunk": missing("by_market",
                                        lambda c: min(markets_of(mkt_event(c))).encode()),
        "missing type chunk": missing("by_type", lambda c: code_of(acct_event(c))),
        "type chunk pointing at a wrong seq": replaced(
            "by_type", lambda c: code_of(acct_event(c)), lambda c: code_of(acct_event(c)),
            lambda c, chunk: u64(read_u64(chunk) + 1 if read_u64(chunk) < c.headers[
                BAD_HEIGHT].last_seq else read_u64(chunk) - 1)),
        "account chunk listing one more seq": replaced(
            "by_account", lambda c: b"alice", lambda c: b"alice",
            lambda c, chunk: posting_chunks(sorted([*chunk_seqs(chunk), no_alice(c).seq]))[0]),
        "account chunk missing its last seq": replaced(
            "by_account", lambda c: busy_account(c)[0], lambda c: busy_account(c)[0],
            lambda c, chunk: posting_chunks(chunk_seqs(chunk)[:-1])[0]),
        "account chunk under the wrong account": replaced(
            "by_account", lambda c: acct_of(acct_event(c)), moved_to(acct_of), same),
        "type chunk under the wrong type code": replaced(
            "by_type", lambda c: code_of(acct_event(c)), lambda c: other_code(acct_event(c)),
            same),
    }


INDEX_CORRUPTIONS = _index_cases()


@pytest.mark.parametrize("case", list(INDEX_CORRUPTIONS))
def test_verify_store_names_the_height_of_a_changed_index_chunk(eight: Chain,
                                                                case: str) -> None:
    store = eight.store
    assert verify_store(store).ok
    raw_write(store, lambda txn: INDEX_CORRUPTIONS[case](eight, txn))
    report = verify_store(store)
    assert not report.ok
    assert report.height == BAD_HEIGHT, report


def test_verify_store_catches_a_stray_event_beyond_the_head(eight: Chain) -> None:
    # BUG (ledger/store/verify.py): events past the head's seq are never looked
    # at, and append_block's `putmulti(append=True)` then silently keeps the
    # stray bytes instead of the block's own (MDB_APPEND returns KEYEXIST, which
    # putmulti counts as "not added"; nobody checks the count).
    store = eight.store
    head = store.head
    stray = Envelope(head.seq + 1, head.height + 1, 0, CreateAccount("mallory"))
    raw_write(store, lambda txn: txn.put(u64(stray.seq), encode(stray), db=store.dbs.events))
    assert not verify_store(store).ok, "an event beyond the head passed verification"


def test_append_over_a_stray_event_stores_the_blocks_own_bytes(eight: Chain) -> None:
    store = eight.store
    head = store.head
    stray = Envelope(head.seq + 1, head.height + 1, 0, CreateAccount("mallory"))
    raw_write(store, lambda txn: txn.put(u64(stray.seq), encode(stray), db=store.dbs.events))
    try:
        _, envs = append_events(store, [CreateAccount("alice"), CreateAccount("bob")])
    except LedgerError:
        return  # refusing the block is a correct answer too
    assert list(store.iter_raw(head.seq + 1, head.seq + 2)) == [
        (e.seq, encode(e)) for e in envs]
    assert verify_store(store).ok


# -- truncate with archive ----------------------------------------------------------------

SNAPSHOT_HEIGHTS = (5, 10, 15, 20)
TARGET = 10


@pytest.fixture
def twenty(tmp_path: Path) -> Iterator[Chain]:
    """Genesis plus 20 blocks of 10..40 random events, snapshots at 5, 10, 15, 20."""
    built = build_chain(tmp_path / "data", blocks=20, seed=33, sizes=(10, 40))
    for h in SNAPSHOT_HEIGHTS:
        built.store.put_snapshot(h, fake_state_hash(h), f"state at {h}".encode())
    yield built
    built.store.close()


def test_truncate_archives_exactly_the_orphaned_suffix(twenty: Chain) -> None:
    store, headers, envs = twenty
    old_head = store.head
    raw_before = list(store.iter_raw(1, old_head.seq))
    cut = headers[TARGET].last_seq
    kept = [e for e in envs if e.seq <= cut]
    orphaned = [e for e in envs if e.seq > cut]

    branch = store.truncate_to(TARGET, reason="bad upgrade", operator="ops-alice",
                               details={"ticket": "INC-1"})

    assert branch == 1
    base = headers[TARGET]
    assert store.head == Head(TARGET, cut, base.hash, base.time)
    # The same events, byte for byte, moved: canonical keeps the prefix, branch the rest.
    assert list(store.iter_raw(1, old_head.seq + 10)) == [r for r in raw_before if r[0] <= cut]
    assert list(store.iter_raw(1, old_head.seq + 10, branch=1)) == [
        r for r in raw_before if r[0] > cut]
    stats = store.stats()
    assert (stats["events"], stats["blocks"], stats["archived_events"]) == (
        cut, TARGET + 1, len(orphaned))
    assert store.blocks() == headers[:TARGET + 1]
    assert store.blocks(branch=1) == headers[TARGET + 1:]
    assert store.block(15, branch=1) == headers[15]
    with pytest.raises(NotFound):
        store.block(TARGET + 1)
    assert store.events() == kept
    assert store.events(branch=1) == orphaned
    assert store.events(12, 14, branch=1) == expected(envs, lo=12, hi=14)
    # Canonical indexes no longer answer with orphaned events; the branch's do.
    for acct in (*ACCOUNTS, None):
        for mkt in (*MARKETS, None):
            assert store.events_by(account=acct, market=mkt) == expected(
                kept, account=acct, market=mkt)
            assert store.events_by(account=acct, market=mkt, branch=1) == expected(
                orphaned, account=acct, market=mkt)
    for code in BY_CODE:
        assert store.events_by(type_code=code) == expected(kept, type_code=code)
        assert store.events_by(type_code=code, branch=1, from_height=13) == expected(
            orphaned, type_code=code, lo=13)
    tables = store_image(store).tables
    for name in ("by_account", "by_market", "by_type"):
        assert all(max(chunk_seqs(c)) <= cut for _, c in tables[name]), name
        assert all(k.startswith(u32(1)) and min(chunk_seqs(c)) > cut
                   for k, c in tables["arch_" + name]), name
    # Branch record, snapshots, journal.
    record = store.branch(1)
    assert store.branches() == [record]
    assert {k: record[k] for k in ("branch", "base_height", "base_hash", "first_height",
                                   "last_height", "first_seq", "last_seq", "events",
                                   "blocks", "head_hash", "reason", "operator",
                                   "snapshots_dropped")} == {
        "branch": 1, "base_height": TARGET, "base_hash": base.hash,
        "first_height": TARGET + 1, "last_height": old_head.height, "first_seq": cut + 1,
        "last_seq": old_head.seq, "events": len(orphaned), "blocks": 20 - TARGET,
        "head_hash": old_head.hash, "reason": "bad upgrade", "operator": "ops-alice",
        "snapshots_dropped": [15, 20]}
    assert [s.height for s in store.snapshots()] == [5, 10]
    with pytest.raises(NotFound):
        store.snapshot(15)
    assert store.snapshot(10).data == b"state at 10"
    entry = store.journal()[-1]
    assert (entry["action"], entry["operator"], entry["reason"]) == (
        "truncate", "ops-alice", "bad upgrade")
    assert entry["details"] == {
        "ticket": "INC-1", "branch": 1, "to_height": TARGET,
        "from_head_height": old_head.height, "from_head_hash": old_head.hash.hex(),
        "new_head_hash": base.hash.hex(), "events_archived": len(orphaned)}
    assert (entry["head_height"], entry["head_hash"]) == (TARGET, base.hash.hex())
    assert verify_store(store).ok
    branch_report = verify_store(store, branch=1)
    assert branch_report.ok, branch_report
    assert (branch_report.blocks, branch_report.events) == (20 - TARGET, len(orphaned))


def test_append_after_truncate_continues_from_the_target(twenty: Chain) -> None:
    store, headers, envs = twenty
    store.truncate_to(TARGET, reason="bad upgrade", operator="ops")
    branch1 = store.events(branch=1)
    rng = random.Random(8)
    new: list[Envelope] = []
    for i in range(3):
        header, block_envs = append_random(store, rng, 6)
        new.extend(block_envs)
        assert header.height == TARGET + 1 + i
        if i == 0:
            assert header.first_seq == headers[TARGET].last_seq + 1
            assert header.prev_hash == headers[TARGET].hash
    assert verify_store(store).ok
    assert verify_store(store, branch=1).ok
    # A second rollback below the first target: branch 2 holds old 9..10 and new 11..13.
    assert store.truncate_to(8, reason="again", operator="ops") == 2
    assert [h.height for h in store.blocks(branch=2)] == [9, 10, 11, 12, 13]
    assert store.events(branch=2) == [e for e in envs if e.height in (9, 10)] + new
    assert store.events(branch=1) == branch1
    header, _ = append_random(store, rng, 2)
    assert (header.height, header.first_seq) == (9, headers[8].last_seq + 1)
    for branch in (None, 1, 2):
        report = verify_store(store, branch=branch)
        assert report.ok, (branch, report)
    assert [j["details"]["branch"] for j in store.journal() if j["action"] == "truncate"] == [
        1, 2]
    assert [b["branch"] for b in store.branches()] == [1, 2]


def test_truncate_with_then_append_writes_the_first_block_of_the_new_branch(
        twenty: Chain) -> None:
    store, headers, envs = twenty
    base = headers[TARGET]
    first = envelopes_for(Head(TARGET, base.last_seq, base.hash, base.time),
                          random_events(random.Random(12), 5))
    branch = store.truncate_to(TARGET, reason="rollback", operator="ops",
                               then_append=first, block_time=base.time + 7,
                               state_hash=fake_state_hash(TARGET + 1))
    assert branch == 1
    header = store.block(TARGET + 1)
    assert (header.first_seq, header.count, header.prev_hash, header.time) == (
        base.last_seq + 1, 5, base.hash, base.time + 7)
    assert store.head == Head(TARGET + 1, base.last_seq + 5, header.hash, base.time + 7)
    assert store.events(TARGET + 1) == first
    assert store.events(branch=1) == [e for e in envs if e.seq > base.last_seq]
    assert store.branch(1)["last_height"] == 20
    assert verify_store(store).ok
    assert verify_store(store, branch=1).ok
    header2, _ = append_random(store, random.Random(2), 3)
    assert header2.prev_hash == header.hash


def _then_append_cases(chain: Chain) -> dict[str, dict[str, Any]]:
    base = chain.headers[TARGET]
    ok = envelopes_for(Head(TARGET, base.last_seq, base.hash, base.time),
                       random_events(random.Random(12), 3))
    good = {"height": TARGET, "then_append": ok, "block_time": base.time,
            "state_hash": fake_state_hash(TARGET + 1)}
    return {
        "seq gap in the first block": {**good, "then_append": [
            replace(e, seq=e.seq + 1) for e in ok]},
        "first block carries the old head's height": {**good, "then_append": [
            replace(e, height=21) for e in ok]},
        "bad event in the first block": {**good, "then_append": [
            *ok[:-1], replace(ok[-1], event=CreateAccount(5))]},  # type: ignore[arg-type]
        "time before the target block": {**good, "block_time": base.time - 1},
        "bad state hash": {**good, "state_hash": b"short"},
        "no block time": {**good, "block_time": None},
        "no state hash": {**good, "state_hash": None},
        "empty first block": {**good, "then_append": []},
        "target is the head": {**good, "height": 20, "then_append": envelopes_for(
            chain.store.head, random_events(random.Random(1), 2)), "block_time": 10**9},
    }


THEN_APPEND_CASES = (
    "seq gap in the first block", "first block carries the old head's height",
    "bad event in the first block", "time before the target block", "bad state hash",
    "no block time", "no state hash", "empty first block", "target is the head")


@pytest.mark.parametrize("case", THEN_APPEND_CASES)
def test_truncate_with_an_invalid_first_block_changes_nothing(twenty: Chain,
                                                              case: str) -> None:
    store = twenty.store
    cases = _then_append_cases(twenty)
    assert set(cases) == set(THEN_APPEND_CASES)
    kwargs = cases[case]
    height = kwargs.pop("height")
    before = store_image(store)
    with pytest.raises(LedgerError):
        store.truncate_to(height, reason="rollback", operator="ops", **kwargs)
    assert_unchanged(before, store)


@pytest.mark.parametrize("target", [20, 21, 500, -1, -7],
                         ids=["head", "above head", "far above head", "-1", "-7"])
def test_truncate_to_head_or_a_missing_height_changes_nothing(twenty: Chain,
                                                              target: int) -> None:
    store = twenty.store
    before = store_image(store)
    with pytest.raises(NotFound):
        store.truncate_to(target, reason="r", operator="o")
    assert_unchanged(before, store)
    with pytest.raises(NotFound):
        store.branch(1)


@pytest.mark.parametrize("reason,operator", [("", "ops"), ("why", "")])
def test_truncate_without_reason_or_operator_changes_nothing(twenty: Chain, reason: str,
                                                             operator: str) -> None:
    before = store_image(twenty.store)
    with pytest.raises(StoreError):
        twenty.store.truncate_to(5, reason=reason, operator=operator)
    assert_unchanged(before, twenty.store)


def test_reads_of_an_unknown_branch_raise_not_found(twenty: Chain) -> None:
    with pytest.raises(NotFound, match="no archived branch 3"):
        twenty.store.events(branch=3)
    with pytest.raises(NotFound):
        twenty.store.blocks(branch=3)
    with pytest.raises(NotFound):
        twenty.store.events_by(account="alice", branch=3)


# -- snapshots ----------------------------------------------------------------------------


def test_snapshots_put_get_list_and_nearest(small: Chain) -> None:
    store = small.store
    for h in (3, 1, 2):
        info = store.put_snapshot(h, fake_state_hash(h), f"s{h}".encode() * h)
        assert (info.height, info.state_hash, info.time, info.size) == (
            h, fake_state_hash(h), small.headers[h].time, 2 * h)
    assert [(s.height, s.size) for s in store.snapshots()] == [(1, 2), (2, 4), (3, 6)]
    snap = store.snapshot(2)
    assert (snap.height, snap.state_hash, snap.data) == (2, fake_state_hash(2), b"s2s2")
    assert store.nearest_snapshot(0) is None
    assert store.nearest_snapshot(2).height == 2  # type: ignore[union-attr]
    assert store.nearest_snapshot(99).height == 3  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.snapshot(0)
    store.put_snapshot(2, fake_state_hash(2), b"retaken")
    assert store.snapshot(2).data == b"retaken"


def test_a_30_mb_snapshot_round_trips(tmp_path: Path) -> None:
    built = build_chain(tmp_path / "data", blocks=2, seed=4, map_size=64 * 1024)
    data = random.Random(30).randbytes(30 * 1024 * 1024)
    built.store.put_snapshot(2, fake_state_hash(2), data)
    assert built.store.snapshot(2).data == data
    built.store.close()
    with ChainStore.open(tmp_path / "data") as reader:
        assert reader.snapshot(2).data == data
        assert reader.snapshots()[0].size == len(data)


@pytest.mark.parametrize("height,state_hash,error", [
    (2, fake_state_hash(3), BlockRejected),
    (2, bytes(32), BlockRejected),
    (9, fake_state_hash(9), NotFound),
])
def test_a_snapshot_that_does_not_match_its_block_is_refused(
        small: Chain, height: int, state_hash: bytes, error: type[Exception]) -> None:
    before = store_image(small.store)
    with pytest.raises(error):
        small.store.put_snapshot(height, state_hash, b"state")
    assert_unchanged(before, small.store)


# -- the map grows by itself ---------------------------------------------------------------


def test_the_map_grows_by_itself_from_64_kib(tmp_path: Path) -> None:
    store = ChainStore.create(tmp_path / "data", chain_id=CHAIN_ID, map_size=64 * 1024)
    rng = random.Random(64)
    envs: list[Envelope] = []
    for _ in range(16):
        _, block = append_random(store, rng, 400, str_len=1200)
        envs.extend(block)
    assert store.stats()["size_bytes"] > 4 * 1024 * 1024
    assert store.shared_env.env.info()["map_size"] > 64 * 1024
    assert verify_store(store).ok
    store.close()
    with ChainStore.open(tmp_path / "data", map_size=64 * 1024) as reader:
        assert reader.events() == envs


# -- the single-writer lock ---------------------------------------------------------------


def _spawn(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(worker_args(*args), env=worker_env(), stdout=subprocess.PIPE,
                            text=True)


def test_a_second_writer_in_this_process_gets_ledger_locked(small: Chain,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "data"
    with pytest.raises(LedgerLocked) as info:
        ChainStore.open(path, write=True)
    assert str(path) in str(info.value)
    assert str(os.getpid()) in str(info.value)
    with ChainStore.open(path) as reader:  # readers need no lock
        assert reader.head == small.store.head
    small.store.close()
    with ChainStore.open(path, write=True) as writer:
        assert writer.writable


def test_a_writer_in_another_process_gets_ledger_locked(small: Chain, tmp_path: Path) -> None:
    path = tmp_path / "data"
    out = subprocess.run(worker_args("trylock", path), env=worker_env(), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.startswith("LOCKED "), out
    assert str(path) in out
    small.store.close()
    out = subprocess.run(worker_args("trylock", path), env=worker_env(), capture_output=True,
                         text=True, timeout=30, check=True).stdout
    assert out.strip() == "ACQUIRED"


def test_the_lock_is_released_when_its_holder_is_sigkilled(small: Chain,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "data"
    small.store.close()
    holder = _spawn("hold", path)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().split() == ["READY", str(holder.pid)]
        with pytest.raises(LedgerLocked) as info:
            ChainStore.open(path, write=True)
        assert str(path) in str(info.value) and str(holder.pid) in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with ChainStore.open(path, write=True) as writer:
        header, _ = append_random(writer, random.Random(1), 3)
        assert verify_store(writer).ok
        assert header.height == small.headers[-1].height + 1


# -- a reader in another process while the writer appends ---------------------------------


def test_a_reader_process_sees_only_whole_blocks_while_the_writer_appends(
        tmp_path: Path) -> None:
    path = tmp_path / "data"
    stop = tmp_path / "stop"
    # A small map, so the writer grows it while the other process reads.
    store = build_chain(path, blocks=2, seed=1, map_size=64 * 1024).store
    reader = _spawn("read", path, stop, 64 * 1024)
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "READY"
        rng = random.Random(2)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            size = rng.randrange(500, 2500) if rng.random() < 0.15 else rng.randrange(1, 40)
            append_random(store, rng, size, str_len=32)
        stop.touch()
        out = [line for line in iter_lines(reader.stdout)]
        assert reader.wait(timeout=60) == 0, out
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert out and out[-1].startswith("OK "), out
    _, iterations, distinct_heads, max_height = out[-1].split()
    assert int(iterations) >= 5 and int(distinct_heads) >= 5, out
    assert int(max_height) == store.head.height
    assert store.shared_env.env.info()["map_size"] > 64 * 1024
    store.close()
