"""What the simulated users (all but the market makers) do in a block, and the block scratch.

Split from `tools/workload.py`, which owns the oracle, the funding service and
the block assembly; the market makers live in `tools/workload_makers.py`. Every
function here appends commands to a `Block` and draws only from the block's
`random.Random`, so the result is a pure function of the workload's arguments,
the height and the view's answers.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.events.commands import CancelOrder, Deposit, PlaceOrder, Withdraw
from ledger.events.enums import TP_SL, Mode, OrderType, SelfTrade, Side, TimeInForce
from ledger.events.record import replace
from tools.workload_model import (
    USDC,
    MarketInfo,
    Persona,
    Role,
    ceil_tick,
    floor_tick,
    scale_ppm,
)

if TYPE_CHECKING:
    from tools.workload_view import EngineView

#: Order types held off the book until their trigger fires (SPEC 8).
TRIGGER_TYPES = TP_SL


@dataclass(frozen=True, slots=True)
class Crowd:
    """The users and markets of a workload, fixed at construction."""

    markets: list[MarketInfo]
    by_mkt: dict[str, MarketInfo]
    focus: MarketInfo
    personas: list[Persona]
    budget: int
    max_order_qq: int
    ref_prefix: str
    mms: list[Persona] = field(init=False)
    traders: list[Persona] = field(init=False)
    focus_users: list[Persona] = field(init=False)
    overlev: list[Persona] = field(init=False)
    #: Traders and focus holders: the users who protect, close and rest orders.
    holders: list[Persona] = field(init=False)
    #: Everyone but the market makers.
    users: list[Persona] = field(init=False)
    #: Market -> the (up to 4) market makers quoting it, spread evenly over the makers.
    quoting: dict[str, list[Persona]] = field(init=False)

    def __post_init__(self) -> None:
        def of(role: Role) -> list[Persona]:
            return [p for p in self.personas if p.role is role]

        object.__setattr__(self, "mms", of(Role.MARKET_MAKER))
        object.__setattr__(self, "traders", of(Role.TRADER))
        object.__setattr__(self, "focus_users", of(Role.FOCUS))
        object.__setattr__(self, "overlev", of(Role.OVERLEVERAGED))
        object.__setattr__(self, "holders", self.traders + self.focus_users)
        object.__setattr__(self, "users", [p for p in self.personas
                                           if p.role is not Role.MARKET_MAKER])
        n = len(self.mms)
        per = min(n, 4)
        object.__setattr__(self, "quoting", {
            m.mkt: [self.mms[(k * per + t) % n] for t in range(per)]
            for k, m in enumerate(self.markets)})


@dataclass(slots=True)
class Block:
    """Scratch state of one `Workload.next_block` call."""

    height: int
    time: int
    view: EngineView
    rng: random.Random
    crowd: Crowd
    #: Per market: the external fair price quotes are built around, and the mode.
    fair: dict[str, int] = field(default_factory=dict)
    mode: dict[str, Mode] = field(default_factory=dict)
    cmds: list[Any] = field(default_factory=list)
    n_ext: int = 0

    def ext_ref(self, kind: str) -> str:
        """A deposit/withdrawal reference unique within the workload's `ref_prefix`."""
        self.n_ext += 1
        return f"{self.crowd.ref_prefix}-{self.height}-{kind}{self.n_ext}"


def ioc_order(m: MarketInfo, acct: str, side: Side, qty: int, fair: int, slip_bps: int,
              *, reduce_only: bool = False) -> PlaceOrder:
    """A LIMIT IOC that crosses by `slip_bps` around the fair price."""
    off = scale_ppm(fair, slip_bps * 100)
    price = ceil_tick(fair + off, m.tick) if side == Side.BUY else \
        floor_tick(fair - off, m.tick)
    return PlaceOrder(acct, m.mkt, side, qty, max(m.tick, price), OrderType.LIMIT,
                      TimeInForce.IOC, reduce_only, None, SelfTrade.EXPIRE_MAKER)


# ---- users ------------------------------------------------------------------

