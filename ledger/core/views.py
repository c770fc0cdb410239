"""Read accessors over the state for simulators, auditors and projections (no internals needed)."""

from __future__ import annotations

from typing import NamedTuple

from ledger.core.funding import expected_tick
from ledger.core.margin import account_margin
from ledger.core.members import HALTED
from ledger.core.state import ExchangeState, effective_mode
from ledger.errors import NotFound
from ledger.events.enums import LossMode, Mode, OrderType, SelfTrade, Side, TimeInForce


class MarketView(NamedTuple):
    mkt: str
    oracle_st: int
    mark_st: int
    ext_basis_ppm: int
    basis_ppm: int
    funding_index: int
    last_funding_time: int
    premium_acc: int
    premium_dt: int
    mode: Mode
    effective_mode: Mode
    status: str
    mode_reason: str
    last_oracle_time: int


class OrderView(NamedTuple):
    order_id: int
    acct: str
    mkt: str
    side: Side
    qty_bq: int
    remaining_bq: int
    price_st: int | None
    type: OrderType
    tif: TimeInForce
    reduce_only: bool
    trigger_st: int | None
    stp: SelfTrade
    priority: int
    triggered: bool


class Globals(NamedTuple):
    seq: int
    time: int
    mode: Mode
    guards_enabled: bool
    loss_mode: LossMode
    funding_dust: int
    ext_in: int
    ext_out: int
    bad_debt: int


def _acct(st: ExchangeState, acct: str):  # type: ignore[no-untyped-def]
    a = st.accounts.get(acct)
    if a is None:
        raise NotFound(f"account {acct!r} does not exist")
    return a


def balance(st: ExchangeState, acct: str) -> int:
    """Settled balance in qq (raises NotFound)."""
    return int(_acct(st, acct).balance)


def margin(st: ExchangeState, acct: str) -> tuple[int, int, int, int]:
    """(AV, IMR, MMR, free = AV - IMR) at current marks (raises NotFound)."""
    av, imr, mmr = account_margin(st, _acct(st, acct))
    return av, imr, mmr, av - imr


def position(st: ExchangeState, acct: str, mkt: str) -> tuple[int, int, int, int]:
    """(size bq, cost qq, funding idx, realized qq); zeros with the market index if none."""
    a = _acct(st, acct)
    p = a.positions.get(mkt)
    if p is None:
        m = st.markets.get(mkt)
        return 0, 0, (m.index if m is not None else 0), 0
    return p.size, p.cost, p.idx, p.realized


def positions(st: ExchangeState, acct: str) -> dict[str, tuple[int, int, int, int]]:
    """Every non-flat position of an account, by market id."""
    a = _acct(st, acct)
    return {mkt: (p.size, p.cost, p.idx, p.realized)
            for mkt, p in sorted(a.positions.items()) if p.size}


def market(st: ExchangeState, mkt: str) -> MarketView:
    """The market's prices, funding state and modes (raises NotFound)."""
    m = st.markets.get(mkt)
    if m is None:
        raise NotFound(f"market {mkt!r} is not listed")
    status = "HALTED" if m.mode == HALTED else "LISTED"
    return MarketView(mkt, m.oracle, m.mark, m.ext_basis, m.basis, m.index, m.last_funding_time,
                      m.premium_acc, m.premium_dt, m.mode, effective_mode(st, m), status,
                      m.mode_reason, m.last_oracle_time)


def open_orders(st: ExchangeState, acct: str) -> list[OrderView]:
    """The account's open orders (book and TP/SL), ascending id."""
    a = _acct(st, acct)
    out = []
    for oid in sorted(a.orders):
        o = st.orders[oid]
        out.append(OrderView(o.id, o.acct, o.mkt, o.side, o.qty, o.rem, o.price, o.type, o.tif,
                             o.reduce_only, o.trigger, o.stp, o.prio, not o.armed))
    return out


def best_bid(st: ExchangeState, mkt: str) -> int | None:
    m = st.markets.get(mkt)
    return None if m is None else m.bids.best()


def best_ask(st: ExchangeState, mkt: str) -> int | None:
    m = st.markets.get(mkt)
    return None if m is None else m.asks.best()


def accounts(st: ExchangeState) -> list[str]:
    return sorted(st.accounts)


def markets(st: ExchangeState) -> list[str]:
    return sorted(st.markets)


def expected_funding_index(st: ExchangeState, mkt: str, time: int) -> int:
    """The index a correct FundingTick at `time` in the next block must publish.

    Call between blocks: it is the rule decide applies, on the inputs the next
    block starts with (that block's own oracle updates count toward later ticks).
    """
    m = st.markets.get(mkt)
    if m is None:
        raise NotFound(f"market {mkt!r} is not listed")
    return expected_tick(m, time, live=True)[3]


def globals_(st: ExchangeState) -> Globals:
    return Globals(st.seq, st.time, st.mode, st.guards, st.loss_mode, st.funding_dust,
                   st.ext_in, st.ext_out, st.bad_debt)
