"""The market makers' quotes and the liquidator vault's unwind, for `tools/workload.py`.

Like the user actions (`tools/workload_actions.py`), everything here appends
commands to a `Block` and draws only from the block's `random.Random`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.events.commands import CancelOrder, PlaceOrder
from ledger.events.enums import Mode, OrderType, SelfTrade, Side, TimeInForce
from tools.workload_actions import TRIGGER_TYPES, Block, ioc_order
from tools.workload_model import PPM, VAULT, MarketInfo, Persona, ceil_tick, floor_tick, scale_ppm

if TYPE_CHECKING:
    from tools.workload_view import OpenOrder


def market_makers(b: Block, limit: int) -> None:
    """Quote both sides near the fair price; cancel/replace stale levels, stalest first.

    Each market has its own market makers (`Crowd.quoting`), and the budget is
    shared round-robin across markets (each market's most urgent refresh, then
    the second, ...), starting from a market that rotates with the height, so
    no market's book is starved while another churns.
    """
    orders: dict[str, list[OpenOrder]] = {}
    per_market: list[list[list[Any]]] = []
    for m in b.crowd.markets:
        if b.mode[m.mkt] in (Mode.HALTED, Mode.CANCEL_ONLY):
            continue
        plans: list[tuple[int, int, list[Any]]] = []
        makers = b.crowd.quoting[m.mkt]
        for j, mm in enumerate(makers):
            if mm.acct not in orders:
                orders[mm.acct] = [o for o in b.view.open_orders(mm.acct)
                                   if o.type not in TRIGGER_TYPES]
            mine = [o for o in orders[mm.acct] if o.mkt == m.mkt]
            cmds, urgency = _quote(b, mm, m, mine)
            if cmds:
                # Makers of equal urgency take turns across blocks.
                plans.append((-urgency, (j + b.height) % len(makers), cmds))
        plans.sort(key=lambda p: (p[0], p[1]))
        per_market.append([cmds for _, _, cmds in plans])
    if not per_market:
        return
    start = b.height % len(per_market)
    rotation = per_market[start:] + per_market[:start]
    rank = 0
    while any(rank < len(refreshes) for refreshes in rotation):
        for refreshes in rotation:
            room = limit - len(b.cmds)
            if room <= 0:
                return
            if rank < len(refreshes):
                b.cmds.extend(refreshes[rank][:room])
        rank += 1


def _quote(b: Block, mm: Persona, m: MarketInfo,
           mine: list[OpenOrder]) -> tuple[list[Any], int]:
    """One maker's refresh of one market: (cancels, inventory dump, new levels), urgency.

    Three levels a side around a centre skewed against inventory; a resting
    quote is cancelled when on the wrong side of the fair price, too far from
    the centre, a duplicate, or (POST_ONLY mode) outside the recovery band.
    Over the inventory limit the maker stops quoting the side that adds and
    hits the book with a quarter of the position.
    """
    fair = b.fair[m.mkt]
    post_only_mode = b.mode[m.mkt] == Mode.POST_ONLY
    size = b.view.position(mm.acct, m.mkt)[0]
    inv = m.value_qq(size, fair)
    # Skew the centre against the inventory (up to 20 bps at the limit).
    skew = -max(-PPM, min(PPM, inv * PPM // mm.inventory_qq)) * 2_000 // PPM
    centre = fair + scale_ppm(fair, skew)
    if post_only_mode:
        # Recovery band (SPEC 9): stay well inside +-500 ppm of the external fair price.
        half, gap, levels, reach = 50, 50, 3, 400
    else:
        half, gap, levels, reach = mm.half_spread_ppm, mm.level_gap_ppm, 3, 0
    base_t = max(1, scale_ppm(centre, half) // m.tick)
    gap_t = max(1, scale_ppm(centre, gap) // m.tick)
    want: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}
    lo = floor_tick(centre, m.tick)
    hi = ceil_tick(centre, m.tick)
    for i in range(levels):
        want[Side.BUY].append(lo - (base_t + i * gap_t) * m.tick)
        want[Side.SELL].append(hi + (base_t + i * gap_t) * m.tick)
    if post_only_mode:
        lim_lo = ceil_tick(fair - scale_ppm(fair, reach), m.tick)
        lim_hi = floor_tick(fair + scale_ppm(fair, reach), m.tick)
        want[Side.BUY] = [p for p in want[Side.BUY] if p >= lim_lo]
        want[Side.SELL] = [p for p in want[Side.SELL] if p <= lim_hi]
    if inv > mm.inventory_qq:
        want[Side.BUY] = []
    elif inv < -mm.inventory_qq:
        want[Side.SELL] = []
    far = (base_t + (levels + 2) * gap_t) * m.tick
    best_bid, best_ask = b.view.best_bid(m.mkt), b.view.best_ask(m.mkt)
    crossing: dict[Side, list[int]] = {
        Side.BUY: [p for p in want[Side.BUY] if best_ask is not None and p >= best_ask],
        Side.SELL: [p for p in want[Side.SELL] if best_bid is not None and p <= best_bid],
    }
    cancels: list[Any] = []
    places: list[Any] = []
    urgency = 0
    for side in (Side.BUY, Side.SELL):
        keep: list[int] = []
        for o in sorted(mine, key=lambda o: (o.price_st or 0, o.order_id)):
            if o.side != side or o.price_st is None:
                continue
            p = o.price_st
            wrong = p >= fair if side == Side.BUY else p <= fair
            out_of_band = post_only_mode and abs(p - fair) > scale_ppm(fair, 450)
            too_far = abs(p - centre) > far
            unwanted = not want[side]
            if wrong or out_of_band or too_far or unwanted or p in keep:
                cancels.append(CancelOrder(mm.acct, o.order_id))
                urgency += 3 if wrong else 1
            else:
                keep.append(p)
        missing = [p for p in want[side] if p not in keep]
        room = max(0, levels + 1 - len(keep))
        urgency += 2 * min(len(missing), room)
        for i, p in enumerate(missing[:room]):
            if p <= 0:
                continue
            level = mm.level_qq * (2 if m is b.crowd.focus else 1)
            qty = max(m.step, m.qty_for(level + level * i // 2, p))
            tif = TimeInForce.POST_ONLY if post_only_mode or b.rng.random() < 0.7 \
                else TimeInForce.GTC
            if tif == TimeInForce.POST_ONLY and p in crossing[side]:
                continue  # would cross a quote still on the book: wait for it to go
            places.append(PlaceOrder(mm.acct, m.mkt, side, qty, p, OrderType.LIMIT, tif,
                                     False, None, SelfTrade.EXPIRE_MAKER))
    dump: list[Any] = []
    if abs(inv) > mm.inventory_qq and not post_only_mode and b.mode[m.mkt] == Mode.OK:
        # Over the inventory limit: hit the book to shed a quarter of it.
        side = Side.SELL if size > 0 else Side.BUY
        qty = abs(size) // 4 // m.step * m.step
        if qty > 0:
            dump.append(ioc_order(m, mm.acct, side, qty, fair, 30, reduce_only=True))
            urgency += 2
    return cancels + dump + places, urgency


def vault_unwind(b: Block) -> None:
    """The liquidator vault sells down positions it took over, a slice at a time."""
    for m in b.crowd.markets:
        if b.mode[m.mkt] != Mode.OK or b.rng.random() >= 0.2:
            continue
        size = b.view.position(VAULT, m.mkt)[0]
        if size == 0:
            continue
        fair = b.fair[m.mkt]
        qty = min(abs(size), max(m.step, m.qty_for(b.crowd.max_order_qq, fair)))
        side = Side.SELL if size > 0 else Side.BUY
        b.cmds.append(ioc_order(m, VAULT, side, qty, fair, 30, reduce_only=True))