def users_act(b: Block, limit: int) -> None:
    """Draw weighted user actions (`_ACTIONS`) until the block holds `limit` commands.

    An action may find nothing to do (a flat account asked to close, an empty
    book); attempts are capped so a quiet market cannot loop forever.
    """
    names = [name for name, _, _ in _ACTIONS]
    weights = [weight for _, weight, _ in _ACTIONS]
    handlers = {name: act for name, _, act in _ACTIONS}
    attempts = 0
    while len(b.cmds) < limit and attempts < 4 * b.crowd.budget:
        attempts += 1
        handlers[b.rng.choices(names, weights)[0]](b)
    del b.cmds[limit:]


def _pick(b: Block, people: list[Persona]) -> Persona | None:
    return people[b.rng.randrange(len(people))] if people else None


def _pick_market(b: Block, focus_weight: int = 2) -> MarketInfo:
    weights = [focus_weight if m is b.crowd.focus else 1 for m in b.crowd.markets]
    return b.rng.choices(b.crowd.markets, weights)[0]


def _taker_order(b: Block, acct: str, m: MarketInfo, side: Side, qty: int,
                 *, reduce_only: bool = False) -> PlaceOrder:
    """A MARKET order (25%) or a LIMIT IOC crossing the best opposite price."""
    if b.rng.random() < 0.25:
        return PlaceOrder(acct, m.mkt, side, qty, None, OrderType.MARKET, TimeInForce.IOC,
                          reduce_only, None, SelfTrade.EXPIRE_MAKER)
    fair = b.fair[m.mkt]
    slip = b.rng.randint(5, 40)
    order = ioc_order(m, acct, side, qty, fair, slip, reduce_only=reduce_only)
    best = b.view.best_ask(m.mkt) if side == Side.BUY else b.view.best_bid(m.mkt)
    if best is not None and order.price_st is not None and abs(best - fair) < fair // 100:
        # Cross at least the best opposite quote (the book may lag the oracle).
        price = max(order.price_st, best) if side == Side.BUY else min(order.price_st, best)
        order = replace(order, price_st=price)
    return order


def _stake_qq(b: Block, p: Persona) -> int:
    """The equity a user sizes positions on: AV, but never more than what they deposited.

    Without the cap, winners re-lever their profits every block and a crowd of
    gamblers compounds into a large share of open interest.
    """
    return min(b.view.margin(p.acct)[0], p.deposit_qq)


