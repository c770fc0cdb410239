"""Snapshots: the whole canonical state as deterministic msgpack bytes, and restore.

Layout (arrays only, every collection sorted by id): [version, seq, height,
time, globals, accounts, markets, orders]. `funding_dust` is stored as a
decimal string because it may outgrow 64 bits. Derived data (book sides,
trigger lists, B/A order sums, market holders, the liquidation watch) is
rebuilt on restore; the restored state hashes to the same value.
"""

from __future__ import annotations

from typing import Any

import msgpack
from msgspec.structs import astuple

from ledger.core import watch
from ledger.core.evolve_trading import book_add, fires_below
from ledger.core.state import Account, ExchangeState, Market, Order, Position
from ledger.errors import CodecError
from ledger.events.enums import LossMode, Mode, OrderType, SelfTrade, Side, TimeInForce
from ledger.events.payloads import MarketParams

VERSION = 1


def dump(st: ExchangeState) -> bytes:
    """Canonical msgpack bytes of the state."""
    accounts = [
        [a.id, a.balance, a.debt,
         [[mkt, p.size, p.cost, p.idx, p.realized] for mkt, p in sorted(a.positions.items())]]
        for _, a in sorted(st.accounts.items())
    ]
    markets = [
        [m.id, list(astuple(m.params)), int(m.mode), m.mode_band, m.mode_reason, m.oracle,
         m.ext_basis, m.basis, m.mark, m.index, m.last_funding_time, m.premium_acc, m.premium_dt,
         m.last_oracle_time, m.last_trade, m.pending_oracle, m.funding_gap]
        for _, m in sorted(st.markets.items())
    ]
    orders = [
        [o.id, o.acct, o.mkt, int(o.side), o.qty, o.rem, o.price, int(o.type), int(o.tif),
         o.reduce_only, o.trigger, int(o.stp), o.prio, o.on_book, o.armed]
        for _, o in sorted(st.orders.items())
    ]
    glob = [int(st.mode), st.mode_band, st.mode_reason, st.guards, int(st.loss_mode),
            str(st.funding_dust), st.ext_in, st.ext_out, st.bad_debt]
    arr: list[Any] = [VERSION, st.seq, st.height, st.time, glob, accounts, markets, orders]
    if st.keys:  # a 9th element only where there is an authority (legacy bytes unchanged)
        arr.append([st.chain_id, [[k, *v] for k, v in sorted(st.keys.items())]])
    return bytes(msgpack.packb(arr, use_bin_type=True))


def load(data: bytes) -> ExchangeState:
    """Restore a state from `dump` bytes (raises CodecError on bytes of another shape)."""
    try:
        arr: Any = msgpack.unpackb(data, raw=False, use_list=True)
        version, seq, height, time, glob, accounts, markets, orders = arr[:8]
        authority = arr[8] if len(arr) == 9 else None
        if len(arr) not in (8, 9):
            raise ValueError(f"{len(arr)} elements")
    except Exception as exc:
        raise CodecError(f"snapshot: not a state snapshot ({exc})") from None
    if version != VERSION:
        raise CodecError(f"snapshot: unknown version {version!r}")
    st = ExchangeState()
    st.seq, st.height, st.time = seq, height, time
    (mode, st.mode_band, st.mode_reason, st.guards, loss, dust, st.ext_in, st.ext_out,
     st.bad_debt) = glob
    st.mode = Mode(mode)
    st.loss_mode = LossMode(loss)
    st.funding_dust = int(dust)
    if authority is not None:
        st.chain_id = authority[0]
        st.keys = {k: (role, name, bytes(pub), active) for k, role, name, pub, active
                   in authority[1]}
    for row in markets:
        m = Market(row[0], MarketParams(*row[1]), row[5], row[9], row[10])
        m.mode = Mode(row[2])
        (m.mode_band, m.mode_reason, m.oracle, m.ext_basis, m.basis, m.mark, m.index,
         m.last_funding_time, m.premium_acc, m.premium_dt, m.last_oracle_time, m.last_trade,
         m.pending_oracle, m.funding_gap) = row[3:]
        m.fbase = (m.oracle, m.premium_acc, m.premium_dt, m.basis)
        st.markets[m.id] = m
    for acct, balance, debt, positions in accounts:
        a = Account(acct)
        a.balance, a.debt = balance, debt
        for mkt, size, cost, idx, realized in positions:
            p = a.positions[mkt] = Position(idx)
            p.size, p.cost, p.realized = size, cost, realized
            m = st.markets[mkt]
            m.holders[acct] = None
            if size > 0:
                m.oi_long += size
        st.accounts[acct] = a
    rows = sorted(orders, key=lambda r: (r[12], r[0]))  # book levels fill in priority order
    for r in rows:
        o = Order(r[0], r[1], r[2], Side(r[3]), r[4], r[6], OrderType(r[7]),
                  TimeInForce(r[8]), r[9], r[10], SelfTrade(r[11]))
        o.rem, o.prio = r[5], r[12]
        st.orders[o.id] = o
        m = st.markets[o.mkt]
        if r[13]:
            book_add(st, m, o)
        if r[14]:
            assert o.trigger is not None
            m.triggers.add(fires_below(o.type, o.side), o.trigger, o.id)
            o.armed = True
    st.orders = dict(sorted(st.orders.items()))
    for oid in st.orders:
        st.accounts[st.orders[oid].acct].orders[oid] = None
    st.dirty_a.clear()
    st.dirty_o.clear()
    st.dirty_m.clear()
    watch.reset(st)
    return st
