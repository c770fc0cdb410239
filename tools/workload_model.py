"""Pieces of the workload generator that need no engine: units, personas, the oracle path.

Everything here is integer arithmetic on the units of SPEC.md section 1 (sizes in
base quanta, prices in subticks, money in quote quanta); the only randomness is
a `random.Random` passed in by the owning `Workload`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from ledger.events.enums import Side
from ledger.events.payloads import MarketParams
from ledger.markets import Listing

PPM = 1_000_000
#: Quote quanta per USDC.
USDC = 1_000_000
#: The liquidator vault's account id (an ordinary account, SPEC 2).
VAULT = "LIQ_VAULT"


def floor_tick(price_st: int, tick_st: int) -> int:
    return price_st // tick_st * tick_st


def ceil_tick(price_st: int, tick_st: int) -> int:
    return -(-price_st // tick_st) * tick_st


def scale_ppm(x: int, ppm: int) -> int:
    """`x * ppm / 1e6`, floored: tool-side arithmetic, never state."""
    return x * ppm // PPM


@dataclass(frozen=True, slots=True)
class MarketInfo:
    """A listed market as the workload sees it: units, margin limits, price anchor."""

    mkt: str
    params: MarketParams
    #: The listing oracle: the random walk mean-reverts toward it.
    anchor_st: int

    @property
    def tick(self) -> int:
        return self.params.tick_st

    @property
    def step(self) -> int:
        return self.params.step_bq

    @property
    def scale(self) -> int:
        """`10^-qce`: the divisor of value (qce <= 0)."""
        return int(10 ** (-self.params.qce))

    @property
    def max_lev_ppm(self) -> int:
        """Maximum leverage allowed by the initial margin fraction, x PPM (imf 5% -> 20x)."""
        return PPM * PPM // self.params.imf_ppm

    def value_qq(self, qty_bq: int, price_st: int) -> int:
        """`value(q, p) = fl(q * p, 10^-qce)` (SPEC 1)."""
        return qty_bq * price_st // self.scale

    def qty_for(self, notional_qq: int, price_st: int) -> int:
        """Largest step multiple whose value at `price_st` is at most `notional_qq` (may be 0)."""
        if notional_qq <= 0 or price_st <= 0:
            return 0
        raw = notional_qq * self.scale // price_st
        return raw // self.step * self.step

    @classmethod
    def of(cls, listing: Listing) -> MarketInfo:
        return cls(listing.mkt, listing.params, listing.oracle_st)


class Role(Enum):
    MARKET_MAKER = "mm"
    #: Takes liquidity, closes, protects positions with TP/SL, rests passive limits.
    TRADER = "trader"
    #: Holds a two-sided book of positions in the focus market (PAXG in the demo).
    FOCUS = "focus"
    #: Opens 10-20x positions without stops: the genuine liquidations under shocks.
    OVERLEVERAGED = "overlev"


@dataclass(frozen=True, slots=True)
class Persona:
    """One simulated user: fixed at construction from the seed."""

    acct: str
    role: Role
    deposit_qq: int
    #: Target leverage x PPM (FOCUS, OVERLEVERAGED) or typical leverage (TRADER).
    lev_ppm: int = 0
    #: FOCUS: the side this user holds.
    side: Side = Side.BUY
    #: OVERLEVERAGED: the market this user gambles in.
    mkt: str = ""
    #: MARKET_MAKER: distance of the first level and between levels, in ppm of the price.
    half_spread_ppm: int = 0
    level_gap_ppm: int = 0
    #: MARKET_MAKER: notional of the first level, and the inventory it stops adding at.
    level_qq: int = 0
    inventory_qq: int = 0


def account_id(i: int, width: int) -> str:
    return f"u{i:0{width}d}"


def make_personas(rng: random.Random, accounts: int, markets: list[MarketInfo],
                  focus: MarketInfo) -> list[Persona]:
    """Assign roles and per-user parameters; returned in account-id order.

    Market makers: max(2, min(12, A // 15)). Of the rest, 25% hold the focus
    market (alternating long and short, 2-8x), 15% are over-leveraged (70-97%
    of the market's maximum leverage), the others are traders.
    """
    width = max(5, len(str(accounts)))
    ids = [account_id(i, width) for i in range(1, accounts + 1)]
    order = list(range(accounts))
    rng.shuffle(order)
    n_mm = max(2, min(12, accounts // 15))
    rest = accounts - n_mm
    n_focus = max(1, rest * 25 // 100)
    n_over = max(1, rest * 15 // 100)
    roles: dict[int, Role] = {}
    for k, i in enumerate(order):
        if k < n_mm:
            roles[i] = Role.MARKET_MAKER
        elif k < n_mm + n_focus:
            roles[i] = Role.FOCUS
        elif k < n_mm + n_focus + n_over:
            roles[i] = Role.OVERLEVERAGED
        else:
            roles[i] = Role.TRADER
    out: list[Persona] = []
    focus_count = 0
    for i, acct in enumerate(ids):
        role = roles[i]
        if role is Role.MARKET_MAKER:
            out.append(Persona(
                acct, role, deposit_qq=rng.randint(3_000_000, 6_000_000) * USDC,
                half_spread_ppm=rng.randint(150, 600), level_gap_ppm=rng.randint(200, 600),
                level_qq=rng.randint(5_000, 30_000) * USDC,
                inventory_qq=rng.randint(150_000, 400_000) * USDC))
        elif role is Role.FOCUS:
            # Alternate sides so the focus market has both long and short open interest.
            side = Side.SELL if focus_count % 2 == 0 else Side.BUY
            focus_count += 1
            max_lev = min(8 * PPM, focus.max_lev_ppm * 8 // 10)
            out.append(Persona(
                acct, role, deposit_qq=rng.randint(5_000, 40_000) * USDC,
                lev_ppm=rng.randint(2 * PPM, max(2 * PPM, max_lev)), side=side))
        elif role is Role.OVERLEVERAGED:
            m = markets[rng.randrange(len(markets))]
            out.append(Persona(
                acct, role, deposit_qq=rng.randint(500, 2_000) * USDC,
                lev_ppm=m.max_lev_ppm * rng.randint(70, 97) // 100, mkt=m.mkt,
                # A crowded long side, as gamblers tend to be: shocks down hit many at once.
                side=Side.BUY if rng.random() < 0.65 else Side.SELL))
        else:
            out.append(Persona(
                acct, role, deposit_qq=rng.randint(10_000, 100_000) * USDC,
                lev_ppm=rng.randint(PPM // 2, 4 * PPM)))
    return out


@dataclass(frozen=True, slots=True)
class Shock:
    """A move of `total_ppm` in market `market_index`, spread evenly over `blocks` blocks."""

    start: int
    market_index: int
    total_ppm: int
    blocks: int

    def step_ppm(self, height: int) -> int:
        k = height - self.start
        if not 0 <= k < self.blocks:
            return 0
        base = self.total_ppm // self.blocks
        # The last block takes the remainder so the whole move is exactly total_ppm.
        return self.total_ppm - base * (self.blocks - 1) if k == self.blocks - 1 else base


#: Longest shock, in blocks: `shocks_at` looks back this far.
MAX_SHOCK_BLOCKS = 6


def shock_starting_at(rng: random.Random, seed: int, height: int, n_markets: int,
                      rate_ppm: int, warmup: int) -> Shock | None:
    """The shock that starts at `height`, if any: a pure function of (seed, height).

    3-6% in total over 3-6 blocks, so no single oracle update moves more than
    2%: far inside `max_jump_ppm` (10% in the demo markets).
    """
    if height < warmup or n_markets == 0:
        return None
    rng.seed(f"{seed}/shock/{height}")
    if rng.randrange(PPM) >= rate_ppm:
        return None
    idx = rng.randrange(n_markets)
    # Crashes a little more often than squeezes: the gamblers' crowd leans long.
    total = rng.randint(30_000, 60_000) * (1 if rng.random() < 0.4 else -1)
    return Shock(height, idx, total, rng.randint(3, MAX_SHOCK_BLOCKS))


def next_oracle(rng: random.Random, m: MarketInfo, current_st: int, volatility_ppm: int,
                reversion_ppm: int, extra_ppm: int, max_move_ppm: int) -> int:
    """One block of the oracle's walk: noise, a pull toward the anchor, and any shock step.

    The total move is clamped to `max_move_ppm` and the result is kept on the
    tick (oracle inputs need not be, but it keeps quoting simple) and positive.
    """
    noise = rng.randint(-volatility_ppm, volatility_ppm) + rng.randint(-volatility_ppm,
                                                                        volatility_ppm)
    gap_ppm = (m.anchor_st - current_st) * PPM // max(current_st, 1)
    move = noise // 2 + scale_ppm(gap_ppm, reversion_ppm) + extra_ppm
    move = max(-max_move_ppm, min(max_move_ppm, move))
    new = floor_tick(current_st + current_st * move // PPM, m.tick)
    return max(m.tick, new)
