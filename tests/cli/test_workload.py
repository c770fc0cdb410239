"""The workload generator behind `ledgerctl simulate` and the incident demo.

Pure generator properties run against a small fake view; the behaviour that
needs an exchange (fills, TP/SL triggers, liquidations, no guard trips, the
zeroed funding index) runs the real `ledger.core.engine.Engine`, checking the
SPEC 11 invariants after every block.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from ledger.core.engine import Engine
from ledger.core.genesis import genesis_commands
from ledger.events.commands import (
    BeginBlock,
    CreateAccount,
    Deposit,
    FundingTick,
    PlaceOrder,
    UpdateOracle,
    Withdraw,
)
from ledger.events.enums import Mode, OrderType, Side
from ledger.events.outcomes import (
    Filled,
    FundingTicked,
    FundingTickRejected,
    Liquidated,
    MarketHalted,
    ModeChanged,
    OrderRejected,
    OrderTriggered,
)
from ledger.markets import DEMO_MARKETS
from tools.workload import VAULT, Workload

T0 = 1_768_780_800  # 2026-01-19 00:00:00 UTC
PARAMS = {lst.mkt: lst.params for lst in DEMO_MARKETS}


@dataclass
class FakeMarket:
    oracle_st: int
    mark_st: int
    funding_index: int
    last_funding_time: int


@dataclass
class FakeOrder:
    order_id: int
    mkt: str
    side: Side
    price_st: int | None
    type: OrderType


@dataclass
class FakeView:
    """Just enough of an engine to drive the generator: follows oracle and funding inputs."""

    markets: dict[str, FakeMarket]
    modes: dict[str, Mode] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> FakeView:
        return cls({lst.mkt: FakeMarket(lst.oracle_st, lst.oracle_st, lst.funding_index, T0)
                    for lst in DEMO_MARKETS})

    def apply(self, cmds: Sequence[Any]) -> None:
        for c in cmds:
            if isinstance(c, UpdateOracle):
                m = self.markets[c.mkt]
                m.oracle_st = m.mark_st = c.oracle_st
            elif isinstance(c, FundingTick):
                m = self.markets[c.mkt]
                m.funding_index, m.last_funding_time = c.new_index, c.time

    def margin(self, acct: str) -> tuple[int, int, int, int]:
        return (50_000_000_000, 1_000_000_000, 600_000_000, 49_000_000_000)

    def position(self, acct: str, mkt: str) -> tuple[int, int, int, int]:
        k = zlib.crc32(f"{acct}/{mkt}".encode()) % 7 - 3
        return (k * PARAMS[mkt].step_bq * 10, 0, 0, 0)

    def balance(self, acct: str) -> int:
        return 50_000_000_000

    def market(self, mkt: str) -> FakeMarket:
        return self.markets[mkt]

    def open_orders(self, acct: str) -> list[FakeOrder]:
        k = zlib.crc32(acct.encode())
        mkt = DEMO_MARKETS[k % 4].mkt
        px = self.markets[mkt].oracle_st
        return [FakeOrder(k % 1000 + 1, mkt, Side.BUY, px - 10 * PARAMS[mkt].tick_st,
                          OrderType.LIMIT)]

    def best_bid(self, mkt: str) -> int | None:
        return self.markets[mkt].oracle_st - PARAMS[mkt].tick_st

    def best_ask(self, mkt: str) -> int | None:
        return self.markets[mkt].oracle_st + PARAMS[mkt].tick_st

    def expected_funding_index(self, mkt: str, time: int) -> int:
        return self.markets[mkt].funding_index + 1_000

    def effective_mode(self, mkt: str) -> Mode:
        return self.modes.get(mkt, Mode.OK)


def _stream(seed: int, blocks: int, **kw: Any) -> list[list[Any]]:
    wl = Workload(seed=seed, accounts=kw.pop("accounts", 60), listings=DEMO_MARKETS,
                  start_time=T0, **kw)
    view = FakeView.fresh()
    out = [wl.setup_commands()]
    for h in range(2, blocks + 2):
        cmds = wl.next_block(h, view)
        view.apply(cmds)
        out.append(cmds)
    return out


def test_same_seed_and_args_give_the_same_commands() -> None:
    assert _stream(7, 120) == _stream(7, 120)


def test_a_different_seed_gives_different_commands() -> None:
    assert _stream(7, 30) != _stream(8, 30)


def test_setup_creates_and_funds_every_user_and_the_vault() -> None:
    wl = Workload(seed=1, accounts=25, listings=DEMO_MARKETS, start_time=T0)
    cmds = wl.setup_commands()
    created = [c.acct for c in cmds if isinstance(c, CreateAccount)]
    assert created == [f"u{i:05d}" for i in range(1, 26)]
    deposits = [c for c in cmds if isinstance(c, Deposit)]
    assert sorted(d.acct for d in deposits) == sorted([*created, VAULT])
    assert len({d.ext_ref for d in deposits}) == len(deposits)
    assert all(d.amount_qq > 0 for d in deposits)


def test_every_block_starts_with_its_time_and_stays_near_the_budget() -> None:
    wl = Workload(seed=3, accounts=400, listings=DEMO_MARKETS, start_time=T0,
                  block_interval_s=2)
    assert wl.commands_per_block == 120
    view = FakeView.fresh()
    sizes = []
    for h in range(2, 60):
        cmds = wl.next_block(h, view)
        view.apply(cmds)
        assert cmds[0] == BeginBlock(T0 + 2 * h)
        assert not any(isinstance(c, BeginBlock) for c in cmds[1:])
        sizes.append(len(cmds) - 1)
    assert max(sizes) <= 120
    assert sum(sizes) / len(sizes) >= 80


def test_every_price_is_on_tick_and_every_size_on_step() -> None:
    orders = [c for blk in _stream(11, 150) for c in blk if isinstance(c, PlaceOrder)]
    kinds = {o.type for o in orders}
    assert kinds == {OrderType.LIMIT, OrderType.MARKET, OrderType.TAKE_PROFIT,
                     OrderType.STOP_LOSS}
    for o in orders:
        p = PARAMS[o.mkt]
        assert o.qty_bq > 0 and o.qty_bq % p.step_bq == 0, o
        for price in (o.price_st, o.trigger_st):
            assert price is None or (price > 0 and price % p.tick_st == 0), o
        assert (o.price_st is None) == (o.type != OrderType.LIMIT), o
        assert (o.trigger_st is not None) == (o.type in (OrderType.TAKE_PROFIT,
                                                          OrderType.STOP_LOSS)), o


def test_tp_and_sl_triggers_sit_on_the_correct_side_of_the_mark() -> None:
    wl = Workload(seed=5, accounts=80, listings=DEMO_MARKETS, start_time=T0)
    view = FakeView.fresh()
    checked = 0
    for h in range(2, 200):
        marks = {k: m.mark_st for k, m in view.markets.items()}
        cmds = wl.next_block(h, view)
        for c in cmds:
            if isinstance(c, PlaceOrder) and c.trigger_st is not None:
                assert c.reduce_only
                mark = marks[c.mkt]
                above = (c.type == OrderType.TAKE_PROFIT) == (c.side == Side.SELL)
                assert (c.trigger_st > mark) if above else (c.trigger_st < mark), (c, mark)
                checked += 1
        view.apply(cmds)
    assert checked > 10


def test_oracle_moves_stay_well_inside_the_jump_limit_even_in_shocks() -> None:
    wl = Workload(seed=2, accounts=40, listings=DEMO_MARKETS, start_time=T0,
                  shock_rate_ppm=200_000, shock_warmup=5)
    view = FakeView.fresh()
    biggest = 0
    for h in range(2, 300):
        before = {k: m.oracle_st for k, m in view.markets.items()}
        cmds = wl.next_block(h, view)
        for c in cmds:
            if isinstance(c, UpdateOracle):
                assert c.oracle_st > 0 and abs(c.ext_basis_ppm) <= 50
                move = abs(c.oracle_st - before[c.mkt]) * 1_000_000 // before[c.mkt]
                assert move * 3 <= PARAMS[c.mkt].max_jump_ppm
                biggest = max(biggest, move)
        view.apply(cmds)
    assert biggest >= 10_000  # shocks do move prices by whole percents


def test_funding_ticks_follow_the_schedule_with_the_expected_index() -> None:
    view = FakeView.fresh()
    wl = Workload(seed=4, accounts=30, listings=DEMO_MARKETS, start_time=T0)
    ticks: list[FundingTick] = []
    for h in range(2, 200):
        cmds = wl.next_block(h, view)
        for c in cmds:
            if isinstance(c, FundingTick):
                m = view.markets[c.mkt]
                assert (c.prev_index, c.prev_time) == (m.funding_index, m.last_funding_time)
                assert c.new_index == m.funding_index + 1_000
                # No oracle update for a market in the block it ticks.
                assert not any(isinstance(u, UpdateOracle) and u.mkt == c.mkt for u in cmds)
                ticks.append(c)
        view.apply(cmds)
    assert [(t.mkt, t.time - T0) for t in ticks] == [
        (lst.mkt, k * 60) for k in (1, 2, 3) for lst in DEMO_MARKETS]


@pytest.mark.parametrize("target", ["PAXG-PERP", None])
def test_zero_funding_is_injected_exactly_at_the_requested_height(target: str | None) -> None:
    view = FakeView.fresh()
    wl = Workload(seed=9, accounts=30, listings=DEMO_MARKETS, start_time=T0,
                  inject_zero_funding=[(75, target)])
    zeroed: list[tuple[int, FundingTick]] = []
    for h in range(2, 130):
        before = {k: (m.funding_index, m.last_funding_time) for k, m in view.markets.items()}
        cmds = wl.next_block(h, view)
        for c in cmds:
            if isinstance(c, FundingTick):
                assert (c.prev_index, c.prev_time) == before[c.mkt]
                if c.new_index == 0:
                    zeroed.append((h, c))
        view.apply(cmds)
        view.markets = {k: m if m.funding_index else FakeMarket(m.oracle_st, m.mark_st,
                                                                before[k][0], before[k][1])
                        for k, m in view.markets.items()}  # the guard kept the old index
    expected = [lst.mkt for lst in DEMO_MARKETS] if target is None else [target]
    assert [(h, t.mkt) for h, t in zeroed] == [(75, mkt) for mkt in expected]
    assert all(t.time == T0 + 75 for _, t in zeroed)


def test_injection_naming_an_unlisted_market_is_refused() -> None:
    with pytest.raises(ValueError, match="DOGE-PERP"):
        Workload(seed=1, accounts=10, listings=DEMO_MARKETS, start_time=T0,
                 inject_zero_funding=[(5, "DOGE-PERP")])


def test_recovery_modes_are_respected() -> None:
    view = FakeView.fresh()
    view.modes = {"BTC-PERP": Mode.POST_ONLY, "ETH-PERP": Mode.CANCEL_ONLY,
                  "SOL-PERP": Mode.HALTED}
    wl = Workload(seed=6, accounts=60, listings=DEMO_MARKETS, start_time=T0)
    for h in range(2, 80):
        cmds = wl.next_block(h, view)
        view.apply(cmds)
        for c in cmds:
            if isinstance(c, PlaceOrder) and c.mkt == "BTC-PERP":
                assert c.tif.name == "POST_ONLY" and c.price_st is not None
                fair = view.markets["BTC-PERP"].oracle_st
                assert abs(c.price_st - fair) * 1_000_000 <= 500 * fair
            assert not (isinstance(c, PlaceOrder) and c.mkt in ("ETH-PERP", "SOL-PERP"))
            assert not isinstance(c, Withdraw)
            assert not (isinstance(c, FundingTick) and c.mkt == "SOL-PERP")


# ---- with the real engine -------------------------------------------------------


@dataclass
class Run:
    """What a workload did to a real engine: every command block, every outcome, the hash."""

    blocks: list[list[Any]]
    events: list[tuple[int, Any]]
    state_hash: bytes
    engine: Engine

    def count(self, kind: type[Any]) -> int:
        return sum(1 for _, e in self.events if isinstance(e, kind))

    def of(self, kind: type[Any]) -> list[tuple[int, Any]]:
        return [(h, e) for h, e in self.events if isinstance(e, kind)]


def _run_engine(seed: int, accounts: int, blocks: int, *, guards: bool = True,
                before: Callable[[int, Engine], None] | None = None, **kw: Any) -> Run:
    wl = Workload(seed=seed, accounts=accounts, listings=DEMO_MARKETS, start_time=T0, **kw)
    engine = Engine()
    engine.run_block(0, genesis_commands(DEMO_MARKETS, time=T0, guards_enabled=guards))
    setup = [BeginBlock(wl.block_time(1)), *wl.setup_commands()]
    out = Run([setup], [], b"", engine)
    engine.run_block(1, setup)
    for h in range(2, blocks + 2):
        if before is not None:
            before(h, engine)
        cmds = wl.next_block(h, engine)
        result = engine.run_block(h, cmds)
        engine.check_invariants(h)
        out.blocks.append(cmds)
        out.events += [(h, env.event) for env in result.envelopes]
    out.state_hash = engine.state_hash()
    return out


@pytest.fixture(scope="module")
def busy() -> Run:
    """300 blocks of 120 accounts with guards and shocks on."""
    return _run_engine(5, 120, 300)


def test_same_seed_reproduces_commands_and_state_hash_on_the_engine() -> None:
    a, b = _run_engine(3, 60, 120), _run_engine(3, 60, 120)
    assert a.blocks == b.blocks
    assert a.state_hash == b.state_hash
    assert a.state_hash == a.engine.full_state_hash()
    assert _run_engine(4, 60, 120).state_hash != a.state_hash


def test_a_few_hundred_blocks_trade_trigger_stops_and_liquidate(busy: Run) -> None:
    assert busy.count(Filled) > 1_000
    assert busy.count(OrderTriggered) > 10
    liquidated = busy.of(Liquidated)
    assert len(liquidated) >= 3
    # Genuine liquidations: the funding index never moved by more than a normal tick.
    assert all(t.new_index > 0 for _, t in busy.of(FundingTicked))


def test_generated_orders_are_never_refused_for_their_shape(busy: Run) -> None:
    reasons = Counter(e.reason for _, e in busy.of(OrderRejected))
    assert not {"STEP", "TICK", "INVALID", "UNKNOWN_ACCOUNT", "UNKNOWN_MARKET"} & set(reasons)
    orders = sum(1 for blk in busy.blocks for c in blk if isinstance(c, PlaceOrder))
    assert sum(reasons.values()) * 20 < orders  # rejections stay rare (races, margin)


@pytest.mark.parametrize("shocks", [True, False])
def test_normal_workload_never_trips_a_guard(shocks: bool, busy: Run) -> None:
    run = busy if shocks else _run_engine(8, 80, 200, shocks=False)
    assert run.count(FundingTickRejected) == 0
    assert run.count(MarketHalted) == 0
    assert run.count(ModeChanged) == 0
    blocks = len(run.blocks) - 1
    assert run.count(FundingTicked) == len(DEMO_MARKETS) * ((blocks + 1) // 60)


def test_zeroed_funding_is_applied_without_guards_and_hurts_paxg_holders() -> None:
    seen: dict[int, dict[str, tuple[int, int]]] = {}

    def snapshot(h: int, engine: Engine) -> None:
        if h in (150, 151):
            seen[h] = {a: (engine.position(a, "PAXG-PERP")[0], engine.margin(a)[0])
                       for a in engine.accounts()}

    run = _run_engine(2, 150, 160, guards=False, before=snapshot,
                      inject_zero_funding=[(150, "PAXG-PERP")])
    ticks = [(h, t) for h, t in run.of(FundingTicked) if t.new_index == 0]
    assert [(h, t.mkt) for h, t in ticks] == [(150, "PAXG-PERP")]
    # Both sides hold PAXG; the zeroed index takes ~12% of notional from every short.
    shorts = [a for a, (size, _) in seen[150].items() if size < 0]
    longs = [a for a, (size, _) in seen[150].items() if size > 0]
    assert len(shorts) >= 30 and len(longs) >= 30
    hurt = [a for a in shorts if seen[151][a][1] < seen[150][a][1] * 9 // 10]
    assert len(hurt) >= 15
    bogus = [e for h, e in run.of(Liquidated) if h == 150]
    assert len(bogus) >= 2
    assert all(p.mkt != "PAXG-PERP" or p.size_bq < 0 for e in bogus for p in e.positions)


def test_zeroed_funding_with_guards_on_is_rejected_at_that_height() -> None:
    run = _run_engine(2, 60, 160, inject_zero_funding=[(150, "PAXG-PERP")])
    rejected = run.of(FundingTickRejected)
    assert [(h, t.mkt, t.reason) for h, t in rejected] == [(150, "PAXG-PERP", "G3_ZEROED")]
    assert [(h, e.mkt) for h, e in run.of(MarketHalted)] == [(150, "PAXG-PERP")]
    assert all(h < 150 for h, _ in run.of(Liquidated))
