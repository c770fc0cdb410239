"""Market listings: the built-in demo set and the TOML loader for `ledgerctl init --markets`.

Units follow SPEC.md section 1 (dYdX conventions): sizes in base quanta of
10^atomic_resolution coin, prices in subticks with quantum conversion exponent
`qce`, so that value(q, p) = floor(q * p / 10^-qce) quote quanta (1e-6 USDC).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import CommandInvalid
from ledger.events.payloads import MarketParams
from ledger.events.record import field_types


@dataclass(frozen=True, slots=True)
class Listing:
    """A market to list at genesis: its id, parameters and first oracle price."""

    mkt: str
    params: MarketParams
    oracle_st: int
    #: Cumulative funding index (qq per bq x 1e12) the market migrates with: a
    #: long-running market has years of funding in it, which is why a zeroed
    #: index moves so much money.
    funding_index: int = 0


def _params(**overrides: int) -> MarketParams:
    base: dict[str, int] = dict(
        atomic_resolution=-9,
        qce=-9,
        step_bq=1_000_000,
        tick_st=100_000,
        imf_ppm=50_000,            # 5% initial margin: 20x
        maint_fraction_ppm=600_000,  # mmf = 60% of imf = 3%
        maker_fee_ppm=100,
        taker_fee_ppm=400,
        funding_period_s=28_800,
        funding_tick_s=60,
        interest_ppm=100,          # 0.01% per 8h
        clamp_ppm=500,             # +-0.05% around the premium
        clamp_factor_ppm=6_000_000,
        max_rate_ppm=50_000,       # Paradex: 5% per 8h
        max_basis_ppm=20_000,
        max_spread_ppm=10_000,
        band_ppm=50_000,
        liq_penalty_ppm=700_000,   # Paradex: 70% of MMR
        max_jump_ppm=100_000,
        max_gap_s=120,             # two funding ticks
        oracle_max_age_s=60,
    )
    base.update(overrides)
    return MarketParams(**base)


#: The demo markets: BTC as in dYdX's genesis, ETH, SOL, and PAXG (the incident's market).
DEMO_MARKETS: tuple[Listing, ...] = (
    Listing("BTC-PERP", _params(atomic_resolution=-10, step_bq=1_000_000, tick_st=100_000,
                                maker_fee_ppm=-50, taker_fee_ppm=300), 5_000_000_000,
            funding_index=600_000_000_000),
    Listing("ETH-PERP", _params(atomic_resolution=-9, step_bq=1_000_000, tick_st=100_000),
            3_000_000_000, funding_index=450_000_000_000),
    Listing("SOL-PERP", _params(atomic_resolution=-7, step_bq=100_000, tick_st=1_000_000,
                                imf_ppm=100_000), 15_000_000_000,
            funding_index=2_000_000_000_000),
    Listing("PAXG-PERP", _params(atomic_resolution=-9, step_bq=1_000_000, tick_st=1_000_000,
                                 imf_ppm=100_000), 4_000_000_000,
            funding_index=480_000_000_000),
)


def load_markets(path: str | Path) -> tuple[Listing, ...]:
    """Read listings from a TOML file: one `[[market]]` table per market.

    Each table needs `id` and `oracle_st`; any `MarketParams` field may be given,
    the rest default to the demo values. Raises `CommandInvalid` naming the bad key.
    """
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise CommandInvalid(f"markets file {p} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommandInvalid(f"markets file {p} is not valid TOML: {exc}") from None
    tables = doc.get("market")
    if not isinstance(tables, list) or not tables:
        raise CommandInvalid(f"markets file {p}: expected one or more [[market]] tables")
    known = {name for name, _ in field_types(MarketParams)}
    out: list[Listing] = []
    seen: set[str] = set()
    for i, table in enumerate(tables, 1):
        where = f"markets file {p}, market #{i}"
        mkt = table.get("id")
        if not isinstance(mkt, str) or not mkt:
            raise CommandInvalid(f"{where}: 'id' must be a non-empty string")
        if mkt in seen:
            raise CommandInvalid(f"{where}: market {mkt!r} listed twice")
        seen.add(mkt)
        oracle = table.get("oracle_st")
        if type(oracle) is not int or oracle <= 0:
            raise CommandInvalid(f"{where} ({mkt}): 'oracle_st' must be a positive integer")
        index = table.get("funding_index", 0)
        if type(index) is not int:
            raise CommandInvalid(f"{where} ({mkt}): 'funding_index' must be an integer")
        overrides: dict[str, Any] = {}
        for key, value in table.items():
            if key in ("id", "oracle_st", "funding_index"):
                continue
            if key not in known:
                raise CommandInvalid(f"{where} ({mkt}): unknown key {key!r}")
            if type(value) is not int:
                raise CommandInvalid(
                    f"{where} ({mkt}): {key} must be an integer, was {value!r}")
            overrides[key] = value
        out.append(Listing(mkt, _params(**overrides), oracle, index))
    return tuple(out)
