"""The state hash: an additive (lattice) hash over per-entity digests.

state_hash = sum over entities of blake2b-256(canonical encoding) mod 2^256,
as 32 big-endian bytes. Entities: each account (with its positions), each
open order, each market (without its book: the orders are entities), and the
globals. `evolve` marks touched entities in `state.dirty_a/_o/_m`; `current()`
re-digests only those and the globals, so a block costs what it touched
(Solana's accounts lattice hash works the same way). `full_hash()` recomputes
from scratch.

The encoding is msgpack (written by msgspec) of a tuple of ints, strs, bools
and None in a fixed field order (one canonical byte string per value); an entity holding an int
beyond 64 bits (only the funding dust ledger can realistically grow that
large) is encoded as the `repr` of the same tuple instead, which is canonical
for these types in CPython. Either way equal states give equal bytes.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import msgspec
from msgspec.structs import astuple

from ledger.core.state import Account, ExchangeState, Market, Order

MOD = 1 << 256
_from = int.from_bytes
# msgspec's encoder writes the same msgpack bytes as msgpack's packer for these types
# (ints, strs, bools, None, arrays), at about twice the speed; like it, it raises
# OverflowError for an int beyond 64 bits.
_pack = msgspec.msgpack.Encoder().encode
#: a fresh blake2b-256 state; copying it is the cheap way to start each digest
_B2 = blake2b(digest_size=32)


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
    return ("M", m.id, astuple(m.params), int(m.mode), m.mode_band, m.mode_reason, m.oracle,
            m.ext_basis, m.basis, m.mark, m.index, m.last_funding_time, m.premium_acc,
            m.premium_dt, m.last_oracle_time, m.last_trade, m.pending_oracle, m.funding_gap)


def _globals(st: ExchangeState) -> tuple[Any, ...]:
    g: tuple[Any, ...] = (
        "G", st.seq, st.time, int(st.mode), st.mode_band, st.mode_reason, st.guards,
        int(st.loss_mode), st.funding_dust, st.ext_in, st.ext_out, st.bad_debt)
    if st.keys:  # the authority, only where there is one: legacy hashes stay as they were
        g += (st.chain_id, tuple(sorted(st.keys.items())))
    return g


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
    h = _B2.copy()
    h.update(encode(t))
    return _from(h.digest(), "big")


def all_keys(st: ExchangeState) -> list[tuple[Any, ...]]:
    keys: list[tuple[Any, ...]] = [("g",)]
    keys += [("a", k) for k in st.accounts]
    keys += [("m", k) for k in st.markets]
    keys += [("o", k) for k in st.orders]
    return keys


class StateHasher:
    """Per-entity digests (one table per kind) and their running sum."""

    __slots__ = ("accounts", "orders", "markets", "glob", "total")

    def __init__(self) -> None:
        self.accounts: dict[str, int] = {}
        self.orders: dict[int, int] = {}
        self.markets: dict[str, int] = {}
        self.glob = 0
        self.total = 0

    def current(self, st: ExchangeState) -> bytes:
        """Fold the dirty entities and the globals in; return the 32-byte state hash.

        The encoders are inlined (same tuples as `_account`/`_order`; enum fields
        are packed as the ints msgpack makes of them, and only the rare repr
        fallback needs the explicit int() of `encode`). Each digest is taken on a
        copy of one fresh blake2b-256 state (the same bytes as `digest`, without
        re-parsing the constructor's parameters per entity).
        """
        total = self.total
        pack = _pack
        fresh = _B2.copy
        frm = _from
        da = self.accounts
        accounts = st.accounts
        for acct in st.dirty_a:
            a = accounts.get(acct)
            if a is None:
                total -= da.pop(acct, 0)
                continue
            ps = a.positions
            # by market id; msgpack packs a list as it packs a tuple (repr would
            # not, so the fallback takes `_account`'s exact tuple)
            pl = []
            for mkt in (sorted(ps) if len(ps) > 1 else ps):
                p = ps[mkt]
                pl.append((mkt, p.size, p.cost, p.idx, p.realized))
            t = ("A", acct, a.balance, a.debt, pl)
            try:
                data = pack(t)
            except OverflowError:
                data = repr(_account(a)).encode()
            h = fresh()
            h.update(data)
            d = frm(h.digest(), "big")
            total += d - da.get(acct, 0)
            da[acct] = d
        do = self.orders
        orders = st.orders
        for oid in st.dirty_o:
            od = orders.get(oid)
            if od is None:
                # gone (most were placed and filled or cancelled within the block)
                total -= do.pop(oid, 0)
                continue
            try:
                data = pack(("O", oid, od.acct, od.mkt, od.side, od.qty, od.rem, od.price, od.type,
                             od.tif, od.reduce_only, od.trigger, od.stp, od.prio, od.on_book,
                             od.armed))
            except OverflowError:
                data = repr(_order(od)).encode()
            h = fresh()
            h.update(data)
            d = frm(h.digest(), "big")
            total += d - do.get(oid, 0)
            do[oid] = d
        dm = self.markets
        for mkt in st.dirty_m:
            m = st.markets.get(mkt)
            if m is None:
                total -= dm.pop(mkt, 0)
                continue
            d = digest(_market(m))
            total += d - dm.get(mkt, 0)
            dm[mkt] = d
        d = digest(_globals(st))
        total += d - self.glob
        self.glob = d
        st.dirty_a.clear()
        st.dirty_o.clear()
        st.dirty_m.clear()
        self.total = total % MOD
        return self.total.to_bytes(32, "big")

    def rebuild(self, st: ExchangeState) -> None:
        """Recompute every digest from scratch (after a restore)."""
        self.accounts = {k: digest(_account(a)) for k, a in st.accounts.items()}
        self.orders = {k: digest(_order(od)) for k, od in st.orders.items()}
        self.markets = {k: digest(_market(m)) for k, m in st.markets.items()}
        self.glob = digest(_globals(st))
        total = (self.glob + sum(self.accounts.values()) + sum(self.orders.values())
                 + sum(self.markets.values()))
        self.total = total % MOD
        st.dirty_a.clear()
        st.dirty_o.clear()
        st.dirty_m.clear()


def full_hash(st: ExchangeState) -> bytes:
    """The state hash recomputed from every entity (no incremental data used)."""
    total = 0
    for key in all_keys(st):
        t = entity(st, key)
        if t is not None:
            total += digest(t)
    return (total % MOD).to_bytes(32, "big")
