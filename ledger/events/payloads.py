"""Nested records used inside event payloads (encoded as msgpack arrays)."""

from __future__ import annotations

from ledger.events.record import Record, nested


@nested
class MarketParams(Record):
    """A market's listing parameters. Rates and fractions in ppm, sizes in bq, prices in st."""

    atomic_resolution: int
    qce: int
    step_bq: int
    tick_st: int
    imf_ppm: int
    maint_fraction_ppm: int
    maker_fee_ppm: int
    taker_fee_ppm: int
    funding_period_s: int
    funding_tick_s: int
    interest_ppm: int
    clamp_ppm: int
    clamp_factor_ppm: int
    max_rate_ppm: int
    max_basis_ppm: int
    max_spread_ppm: int
    band_ppm: int
    liq_penalty_ppm: int
    max_jump_ppm: int
    max_gap_s: int
    oracle_max_age_s: int


@nested
class LiquidatedPosition(Record):
    """One position closed by a liquidation, with its bankruptcy terms."""

    mkt: str
    size_bq: int
    notional_qq: int
    mark_st: int
    mmr_qq: int
    bankruptcy_value_qq: int
    bankruptcy_price_st: int


@nested
class CarriedFlow(Record):
    """An external deposit (+) or withdrawal (-) carried forward across a rollback."""

    acct: str
    amount_qq: int
    ext_ref: str
    orig_seq: int
