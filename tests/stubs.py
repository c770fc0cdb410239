"""Builders for tests: engines at genesis, funded accounts, orders, blocks, event filters."""

from __future__ import annotations

from typing import Any

from ledger.core import Engine, genesis_commands
from ledger.core.engine import BlockResult
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import LossMode, OrderType, SelfTrade, Side, TimeInForce
from ledger.markets import DEMO_MARKETS, Listing, _params

T0 = 1_768_780_800  # 2026-01-19 00:00:00 UTC
BTC = "BTC-PERP"
ETH = "ETH-PERP"
BUY = Side.BUY
SELL = Side.SELL
#: 1 BTC in bq (atomic_resolution -10) and $1 in st and qq for BTC-PERP (qce -9).
BTC_1 = 10**10
USD = 10**6
PX = 100_000  # $1 in subticks
BTC_MARK = 5_000_000_000  # $50,000

#: A test market with round numbers: 20x, mmf 3%, maker -0.005%, taker 0.03%.
TEST_MARKETS: tuple[Listing, ...] = DEMO_MARKETS


def simple_listing(mkt: str = BTC, oracle: int = BTC_MARK, index: int = 0,
                   **overrides: int) -> Listing:
    base: dict[str, int] = dict(atomic_resolution=-10, step_bq=1_000_000, tick_st=100_000,
                                maker_fee_ppm=-50, taker_fee_ppm=300)
    base.update(overrides)
    return Listing(mkt, _params(**base), oracle, index)


class Sim:
    """An engine plus a block clock, for given/when/then tests."""

    def __init__(self, listings: tuple[Listing, ...] | list[Listing] = (), *,
                 guards: bool = False, loss_mode: LossMode | None = None) -> None:
        self.engine = Engine()
        self.time = T0
        self.height = 0
        self.results: list[BlockResult] = []
        self.block(*genesis_commands(listings or (simple_listing(),), time=T0,
                                     guards_enabled=guards, loss_mode=loss_mode)[1:-1])

    def block(self, *cmds: Any, dt: int = 0) -> BlockResult:
        """Run one block of commands at time += dt; check invariants after it."""
        self.time += dt
        r = self.engine.run_block(self.height, [c.BeginBlock(self.time), *cmds])
        self.results.append(r)
        self.engine.check_invariants(self.height)
        self.height += 1
        return r

    def fund(self, acct: str, amount_qq: int) -> None:
        self.block(c.CreateAccount(acct), c.Deposit(acct, amount_qq, f"dep-{acct}"))

    @property
    def state(self) -> Any:
        return self.engine.state


def submit(seq: Any, cmds: list[Any], *, operator: str = "tests",
           reason: str = "test") -> Any:
    """`Sequencer.submit`, with operator commands journaled and signed the way the
    operator paths do it (a signed chain refuses them otherwise)."""
    from ledger.core.authority import is_privileged
    from ledger.store.journal import JournalEntry

    if any(is_privileged(cmd) for cmd in cmds):
        return seq.submit(cmds, journal=JournalEntry("test", operator, reason),
                          operator_key=seq.operator_key())
    return seq.submit(cmds)


def limit(acct: str, side: Side, qty: int, price: int, mkt: str = BTC, *,
          tif: TimeInForce = TimeInForce.GTC, reduce_only: bool = False,
          stp: SelfTrade = SelfTrade.EXPIRE_MAKER) -> c.PlaceOrder:
    return c.PlaceOrder(acct, mkt, side, qty, price, OrderType.LIMIT, tif, reduce_only, None, stp)


def market(acct: str, side: Side, qty: int, mkt: str = BTC, *, reduce_only: bool = False,
           stp: SelfTrade = SelfTrade.EXPIRE_MAKER) -> c.PlaceOrder:
    return c.PlaceOrder(acct, mkt, side, qty, None, OrderType.MARKET, TimeInForce.IOC,
                        reduce_only, None, stp)


def trigger_order(acct: str, otype: OrderType, side: Side, qty: int, trigger: int,
                  price: int | None = None, mkt: str = BTC,
                  tif: TimeInForce = TimeInForce.IOC) -> c.PlaceOrder:
    return c.PlaceOrder(acct, mkt, side, qty, price, otype, tif, True, trigger,
                        SelfTrade.EXPIRE_MAKER)


def oracle(price: int, mkt: str = BTC, basis: int = 0) -> c.UpdateOracle:
    return c.UpdateOracle(mkt, price, basis)


def outs(r: BlockResult, *types: type[Any]) -> list[Any]:
    """The OUT records of a block, optionally only the given types."""
    return [e.event for e in r.envelopes
            if e.cause and (not types or isinstance(e.event, types))]


def fills(r: BlockResult) -> list[o.Filled]:
    return [e for e in outs(r, o.Filled)]


def reasons(r: BlockResult) -> list[str]:
    return [e.reason for e in outs(r, o.OrderRejected)]


def cancels(r: BlockResult) -> list[tuple[int, str]]:
    return [(e.order_id, e.reason.name) for e in outs(r, o.OrderCancelled)]


