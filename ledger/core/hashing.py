"""The state hash: an additive (lattice) hash over per-entity digests.

state_hash = sum over entities of blake2b-256(canonical encoding) mod 2^256,
as 32 big-endian bytes. Entities: each account (with its positions), each
open order, each market (without its book: the orders are entities), and the
globals. `evolve` marks touched entity keys in `state.dirty`; `current()`
re-digests only those, so a block costs what it touched (Solana's accounts
lattice hash works the same way). `full()` recomputes from scratch.

The encoding is msgpack of a tuple of ints, strs, bools and None in a fixed
field order (one canonical byte string per value); an entity holding an int
beyond 64 bits (only the funding dust ledger can realistically grow that
large) is encoded as the `repr` of the same tuple instead, which is canonical
for these types in CPython. Either way equal states give equal bytes.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import msgpack

from ledger.core.state import Account, ExchangeState, Market, Order

MOD = 1 << 256
_from = int.from_bytes
_pack = msgpack.Packer(use_bin_type=True).pack


def encode(t: tuple[Any, ...]) -> bytes:
    """Canonical bytes of an entity tuple."""
    try:
        return bytes(_pack(t))
    except OverflowError:
        return repr(t).encode()


def _account(a: Account) -> tuple[Any, ...]:
    return ("A", a.id, a.balance, a.debt,
            tuple((mkt, p.size, p.cost, p.idx, p.realized)
                  for mkt, p in sorted(a.positions.items())))


def _order(o: Order) -> tuple[Any, ...]:
    return ("O", o.id, o.acct, o.mkt, int(o.side), o.qty, o.rem, o.price, int(o.type),
            int(o.tif), o.reduce_only, o.trigger, int(o.stp), o.prio, o.on_book, o.armed)


def _market(m: Market) -> tuple[Any, ...]:
    return ("M", m.id, tuple(m.params), int(m.mode), m.mode_band, m.mode_reason, m.oracle,
            m.ext_basis, m.basis, m.mark, m.index, m.last_funding_time, m.premium_acc,
            m.premium_dt, m.last_oracle_time, m.last_trade, m.pending_oracle, m.funding_gap)


def _globals(st: ExchangeState) -> tuple[Any, ...]:
    return ("G", st.seq, st.time, int(st.mode), st.mode_band, st.mode_reason, st.guards,
            int(st.loss_mode), st.funding_dust, st.ext_in, st.ext_out, st.bad_debt)


def entity(st: ExchangeState, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The canonical tuple of the entity at `key`, or None if it no longer exists."""
    kind = key[0]
    if kind == "a":
        a = st.accounts.get(key[1])
        return None if a is None else _account(a)
    if kind == "o":
        o = st.orders.get(key[1])
        return None if o is None else _order(o)
    if kind == "m":
        m = st.markets.get(key[1])
        return None if m is None else _market(m)
    return _globals(st)


def digest(t: tuple[Any, ...]) -> int:
    return _from(blake2b(encode(t), digest_size=32).digest(), "big")


def all_keys(st: ExchangeState) -> list[tuple[Any, ...]]:
    keys: list[tuple[Any, ...]] = [("g",)]
    keys += [("a", k) for k in st.accounts]
    keys += [("m", k) for k in st.markets]
    keys += [("o", k) for k in st.orders]
    return keys


class StateHasher:
    """Per-entity digests and their running sum."""

    __slots__ = ("digests", "total")

    def __init__(self) -> None:
        self.digests: dict[tuple[Any, ...], int] = {}
        self.total = 0

    def current(self, st: ExchangeState) -> bytes:
        """Fold the dirty entities in and return the 32-byte state hash."""
        digests = self.digests
        total = self.total
        for key in st.dirty:
            old = digests.pop(key, None)
            if old is not None:
                total -= old
            t = entity(st, key)
            if t is not None:
                try:
                    data = _pack(t)
                except OverflowError:
                    data = repr(t).encode()
                d = _from(blake2b(data, digest_size=32).digest(), "big")
                digests[key] = d
                total += d
        st.dirty.clear()
        self.total = total % MOD
        return self.total.to_bytes(32, "big")

    def rebuild(self, st: ExchangeState) -> None:
        """Recompute every digest from scratch (after a restore)."""
        self.digests = {}
        total = 0
        for key in all_keys(st):
            t = entity(st, key)
            if t is not None:
                d = digest(t)
                self.digests[key] = d
                total += d
        self.total = total % MOD
        st.dirty.clear()


def full_hash(st: ExchangeState) -> bytes:
    """The state hash recomputed from every entity (no incremental data used)."""
    total = 0
    for key in all_keys(st):
        t = entity(st, key)
        if t is not None:
            total += digest(t)
    return (total % MOD).to_bytes(32, "big")
