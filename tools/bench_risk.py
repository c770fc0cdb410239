"""Risk-path benchmark: funding settlement and the liquidation sweep at 10K and 100K accounts.

Everything runs through the real `Engine.run_block` on a state built with real
commands (no mocks, no state surgery): genesis with guards off (G7 would halt a
market on a liquidation surge instead of liquidating, and the point here is to
time the liquidations), the vault and two market makers funded, then every user
created and funded and given a position by one IOC order crossing a maker's
resting order (a fifth of them trade a second market). Leverage is 2-10x for most
users and 17-19x for one in ten, so that a 3% move liquidates the leveraged side.

Per size it times (wall clock, the engine's own GC handling included):

- steady blocks: oracle noise on both markets and `activity` small orders by
  random users; the sweep (the EndBlock handler: candidates from the watch,
  exact checks, re-watching) is timed by wrapping the handler in place, and the
  number of exactly-checked candidates is counted the same way;
- the funding-tick block: a `FundingTick` per market plus the same activity.
  Settlement is lazy (SPEC 4): the tick itself is O(1) and each position settles
  when it is next touched, so its cost is the settlements of the accounts the
  block touches (`funding_settled_in_tick_block`). Nothing in the engine settles
  every position at once (a tick does not, the sweep does not); for reference,
  `forced_full_settle_*` is a block in which every user withdraws 1 qq, which
  settles all their positions;
- the shock block: BTC's oracle 3% down in one update; the sweep confirms and
  liquidates the accounts it makes liquidatable (`liquidations_in_shock`).

`run([10_000, 100_000])` returns {"results": [...per size...], "steady_sweep_ratio",
"accounts_ratio"}: the sweep's steady cost follows the block's activity, not
the number of accounts, so the ratio stays far below the accounts ratio.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ledger.core import LIQ_VAULT, Engine, genesis_commands
from ledger.core import decide as core_decide
from ledger.core import liquidation as core_liquidation
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import OrderType, SelfTrade, Side, TimeInForce
from ledger.markets import DEMO_MARKETS

T0 = 1_768_780_800
USD = 10**6
BTC = "BTC-PERP"
ETH = "ETH-PERP"
MARKETS = (BTC, ETH)
MAKER_ASK = "mm-ask"  # sells to the longs
MAKER_BID = "mm-bid"  # buys from the shorts
SETUP_BLOCK = 20_000  # commands per setup block
SHOCK_PPM = 30_000  # the 3% move


class _Timer:
    """Accumulates the wall time and the exact-check candidates of the EndBlock sweep."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.candidates = 0


@contextmanager
def _instrumented(timer: _Timer) -> Iterator[None]:
    """Wrap the real EndBlock handler and the watch's candidate list while inside."""
    handlers = core_decide.HANDLERS
    end_block = handlers[c.EndBlock]
    names = vars(core_liquidation)  # the sweep calls `candidates` through its module
    candidates = names["candidates"]

    def timed_end_block(ctx: Any, cmd: Any) -> None:
        t = time.perf_counter()
        try:
            end_block(ctx, cmd)
        finally:
            timer.seconds += time.perf_counter() - t

    def counted_candidates(st: Any) -> list[str]:
        out: list[str] = candidates(st)
        timer.candidates += len(out)
        return out

    handlers[c.EndBlock] = timed_end_block
    names["candidates"] = counted_candidates
    try:
        yield
    finally:
        handlers[c.EndBlock] = end_block
        names["candidates"] = candidates


def _limit(acct: str, mkt: str, side: Side, qty: int, price: int,
           tif: TimeInForce = TimeInForce.IOC) -> c.PlaceOrder:
    return c.PlaceOrder(acct, mkt, side, qty, price, OrderType.LIMIT, tif, False, None,
                        SelfTrade.EXPIRE_MAKER)


