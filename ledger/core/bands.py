"""Price bands (SPEC 8) and the recovery band of the POST_ONLY/CANCEL_ONLY modes (SPEC 9)."""

from __future__ import annotations

from ledger.core.fixedpoint import PPM, ceil_div, clamp, tick_down, tick_up
from ledger.core.members import CANCEL_ONLY, MODE_POST_ONLY
from ledger.core.state import ExchangeState, Market, recovery_band_ppm
from ledger.events.enums import Mode


def band(mark: int, band_ppm: int, tick: int) -> tuple[int, int]:
    """(lo, hi): lo = ce(mark*(PPM-band), PPM) up to a tick, hi = fl(mark*(PPM+band), PPM) down."""
    lo = tick_up(ceil_div(mark * (PPM - band_ppm), PPM), tick)
    hi = tick_down((mark * (PPM + band_ppm)) // PPM, tick)
    return lo, hi


def _bands(m: Market) -> tuple[int | None, int, int, int, int]:
    """(mark, lo, hi, lo2, hi2) of the market's current mark, cached on the market."""
    b = m.bands
    if b[0] != m.mark:
        p = m.params
        lo, hi = band(m.mark, p.band_ppm, p.tick_st)
        lo2, hi2 = band(m.mark, 2 * p.band_ppm, p.tick_st)
        b = m.bands = (m.mark, lo, hi, lo2, hi2)
    return b


def trading_band(m: Market) -> tuple[int, int]:
    """The band a crossing order must respect, around the mark."""
    b = _bands(m)
    return b[1], b[2]


def stale_band(m: Market) -> tuple[int, int]:
    """The x2 band: a maker outside it at fill time is cancelled STALE_PRICE."""
    b = _bands(m)
    return b[3], b[4]


def external_fair_price(m: Market) -> int:
    """oracle*(1 + ext_basis), the basis clamped to +-max_basis (SPEC 9)."""
    mb = m.params.max_basis_ppm
    return m.oracle + (m.oracle * clamp(m.ext_basis, -mb, mb)) // PPM


def in_recovery(mode: Mode) -> bool:
    """Does the recovery band bind in `mode`? In POST_ONLY and CANCEL_ONLY (SPEC 9)."""
    return mode in (MODE_POST_ONLY, CANCEL_ONLY)


def recovery_band(st: ExchangeState, m: Market) -> tuple[int, int]:
    """Every order must lie within this band in POST_ONLY and CANCEL_ONLY."""
    return band(external_fair_price(m), recovery_band_ppm(st, m), m.params.tick_st)