def _headroom_qq(b: Block, acct: str, m: MarketInfo) -> tuple[int, int]:
    """(AV, the extra notional this account could still open in `m` at 80% of max leverage)."""
    av, _imr, _mmr, free = b.view.margin(acct)
    return av, max(0, scale_ppm(free, m.max_lev_ppm) * 8 // 10)


def _act_take(b: Block) -> None:
    p = _pick(b, b.crowd.traders)
    m = _pick_market(b)
    if p is None or b.mode[m.mkt] != Mode.OK:
        return
    side = Side.BUY if b.rng.random() < 0.5 else Side.SELL
    best = b.view.best_ask(m.mkt) if side == Side.BUY else b.view.best_bid(m.mkt)
    if best is None:
        return
    av, room = _headroom_qq(b, p.acct, m)
    want = scale_ppm(av, p.lev_ppm * b.rng.randint(10, 60) // 100)
    have = m.value_qq(b.view.position(p.acct, m.mkt)[0], b.fair[m.mkt])
    if (have > 0) == (side == Side.BUY) and have != 0:
        # Adding: keep this market's exposure within the persona's usual leverage.
        room = min(room, max(0, scale_ppm(_stake_qq(b, p), p.lev_ppm) - abs(have)))
    notional = min(want, room, b.crowd.max_order_qq)
    qty = m.qty_for(notional, b.fair[m.mkt])
    if qty > 0:
        b.cmds.append(_taker_order(b, p.acct, m, side, qty))


def _held_position(b: Block) -> tuple[Persona, MarketInfo, int] | None:
    """A holder and a market in OK mode where it has a position (same draws as before)."""
    p = _pick(b, b.crowd.holders)
    m = _pick_market(b)
    if p is None or b.mode[m.mkt] != Mode.OK:
        return None
    size = b.view.position(p.acct, m.mkt)[0]
    return None if size == 0 else (p, m, size)


def _act_close(b: Block) -> None:
    held = _held_position(b)
    if held is None:
        return
    p, m, size = held
    frac = b.rng.choice((25, 50, 100))
    qty = max(m.step, abs(size) * frac // 100 // m.step * m.step)
    qty = min(qty, abs(size))
    side = Side.SELL if size > 0 else Side.BUY
    b.cmds.append(_taker_order(b, p.acct, m, side, qty, reduce_only=True))


def _act_protect(b: Block) -> None:
    """Put a TAKE_PROFIT and a STOP_LOSS on an unprotected position."""
    held = _held_position(b)
    if held is None:
        return
    p, m, size = held
    if any(o.mkt == m.mkt and o.type in TRIGGER_TYPES for o in b.view.open_orders(p.acct)):
        return
    mark = b.view.market(m.mkt).mark_st
    wide = p.role is Role.FOCUS
    d_tp = b.rng.randint(15_000, 50_000) if wide else b.rng.randint(3_000, 20_000)
    d_sl = b.rng.randint(15_000, 50_000) if wide else b.rng.randint(3_000, 20_000)
    qty = abs(size) // m.step * m.step
    if qty == 0:
        return
    lo, hi = floor_tick(mark, m.tick), ceil_tick(mark, m.tick)
    up_tp = max(ceil_tick(mark + scale_ppm(mark, d_tp), m.tick), hi + m.tick)
    down_tp = min(floor_tick(mark - scale_ppm(mark, d_tp), m.tick), lo - m.tick)
    up_sl = max(ceil_tick(mark + scale_ppm(mark, d_sl), m.tick), hi + m.tick)
    down_sl = min(floor_tick(mark - scale_ppm(mark, d_sl), m.tick), lo - m.tick)
    # A long's TP sells above the mark and its SL below; a short's the mirror (SPEC 8).
    side, tp, sl = (Side.SELL, up_tp, down_sl) if size > 0 else (Side.BUY, down_tp, up_sl)
    for kind, trig in ((OrderType.TAKE_PROFIT, tp), (OrderType.STOP_LOSS, sl)):
        if trig > 0:
            b.cmds.append(PlaceOrder(p.acct, m.mkt, side, qty, None, kind, TimeInForce.IOC,
                                     True, trig, SelfTrade.EXPIRE_MAKER))


def _act_overlev(b: Block) -> None:
    """Build (or top up) a position at 70-97% of the market's maximum leverage."""
    p = _pick(b, b.crowd.overlev)
    if p is None:
        return
    m = b.crowd.by_mkt[p.mkt]
    if b.mode[m.mkt] != Mode.OK:
        return
    size = b.view.position(p.acct, m.mkt)[0]
    av, room = _headroom_qq(b, p.acct, m)
    fair = b.fair[m.mkt]
    have = abs(m.value_qq(size, fair))
    target = scale_ppm(_stake_qq(b, p), p.lev_ppm)
    if av <= 10 * USDC or have * 10 >= target * 9:
        return
    side = p.side if size == 0 else (Side.BUY if size > 0 else Side.SELL)
    if size == 0 and b.rng.random() < 0.3:
        side = Side.SELL if side == Side.BUY else Side.BUY
    # The IMR check uses the whole free collateral here: that is the point.
    _av, _imr, _mmr, free = b.view.margin(p.acct)
    room = scale_ppm(free, m.max_lev_ppm) * 97 // 100
    qty = m.qty_for(min(target - have, room, b.crowd.max_order_qq), fair)
    if qty > 0:
        b.cmds.append(_taker_order(b, p.acct, m, side, qty))


def _act_focus(b: Block) -> None:
    """Hold the persona's side of the focus market near its target leverage."""
    p = _pick(b, b.crowd.focus_users)
    m = b.crowd.focus
    if p is None or b.mode[m.mkt] != Mode.OK:
        return
    size = b.view.position(p.acct, m.mkt)[0]
    fair = b.fair[m.mkt]
    opposite = (size > 0 and p.side == Side.SELL) or (size < 0 and p.side == Side.BUY)
    if opposite:
        close = Side.SELL if size > 0 else Side.BUY
        b.cmds.append(_taker_order(b, p.acct, m, close, abs(size), reduce_only=True))
        return
    av, room = _headroom_qq(b, p.acct, m)
    have = abs(m.value_qq(size, fair))
    target = scale_ppm(_stake_qq(b, p), p.lev_ppm)
    if size != 0 and b.rng.random() < 0.12:
        # Churn: take some profit or cut some risk.
        qty = abs(size) // 4 // m.step * m.step
        if qty > 0:
            close = Side.SELL if size > 0 else Side.BUY
            b.cmds.append(_taker_order(b, p.acct, m, close, qty, reduce_only=True))
        return
    if have * 10 >= target * 9:
        return
    qty = m.qty_for(min(target - have, room, b.crowd.max_order_qq), fair)
    if qty > 0:
        b.cmds.append(_taker_order(b, p.acct, m, p.side, qty))


def _act_passive(b: Block) -> None:
    """Rest a GTC limit 0.1-1.5% away from the fair price."""
    p = _pick(b, b.crowd.holders)
    m = _pick_market(b)
    if p is None or b.mode[m.mkt] != Mode.OK:
        return
    side = Side.BUY if b.rng.random() < 0.5 else Side.SELL
    fair = b.fair[m.mkt]
    d = scale_ppm(fair, b.rng.randint(1_000, 15_000))
    price = floor_tick(fair - d, m.tick) if side == Side.BUY else ceil_tick(fair + d, m.tick)
    _av, room = _headroom_qq(b, p.acct, m)
    qty = m.qty_for(min(b.rng.randint(1_000, 20_000) * USDC, room // 2), price)
    if qty > 0 and price > 0:
        b.cmds.append(PlaceOrder(p.acct, m.mkt, side, qty, price, OrderType.LIMIT,
                                 TimeInForce.GTC, False, None, SelfTrade.EXPIRE_MAKER))


def _act_cancel(b: Block) -> None:
    """A user cancels one of their open orders (rarely a TP/SL)."""
    for _ in range(4):
        p = _pick(b, b.crowd.holders)
        if p is None:
            return
        orders = [o for o in b.view.open_orders(p.acct)
                  if b.mode.get(o.mkt, Mode.OK) != Mode.HALTED]
        plain = [o for o in orders if o.type not in TRIGGER_TYPES]
        pool = orders if not plain or b.rng.random() < 0.15 else plain
        if pool:
            o = pool[b.rng.randrange(len(pool))]
            b.cmds.append(CancelOrder(p.acct, o.order_id))
            return


def _act_deposit(b: Block) -> None:
    """A trader or holder adds collateral (gamblers only re-deposit once wiped out)."""
    p = _pick(b, b.crowd.holders)
    if p is not None:
        amount = b.rng.randint(100, 5_000) * USDC
        b.cmds.append(Deposit(p.acct, amount, b.ext_ref("d")))


def _act_withdraw(b: Block) -> None:
    """Withdraw 1-20% of the free collateral (never more than the balance)."""
    if any(mode != Mode.OK for mode in b.mode.values()):
        return
    p = _pick(b, b.crowd.users)
    if p is None:
        return
    _av, _imr, _mmr, free = b.view.margin(p.acct)
    cap = min(b.view.balance(p.acct), free)
    amount = cap * b.rng.randint(1, 20) // 100 // USDC * USDC
    if amount >= 10 * USDC:
        b.cmds.append(Withdraw(p.acct, amount, b.ext_ref("w")))


def _act_refill(b: Block) -> None:
    """A wiped-out gambler deposits again (keeps liquidations coming in long runs)."""
    p = _pick(b, b.crowd.overlev)
    if p is None:
        return
    av = b.view.margin(p.acct)[0]
    if av * 5 < p.deposit_qq:
        b.cmds.append(Deposit(p.acct, p.deposit_qq, b.ext_ref("r")))


#: The user actions with their relative weights (market makers and the vault act separately).
_ACTIONS: tuple[tuple[str, int, Callable[[Block], None]], ...] = (
    ("take", 26, _act_take),
    ("close", 8, _act_close),
    ("protect", 10, _act_protect),
    ("overlev", 10, _act_overlev),
    ("focus", 14, _act_focus),
    ("passive", 10, _act_passive),
    ("cancel", 8, _act_cancel),
    ("deposit", 4, _act_deposit),
    ("withdraw", 4, _act_withdraw),
    ("refill", 3, _act_refill),
)