class _Bench:
    """One size: the engine, the block clock and the users' plan."""

    def __init__(self, accounts: int, seed: int, say: Callable[[str], None] | None) -> None:
        self.n = accounts
        self.rng = random.Random(seed)
        self.say = say
        self.engine = Engine()
        self.height = 0
        self.time = T0
        self.listings = {li.mkt: li for li in DEMO_MARKETS}
        self.users = [f"r{i:06d}" for i in range(accounts)]

    # -- blocks ---------------------------------------------------------------

    def block(self, cmds: list[Any], dt: int = 1) -> tuple[float, Any]:
        self.time += dt
        t = time.perf_counter()
        r = self.engine.run_block(self.height, [c.BeginBlock(self.time), *cmds])
        elapsed = time.perf_counter() - t
        self.height += 1
        return elapsed, r

    def blocks(self, cmds: list[Any], per_block: int) -> None:
        for i in range(0, len(cmds), per_block):
            self.block(cmds[i:i + per_block])

    def _mark(self, mkt: str) -> int:
        return self.engine.market(mkt).mark_st

    def _tick(self, mkt: str) -> int:
        return self.listings[mkt].params.tick_st

    def _step(self, mkt: str) -> int:
        return self.listings[mkt].params.step_bq

    def _qty(self, mkt: str, notional_qq: int, price: int) -> int:
        """Base quanta worth about `notional_qq` at `price` (whole steps, at least one)."""
        p = self.listings[mkt].params
        q = notional_qq * int(10 ** (-p.qce)) // price
        return max(p.step_bq, q // p.step_bq * p.step_bq)

    # -- state ----------------------------------------------------------------

    def build(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.block(genesis_commands(DEMO_MARKETS, time=self.time, guards_enabled=False)[1:-1],
                   dt=0)
        big = 10**16  # $10bn: the makers carry the whole crowd's inventory
        self.block([c.Deposit(LIQ_VAULT, 500_000_000 * USD, "vault"),
                    c.CreateAccount(MAKER_ASK), c.Deposit(MAKER_ASK, big, "mm-a"),
                    c.CreateAccount(MAKER_BID), c.Deposit(MAKER_BID, big, "mm-b")])
        rng = self.rng
        # each user: deposit, a market, a side and a leverage (one in ten at 17-19x)
        plan = []
        for u in self.users:
            dep = rng.randint(500, 5_000) * USD
            lev = rng.randint(17, 19) if rng.random() < 0.1 else rng.randint(2, 10)
            long_ = rng.random() < 0.5
            second = rng.random() < 0.2
            plan.append((u, dep, lev, long_, second))
        setup: list[Any] = []
        for u, dep, _, _, _ in plan:
            setup += [c.CreateAccount(u), c.Deposit(u, dep, f"d-{u}")]
        self.blocks(setup, SETUP_BLOCK)
        if self.say:
            self.say(f"{self.n:,} accounts funded")
        prices = {mkt: self._mark(mkt) for mkt in MARKETS}
        ask = {mkt: prices[mkt] + self._tick(mkt) for mkt in MARKETS}
        bid = {mkt: prices[mkt] - self._tick(mkt) for mkt in MARKETS}
        orders: list[Any] = []
        need = {(mkt, s): 0 for mkt in MARKETS for s in (Side.BUY, Side.SELL)}
        for u, dep, lev, long_, second in plan:
            mkts = (BTC, ETH) if second else (BTC if self.rng.random() < 0.6 else ETH,)
            for mkt in mkts:
                notional = dep * lev // len(mkts)
                side = Side.BUY if long_ else Side.SELL
                px = ask[mkt] if long_ else bid[mkt]
                q = self._qty(mkt, notional, px)
                need[(mkt, side)] += q
                orders.append(_limit(u, mkt, side, q, px))
        makers = []
        for mkt in MARKETS:
            # resting liquidity for everyone plus the steady blocks' flow
            makers.append(_limit(MAKER_ASK, mkt, Side.SELL, need[(mkt, Side.BUY)] * 2,
                                 ask[mkt], TimeInForce.GTC))
            makers.append(_limit(MAKER_BID, mkt, Side.BUY, need[(mkt, Side.SELL)] * 2,
                                 bid[mkt], TimeInForce.GTC))
        self.block(makers)
        self.blocks(orders, SETUP_BLOCK)
        positions = sum(len(self.engine.positions(u)) for u in self.users)
        if self.say:
            self.say(f"{positions:,} positions opened")
        self.ask, self.bid = ask, bid
        self.plan = plan
        return {"setup_s": round(time.perf_counter() - t0, 1), "positions": positions}

    # -- activity -------------------------------------------------------------

    def oracle_noise(self) -> list[Any]:
        out = []
        for mkt in MARKETS:
            m = self.engine.market(mkt)
            move = m.oracle_st * self.rng.randint(-200, 200) // 1_000_000  # +-0.02%
            out.append(c.UpdateOracle(mkt, m.oracle_st + move, 0))
        return out

    def activity(self, n: int) -> list[Any]:
        """`n` small IOC orders by random users against the makers' resting orders."""
        out = []
        for _ in range(n):
            u = self.users[self.rng.randrange(self.n)]
            mkt = BTC if self.rng.random() < 0.6 else ETH
            buy = self.rng.random() < 0.5
            q = self._qty(mkt, self.rng.randint(50, 500) * USD, self.ask[mkt])
            out.append(_limit(u, mkt, Side.BUY if buy else Side.SELL, q,
                              self.ask[mkt] if buy else self.bid[mkt]))
        return out

    def funding_ticks(self) -> list[Any]:
        out = []
        for mkt in MARKETS:
            m = self.engine.market(mkt)
            out.append(c.FundingTick(mkt, self.time + 1, m.funding_index, m.last_funding_time,
                                     self.engine.expected_funding_index(mkt, self.time + 1)))
        return out

    # -- the measurement ------------------------------------------------------

    def measure(self, steady_blocks: int, activity: int) -> dict[str, Any]:
        res: dict[str, Any] = {"accounts": self.n}
        res.update(self.build())
        timer = _Timer()
        with _instrumented(timer):
            # one block of noise first: every account touched while building is
            # checked once and registered in the watch; not counted
            self.block(self.oracle_noise())
            steady_ms = []
            timer.seconds, timer.candidates = 0.0, 0
            for _ in range(steady_blocks):
                elapsed, _r = self.block(self.oracle_noise() + self.activity(activity))
                steady_ms.append(elapsed * 1000)
            res["steady_blocks"] = steady_blocks
            res["activity_orders_per_block"] = activity
            res["block_ms_steady"] = round(sum(steady_ms) / steady_blocks, 2)
            res["sweep_ms_per_block_steady"] = round(timer.seconds * 1000 / steady_blocks, 3)
            res["sweep_candidates_per_block_steady"] = round(timer.candidates / steady_blocks,
                                                             1)
            # funding: a tick per market plus the same activity
            timer.seconds, timer.candidates = 0.0, 0
            elapsed, r = self.block(self.funding_ticks() + self.oracle_noise()
                                    + self.activity(activity))
            res["funding_tick_block_ms"] = round(elapsed * 1000, 2)
            res["funding_ticks"] = sum(isinstance(e.event, o.FundingTicked)
                                       for e in r.envelopes)
            res["funding_settled_in_tick_block"] = sum(
                isinstance(e.event, o.FundingSettled) for e in r.envelopes)
            res["sweep_ms_tick_block"] = round(timer.seconds * 1000, 3)
            res["full_settle_on_tick"] = False
            # reference only: every user withdraws 1 qq, which settles all positions
            elapsed, r = self.block([c.Withdraw(u, 1, f"w-{u}") for u in self.users])
            settled = sum(isinstance(e.event, o.FundingSettled) for e in r.envelopes)
            res["forced_full_settle_block_ms"] = round(elapsed * 1000, 1)
            res["forced_full_settle_positions"] = settled
            # the shock: BTC's oracle 3% down in one update. The makers pull their BTC
            # quotes the block before, as a real book empties in a crash; a book still
            # quoting the old price would hold the mark up through the basis median.
            self.block([c.CancelOrder(mm, od.order_id) for mm in (MAKER_ASK, MAKER_BID)
                        for od in self.engine.open_orders(mm) if od.mkt == BTC])
            timer.seconds, timer.candidates = 0.0, 0
            m = self.engine.market(BTC)
            shock = c.UpdateOracle(BTC, m.oracle_st - m.oracle_st * SHOCK_PPM // 1_000_000, 0)
            elapsed, r = self.block([shock])
            liqs = [e.event for e in r.envelopes if isinstance(e.event, o.Liquidated)]
            res["shock_block_ms"] = round(elapsed * 1000, 1)
            res["sweep_ms_per_block_shock"] = round(timer.seconds * 1000, 1)
            res["sweep_candidates_shock"] = timer.candidates
            res["liquidations_in_shock"] = len(liqs)
            res["liquidation_methods"] = {
                meth.name: sum(x.method == meth for x in liqs)
                for meth in sorted({x.method for x in liqs})}
            res["events_in_shock_block"] = len(r.envelopes)
            res["shock_mark_move_ppm"] = (self.engine.market(BTC).mark_st - m.mark_st
                                          ) * 1_000_000 // m.mark_st
            # the block after the shock: the makers quote again, activity as before
            mark = self.engine.market(BTC).mark_st
            self.ask[BTC] = mark + self._tick(BTC)
            self.bid[BTC] = mark - self._tick(BTC)
            depth = self._qty(BTC, 10**9 * USD, mark)
            self.block([_limit(MAKER_ASK, BTC, Side.SELL, depth, self.ask[BTC], TimeInForce.GTC),
                        _limit(MAKER_BID, BTC, Side.BUY, depth, self.bid[BTC], TimeInForce.GTC)])
            timer.seconds, timer.candidates = 0.0, 0
            elapsed, _r = self.block(self.oracle_noise() + self.activity(activity))
            res["sweep_ms_after_shock"] = round(timer.seconds * 1000, 3)
        self.engine.check_invariants(self.height - 1)
        return res


def run(sizes: list[int], say: Callable[[str], None] | None = None, *,
        steady_blocks: int = 20, activity: int = 1_000, seed: int = 5) -> dict[str, Any]:
    """Measure the funding and liquidation paths for each number of accounts in `sizes`."""
    results = []
    for n in sizes:
        if say is not None:
            say(f"{n:,} accounts")
        t = time.perf_counter()
        res = _Bench(n, seed, say).measure(steady_blocks, activity)
        res["total_s"] = round(time.perf_counter() - t, 1)
        results.append(res)
    out: dict[str, Any] = {"results": results}
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        out["accounts_ratio"] = round(hi["accounts"] / lo["accounts"], 1)
        out["steady_sweep_ratio"] = round(
            hi["sweep_ms_per_block_steady"] / max(lo["sweep_ms_per_block_steady"], 1e-9), 2)
    return out


if __name__ == "__main__":
    import json
    import sys

    args = [int(a) for a in sys.argv[1:]] or [10_000, 100_000]
    print(json.dumps(run(args, say=lambda m: print(m, file=sys.stderr)), indent=1))
