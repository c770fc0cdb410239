"""Human units: the one place that turns fixed-point integers into what a person reads.

Every rendering goes through integer arithmetic on the decimal digits (no
float, no rounding): a value is `n * 10**exp` for an integer `n`, and the
string shows every significant digit. One function per unit:

- `usd(qq)`: money, quote quanta of 1e-6 USDC, as dollars (`-$1,234.56`,
  `$0.000001`): at least two decimals, more only when they are not zero.
- `size(bq, mu)`: base quanta as coins with the market's symbol (`0.1637 BTC`):
  one bq is `10**atomic_resolution` coin (SPEC section 1).
- `price(st, mu)`: subticks as dollars per coin: one st is `10**qce` qq per bq,
  so a coin costs `st * 10**(qce - atomic_resolution)` qq.
- `index(i, mu)`: a funding index (qq per bq x 1e12) as dollars per coin.
- `ppm(v)`: parts per million as a percentage (`0.01%`).

`Fmt` picks human or raw rendering for tables (`--raw` shows the quanta);
machine output (`--json`, the API, Parquet) always keeps the raw integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: quote quanta per dollar (1 qq = 1e-6 USDC)
QQ_EXP = -6
#: the funding index's scale S = 10**12 (SPEC section 1)
INDEX_EXP = -12


@dataclass(frozen=True, slots=True)
class MarketUnits:
    """What it takes to read one market's integers: its symbol and exponents."""

    mkt: str
    symbol: str
    atomic_resolution: int
    qce: int


def market_units(mkt: str, params: Mapping[str, Any] | Any) -> MarketUnits:
    """Units of a market from its listing params (a mapping or a params record).

    The symbol is the market id up to its first '-' (`BTC-PERP` -> `BTC`).
    """
    if isinstance(params, Mapping):
        ar, qce = int(params["atomic_resolution"]), int(params["qce"])
    else:
        ar, qce = int(params.atomic_resolution), int(params.qce)
    return MarketUnits(mkt, mkt.split("-", 1)[0], ar, qce)


def units_from_listings(rows: Iterable[Mapping[str, Any]]) -> dict[str, MarketUnits]:
    """Units per market from `MarketListed` / `MarketParamsUpdated` events as JSON rows
    (what `Auditor.events` returns); the last listing of a market wins."""
    out: dict[str, MarketUnits] = {}
    for row in rows:
        payload = row["payload"]
        out[payload["mkt"]] = market_units(payload["mkt"], payload["params"])
    return out


def decimal(n: int, exp: int, *, min_frac: int = 0, group: bool = True) -> str:
    """`n * 10**exp` written out exactly, with at least `min_frac` decimals and
    thousands separators (`decimal(-123456789, -6, min_frac=2) == '-123.456789'`)."""
    if type(n) is not int:
        raise TypeError(f"decimal() renders integers only, was {type(n).__name__}")
    sign = "-" if n < 0 else ""
    digits = str(abs(n))
    if exp >= 0:
        whole, frac = digits + "0" * exp, ""
    else:
        k = -exp
        digits = digits.rjust(k + 1, "0")
        whole, frac = digits[:-k], digits[-k:].rstrip("0")
    frac = frac.ljust(min_frac, "0")
    if group:
        whole = f"{int(whole):,}"
    return sign + whole + ("." + frac if frac else "")


def usd(qq: int) -> str:
    """Quote quanta (1e-6 USDC) as dollars, exactly: `usd(-1_234_560_000) == '-$1,234.56'`."""
    return usd_exp(qq, QQ_EXP)


def size(bq: int, mu: MarketUnits) -> str:
    """Base quanta as coins with the symbol: `size(1_637_000_000, btc) == '0.1637 BTC'`."""
    return f"{decimal(bq, mu.atomic_resolution)} {mu.symbol}"


def price(st: int, mu: MarketUnits) -> str:
    """Subticks as dollars per coin: `price(4_990_297_051, btc) == '$49,902.97051'`."""
    return usd_exp(st, mu.qce - mu.atomic_resolution + QQ_EXP)


def index(i: int, mu: MarketUnits) -> str:
    """A funding index (qq per bq x 1e12) as cumulative dollars per coin."""
    return usd_exp(i, INDEX_EXP - mu.atomic_resolution + QQ_EXP)


def ppm(v: int) -> str:
    """Parts per million as a percentage: `ppm(100) == '0.01%'`."""
    return decimal(v, -4, min_frac=2) + "%"


def usd_exp(n: int, exp: int) -> str:
    """Dollars given as `n * 10**exp`: the one dollar rendering `usd`, `price` and
    `index` share, the sign before the `$`."""
    text = decimal(n, exp, min_frac=2)
    return "-$" + text[1:] if text.startswith("-") else "$" + text


class Fmt:
    """Table cells in human units, or raw quanta with `raw=True` (`--raw`).

    Headers name the unit in raw mode (`size (bq)`), so a reader always knows
    which one a column holds. A market missing from `units` renders raw.
    """

    def __init__(self, units: Mapping[str, MarketUnits], *, raw: bool = False) -> None:
        self.units = dict(units)
        self.raw = raw

    def head(self, name: str, unit: str) -> str:
        """A column header: the name, with the raw unit in raw mode."""
        return f"{name} ({unit})" if self.raw else name

    def usd(self, qq: int | None) -> str:
        return "" if qq is None else (f"{qq:,}" if self.raw else usd(qq))

    def size(self, bq: int | None, mkt: str) -> str:
        return self._market(bq, mkt, size)

    def price(self, st: int | None, mkt: str) -> str:
        return self._market(st, mkt, price)

    def index(self, i: int | None, mkt: str) -> str:
        return self._market(i, mkt, index)

    def ppm(self, v: int | None) -> str:
        return "" if v is None else (f"{v:,}" if self.raw else ppm(v))

    def _market(self, v: int | None, mkt: str, fn: Any) -> str:
        if v is None:
            return ""
        mu = self.units.get(mkt)
        if self.raw or mu is None:
            return f"{v:,}"
        return str(fn(v, mu))


#: the events that carry a market's listing params, in the order they apply
LISTING_TYPES = ("MarketListed", "MarketParamsUpdated")


def units_from_events(events: Any) -> dict[str, MarketUnits]:
    """Units per market from an events query (`Auditor.events`, called with
    `type_name=`): the listings in seq order, the last one of a market winning."""
    rows = [row for t in LISTING_TYPES for row in events(type_name=t)]
    rows.sort(key=lambda row: row["seq"])
    return units_from_listings(rows)
