"""Liquidation candidates without scanning every account: a conservative watch.

After an exact evaluation finds an account safe, its slack AV - MMR is split
evenly across its n open positions (minus 3 qq per market for rounding: the
value floor, the pending floor and the MMR ceiling). Each market keeps a
monotone `move_counter`: a mark move of d st adds |d|*(PPM+mmf)*S and an index
move of d adds |d|*PPM*10^-qce, so a position of |size| bq can lose at most
|size|*Δcounter/(PPM*S*10^-qce) qq of AV - MMR. The account is re-checked once
some market's counter passes the threshold its share of slack allows (heap per
market). Any change of the account's own numbers (fills, transfers,
liquidation) marks it dirty, and so does any event that lets a market
liquidate again. So every account that may have become liquidatable is a
candidate; candidates are confirmed exactly before anything happens, which is
why the watch is derived data: it is not hashed, and a restored engine simply
starts with every account holding a position marked dirty.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush

from ledger.core.state import Account, ExchangeState, Market


def watch(st: ExchangeState, a: Account, slack: int) -> None:
    """Register thresholds for a safe account whose AV - MMR is `slack` >= 0.

    Entries are pushed in the order of `a.positions`; a heap pops distinct
    entries in value order whatever the push order, and (threshold, acct, ver)
    entries of different accounts or versions are always distinct.
    """
    n_open = 0
    for pos in a.positions.values():
        if pos.size:
            n_open += 1
    a.liq_ver += 1
    if not n_open:
        return
    ver = a.liq_ver
    acct = a.id
    markets = st.markets
    share = slack // n_open - 3
    for mkt, pos in a.positions.items():
        size = pos.size
        if not size:
            continue
        m = markets[mkt]
        if share > 0:
            # m.watch_scale = PPM * S * 10^-qce
            room = share * m.watch_scale // (size if size > 0 else -size)
            if room <= 0:
                room = 1
        else:
            room = 1  # any movement at all re-checks it
        heap = m.liq_heap
        heappush(heap, (m.move_counter + room, acct, ver))
        if len(heap) > 2 * len(m.holders) + 64:
            _compact(st, m)


def _compact(st: ExchangeState, m: Market) -> None:
    """Drop a market's outdated heap entries (those of an older `liq_ver`)."""
    accounts = st.accounts
    m.liq_heap = [e for e in m.liq_heap if accounts[e[1]].liq_ver == e[2]]
    heapify(m.liq_heap)


def candidates(st: ExchangeState) -> list[str]:
    """Accounts to check exactly this sweep, sorted; clears the dirty set."""
    out = st.liq_dirty
    st.liq_dirty = {}
    accounts = st.accounts
    for m in st.markets.values():
        heap = m.liq_heap
        counter = m.move_counter
        while heap and heap[0][0] <= counter:
            _, acct, ver = heappop(heap)
            if accounts[acct].liq_ver == ver:
                out[acct] = None
    return sorted(out)


def reset(st: ExchangeState) -> None:
    """Forget the watch and mark every account with an open position for an exact check."""
    for m in st.markets.values():
        m.liq_heap = []
    for acct, a in st.accounts.items():
        if any(p.size for p in a.positions.values()):
            st.liq_dirty[acct] = None