def random_commands(rng: Any, engine: Engine, accts: list[str], n: int, *,
                    mkts: tuple[str, ...] = (BTC,), invalid: bool = True) -> list[Any]:
    """A realistic random mix of IN commands for one block (rng: random.Random)."""
    from ledger.events.enums import FundingResumeAction, Mode

    st = engine.state
    out: list[Any] = []
    for _ in range(n):
        mkt = rng.choice(mkts)
        m = st.markets[mkt]
        p = m.params
        acct = rng.choice(accts)
        mark = m.mark
        r = rng.random()
        tick = p.tick_st
        if r < 0.45:
            off = rng.randint(-30, 30) * tick * max(1, mark // (tick * 2000))
            price = max(tick, (mark + off) // tick * tick)
            qty = rng.randint(1, 50) * p.step_bq * (100 if p.atomic_resolution < -9 else 1)
            tif = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC,
                              TimeInForce.POST_ONLY])
            out.append(c.PlaceOrder(acct, mkt, rng.choice([BUY, SELL]), qty, price,
                                    OrderType.LIMIT, tif, rng.random() < 0.1, None,
                                    rng.choice(list(SelfTrade))))
        elif r < 0.55:
            qty = rng.randint(1, 30) * p.step_bq * (100 if p.atomic_resolution < -9 else 1)
            out.append(c.PlaceOrder(acct, mkt, rng.choice([BUY, SELL]), qty, None,
                                    OrderType.MARKET, TimeInForce.IOC, rng.random() < 0.2,
                                    None, SelfTrade.EXPIRE_MAKER))
        elif r < 0.58 and acct in st.accounts:
            # lever up close to the maximum the account's free collateral allows
            av, imr, _, _ = engine.margin(acct)
            free = av - imr
            qty = free * 10**6 // p.imf_ppm * 10 ** (-p.qce) // max(mark, 1)
            qty = qty // p.step_bq * p.step_bq * rng.choice([5, 8, 9]) // 10
            qty = qty // p.step_bq * p.step_bq
            if qty > 0:
                out.append(c.PlaceOrder(acct, mkt, rng.choice([BUY, SELL]), qty, None,
                                        OrderType.MARKET, TimeInForce.IOC, False, None,
                                        SelfTrade.EXPIRE_MAKER))
        elif r < 0.62:
            qty = rng.randint(1, 30) * p.step_bq * (100 if p.atomic_resolution < -9 else 1)
            otype = rng.choice([OrderType.STOP_LOSS, OrderType.TAKE_PROFIT])
            trig = max(1, mark + rng.randint(-50, 50) * tick)
            out.append(c.PlaceOrder(acct, mkt, rng.choice([BUY, SELL]), qty, None, otype,
                                    TimeInForce.IOC, True, trig, SelfTrade.EXPIRE_MAKER))
        elif r < 0.72:
            a = st.accounts.get(acct)
            if a is not None and a.orders:
                out.append(c.CancelOrder(acct, rng.choice(sorted(a.orders))))
            elif invalid:
                out.append(c.CancelOrder(acct, rng.randint(1, 10**6)))
        elif r < 0.80:
            move = rng.randint(-200, 200) * mark // 100_000
            out.append(c.UpdateOracle(mkt, max(1, m.oracle + move), rng.randint(-300, 300)))
        elif r < 0.85:
            t = st.time
            exp = engine.expected_funding_index(mkt, t) if t > m.last_funding_time else m.index
            if rng.random() < 0.1 and invalid:
                exp = 0
            out.append(c.FundingTick(mkt, t, m.index, m.last_funding_time, exp))
        elif r < 0.88:
            out.append(c.Deposit(acct, rng.randint(1, 10_000) * USD, "d"))
        elif r < 0.91:
            out.append(c.Withdraw(acct, rng.randint(1, 20_000) * USD, "w"))
        elif r < 0.93 and invalid:
            mode = rng.choice([Mode.OK, Mode.OK, Mode.OK, Mode.POST_ONLY, Mode.CANCEL_ONLY])
            out.append(c.SetMode(rng.choice(["ALL", mkt]), mode,
                                 rng.choice([0, 500, 2000]), "test", "op"))
        elif r < 0.94 and invalid:
            out.append(c.ResumeMarket(mkt, "test", "op"))
        elif r < 0.95 and invalid:
            out.append(c.FundingResume(mkt, rng.choice(list(FundingResumeAction))))
        elif r < 0.96 and invalid:
            out.append(c.IssueRefund(acct, rng.randint(1, 1000) * USD, "LIQ_VAULT", "r"))
        elif r < 0.97 and invalid:
            out.append(c.BulkCancel(rng.choice(["ALL", mkt]),
                                    (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT), "op"))
    return out


def derived(engine: Engine) -> dict[str, Any]:
    """The data evolve maintains incrementally besides the canonical state (books, trigger
    lists, B/A order sums, holders, long open interest), for comparison with a restore."""
    st = engine.state
    return {
        "markets": {mkt: (sorted(m.holders), m.oi_long, list(m.bids.order_ids()),
                          list(m.asks.order_ids()), list(m.triggers.below),
                          list(m.triggers.above))
                    for mkt, m in sorted(st.markets.items())},
        "open": {(acct, mkt): (p.buy_open, p.sell_open)
                 for acct, a in sorted(st.accounts.items())
                 for mkt, p in sorted(a.positions.items())},
        "orders": {acct: list(a.orders) for acct, a in sorted(st.accounts.items())},
    }
