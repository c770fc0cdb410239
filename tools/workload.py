"""Deterministic workload generator behind `ledgerctl simulate` and the incident demo.

`Workload` plays every party outside the state machine: the users (market
makers, takers, position holders with TP/SL, over-leveraged gamblers, passive
limit traders), the oracle (a bounded random walk per market with occasional
shocks) and the funding service (a `FundingTick` per market every
`funding_tick_s` with the correct index, or a zeroed one where asked, the way
the 19 Jan 2026 restart race published it).

Determinism: the instance owns its `random.Random` objects and reseeds them from
`(seed, height)` at the start of every block, so `next_block(height, view)` is a
pure function of the constructor arguments, `height` and the view's answers.
Nothing reads the clock, the global `random` or iterates a set. Block `h` has
time `start_time + h * block_interval_s`: genesis (height 0) is at `start_time`
and `setup_commands()` is the content of block 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ledger.events.commands import (
    BeginBlock,
    CreateAccount,
    Deposit,
    FundingTick,
    UpdateOracle,
)
from ledger.events.enums import Mode
from ledger.markets import Listing
from tools.workload_actions import Block, Crowd, users_act
from tools.workload_makers import market_makers, vault_unwind
from tools.workload_model import (
    MAX_SHOCK_BLOCKS,
    PPM,
    USDC,
    VAULT,
    MarketInfo,
    Persona,
    Shock,
    make_personas,
    next_oracle,
    shock_starting_at,
)
from tools.workload_view import EngineView, MarketState, OpenOrder

__all__ = ["VAULT", "EngineView", "MarketState", "OpenOrder", "Workload"]


class Workload:
    """Generate blocks of IN commands for a realistic perpetual-futures exchange.

    Knobs (all keyword-only):

    - `seed`, `accounts` (>= 5), `listings`, `start_time`, `block_interval_s`.
    - `inject_zero_funding`: `(height, market or None for all)`; at that height a
      `FundingTick` with `new_index=0` is published for the market(s), on
      schedule or not, with correct `prev_index`/`prev_time`.
    - `shocks`, `shock_rate_ppm` (chance a shock starts in a block, after
      `shock_warmup` blocks): 3-6% moves over 3-6 blocks.
    - `volatility_ppm`: per-block oracle noise is triangular in +-this.
    - `vault_deposit_qq`: the liquidator vault's initial deposit.
    - `commands_per_block`: target commands per block after `BeginBlock`
      (default `min(150, 20 + accounts // 4)`).
    - `max_order_qq`: largest notional of one taker order.
    - `focus_market`: the market with the two-sided cohort (PAXG-PERP if listed,
      else the last listing).
    - `ref_prefix`: prefix of deposit/withdrawal `ext_ref`s; give a new one when
      re-generating heights after a rollback so refs stay unique.

    Raises `ValueError` for fewer than 5 accounts, no listings, an injection
    naming an unlisted market, or a block interval too long for a market's
    funding tick, oracle freshness or G4 gap.
    """

    def __init__(self, *, seed: int, accounts: int, listings: Sequence[Listing],
                 start_time: int, block_interval_s: int = 1,
                 inject_zero_funding: Sequence[tuple[int, str | None]] = (),
                 shocks: bool = True, vault_deposit_qq: int = 20_000_000 * USDC,
                 commands_per_block: int | None = None, shock_rate_ppm: int = 20_000,
                 shock_warmup: int = 50, volatility_ppm: int = 1_000,
                 max_order_qq: int = 25_000 * USDC, focus_market: str | None = None,
                 ref_prefix: str = "wl") -> None:
        if accounts < 5:
            raise ValueError(f"a workload needs at least 5 accounts, was {accounts}")
        if not listings:
            raise ValueError("a workload needs at least one listed market")
        if block_interval_s <= 0:
            raise ValueError(f"block_interval_s must be positive, was {block_interval_s}")
        self._seed = seed
        self._start_time = start_time
        self._interval = block_interval_s
        self._markets = [MarketInfo.of(listing) for listing in listings]
        for m in self._markets:
            # A ticking market skips that block's oracle update (see _funding_due), so
            # the oracle must stay fresh across two blocks and a tick one block late
            # must stay inside G4's max_gap.
            p = m.params
            if (2 * block_interval_s > min(p.funding_tick_s, p.oracle_max_age_s)
                    or p.funding_tick_s + block_interval_s > p.max_gap_s):
                raise ValueError(
                    f"block_interval_s={block_interval_s} is too long for {m.mkt} "
                    f"(funding_tick_s={p.funding_tick_s}, oracle_max_age_s="
                    f"{p.oracle_max_age_s}, max_gap_s={p.max_gap_s})")
        self._by_mkt = {m.mkt: m for m in self._markets}
        names = [m.mkt for m in self._markets]
        self._inject: dict[int, list[str]] = {}
        for height, mkt in inject_zero_funding:
            if mkt is not None and mkt not in self._by_mkt:
                raise ValueError(f"inject_zero_funding names market {mkt!r}, listed: {names}")
            targets = self._inject.setdefault(height, [])
            for name in names if mkt is None else [mkt]:
                if name not in targets:
                    targets.append(name)
        self._shocks = shocks
        self._shock_rate = shock_rate_ppm
        self._shock_warmup = shock_warmup
        self._vol = volatility_ppm
        self._vault_deposit = vault_deposit_qq
        self._budget = commands_per_block if commands_per_block is not None else min(
            150, 20 + accounts // 4)
        if focus_market is None:
            focus_market = "PAXG-PERP" if "PAXG-PERP" in self._by_mkt else names[-1]
        if focus_market not in self._by_mkt:
            raise ValueError(f"focus market {focus_market!r} is not listed: {names}")
        self._focus = self._by_mkt[focus_market]
        self._prefix = ref_prefix
        self._rng = random.Random(seed)
        self._shock_rng = random.Random(seed)
        self._rng.seed(f"{seed}/personas")
        self.personas: list[Persona] = make_personas(self._rng, accounts, self._markets,
                                                     self._focus)
        self._crowd = Crowd(self._markets, self._by_mkt, self._focus, self.personas,
                            self._budget, max_order_qq, ref_prefix)

    # ---- public API -------------------------------------------------------------

    @property
    def commands_per_block(self) -> int:
        """The target number of commands per block (after `BeginBlock`)."""
        return self._budget

    def block_time(self, height: int) -> int:
        """Return the `BeginBlock.time` of block `height` (genesis, height 0, is `start_time`)."""
        return self._start_time + height * self._interval

    def setup_commands(self) -> list[Any]:
        """Return the commands of the first block after genesis (without its `BeginBlock`).

        They create every user, fund each with its persona's deposit and fund the
        liquidator vault (which genesis creates).
        """
        out: list[Any] = [CreateAccount(p.acct) for p in self.personas]
        out += [Deposit(p.acct, p.deposit_qq, f"{self._prefix}-setup-{p.acct}")
                for p in self.personas]
        out.append(Deposit(VAULT, self._vault_deposit, f"{self._prefix}-setup-{VAULT}"))
        return out

    def shocks_at(self, height: int) -> list[Shock]:
        """Return the shocks moving some market at `height` (none when shocks are off)."""
        if not self._shocks:
            return []
        out: list[Shock] = []
        for start in range(max(0, height - MAX_SHOCK_BLOCKS + 1), height + 1):
            s = shock_starting_at(self._shock_rng, self._seed, start, len(self._markets),
                                  self._shock_rate, self._shock_warmup)
            if s is not None and s.step_ppm(height) != 0:
                out.append(s)
        return out

    def next_block(self, height: int, view: EngineView) -> list[Any]:
        """Return `[BeginBlock(time), *commands]` for block `height`, read against `view`.

        Order inside the block: oracle updates, funding ticks, market makers'
        cancels and quotes, then the other users' commands.
        """
        self._rng.seed(f"{self._seed}/block/{height}")
        b = Block(height, self.block_time(height), view, self._rng, self._crowd)
        for m in self._markets:
            b.mode[m.mkt] = view.effective_mode(m.mkt)
        ticking = self._funding_due(b)
        self._oracles(b, skip=ticking)
        self._funding(b, ticking)
        remaining = max(0, self._budget - len(b.cmds))
        market_makers(b, limit=len(b.cmds) + remaining * 45 // 100)
        vault_unwind(b)
        users_act(b, limit=max(len(b.cmds), self._budget))
        return [BeginBlock(b.time), *b.cmds]

    # ---- oracle and funding -----------------------------------------------------

    def _funding_due(self, b: Block) -> list[str]:
        """Markets that get a FundingTick this block: on schedule, or injected.

        A market that ticks gets no oracle update in the same block, so the
        index the view computes from the previous block's state is the one the
        engine recomputes whatever order it runs the block's phases in.
        """
        injected = self._inject.get(b.height, [])
        out: list[str] = []
        for m in self._markets:
            if m.mkt in injected:
                out.append(m.mkt)
                continue
            if b.mode[m.mkt] == Mode.HALTED:
                continue  # funding is frozen while halted (SPEC 9)
            last = b.view.market(m.mkt).last_funding_time
            if b.time - last >= m.params.funding_tick_s:
                out.append(m.mkt)
        return out

    def _oracles(self, b: Block, skip: list[str]) -> None:
        extra: dict[int, int] = {}
        for s in self.shocks_at(b.height):
            extra[s.market_index] = extra.get(s.market_index, 0) + s.step_ppm(b.height)
        for i, m in enumerate(self._markets):
            # Draw for every market every block, so one market's skip does not
            # shift the random stream of the others.
            state = b.view.market(m.mkt)
            cur = state.oracle_st
            # No single update moves more than 3%, far inside max_jump_ppm (G5).
            max_move = min(30_000, m.params.max_jump_ppm // 3)
            new = next_oracle(b.rng, m, cur, self._vol, 5_000, extra.get(i, 0), max_move)
            basis = b.rng.randint(-50, 50)
            if m.mkt in skip:
                new, basis = cur, 0
            else:
                b.cmds.append(UpdateOracle(m.mkt, new, basis))
            b.fair[m.mkt] = new + new * basis // PPM

    def _funding(self, b: Block, ticking: list[str]) -> None:
        injected = self._inject.get(b.height, [])
        for mkt in ticking:
            state = b.view.market(mkt)
            new_index = 0 if mkt in injected else b.view.expected_funding_index(mkt, b.time)
            b.cmds.append(FundingTick(mkt, b.time, state.funding_index,
                                      state.last_funding_time, new_index))
