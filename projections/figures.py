"""Figures with matplotlib (Agg backend, no display): PNG bytes, deterministic.

The same inputs draw the same bytes: a fixed size and dpi, matplotlib's
bundled DejaVu fonts, and no `Software`/date metadata in the PNG. Values are
plotted as their raw integers; axis labels name the human unit and each tick
label is rendered by `projections.units` from the tick's integer position
(the locators only place ticks on integers), so no label goes through a float.

Markers: `Marker(height, label, kind)` draws a vertical line at a height:
`bad` (a bad tick: red), `rollback` (the snapshot the chain went back to:
black, dashed), `recovery` (the recovery block: green), `event` (grey).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from projections import units

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.2, 100
_MARKER_STYLE = {"bad": ("#d62728", "-"), "rollback": ("#000000", "--"),
                 "recovery": ("#2ca02c", "-."), "event": ("#7f7f7f", ":")}
_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b")


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at a height, labelled in the legend."""

    height: int
    label: str
    kind: str = "event"


@functools.cache
def _matplotlib() -> Any:
    """matplotlib on the Agg backend, imported on the first figure: every ledgerctl
    command imports this module, and matplotlib alone costs a third of a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.figure
    import matplotlib.ticker

    return matplotlib


def _figure(title: str) -> tuple[Figure, Any]:
    fig = _matplotlib().figure.Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.xaxis.set_major_locator(_matplotlib().ticker.MaxNLocator(integer=True))
    ax.set_xlabel("height")
    return fig, ax


def _int_axis(ax: Any, render: Callable[[int], str], label: str) -> None:
    ticker = _matplotlib().ticker
    ax.yaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: render(int(round(v)))))
    ax.set_ylabel(label, fontsize=8)
    ax.tick_params(labelsize=7)


def _markers(ax: Any, markers: Sequence[Marker]) -> None:
    seen: set[str] = set()
    for m in sorted(markers, key=lambda m: (m.height, m.kind, m.label)):
        colour, style = _MARKER_STYLE.get(m.kind, _MARKER_STYLE["event"])
        ax.axvline(m.height, color=colour, linestyle=style, linewidth=1.2,
                   label=None if m.label in seen else m.label)
        seen.add(m.label)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _steps(rows: Sequence[Mapping[str, Any]], value: str, start: tuple[int, int | None],
           end: int) -> tuple[list[int], list[int]]:
    """Heights and values of a step series (each value holds until the next row),
    opened at `start` (height, value before the first row) and held to `end`."""
    xs: list[int] = []
    ys: list[int] = []
    if start[1] is not None:
        xs.append(start[0])
        ys.append(int(start[1]))
    for row in rows:
        v = row.get(value)
        if v is not None:
            xs.append(int(row["height"]))
            ys.append(int(v))
    if xs and xs[-1] < end:
        xs.append(end)
        ys.append(ys[-1])
    return xs, ys


def _step_figure(title: str, series: Mapping[str, Sequence[Mapping[str, Any]]], value: str,
                 render: Callable[[int], str], axis_label: str, markers: Sequence[Marker], *,
                 lo: int, hi: int, start: int | None, ends: Mapping[str, int] | None) -> bytes:
    """Step lines of `value` per series, opened at `start` (the value at `lo`) and held
    to each series' end height (`ends`, default `hi`); the first series drawn widest
    underneath, so where the others follow it both stay visible."""
    fig, ax = _figure(title)
    for i, ((label, rows), colour) in enumerate(zip(series.items(), _SERIES_COLOURS,
                                                    strict=False)):
        xs, ys = _steps(rows, value, (lo, start), (ends or {}).get(label, hi))
        if xs:
            ax.step(xs, ys, where="post", color=colour, label=label,
                    linewidth=2.6 if i == 0 else 1.3, zorder=2 + i)
    _int_axis(ax, render, axis_label)
    _markers(ax, markers)
    ax.set_xlim(lo, hi)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def funding_figure(mkt: str, mu: units.MarketUnits | None,
                   series: Mapping[str, Sequence[Mapping[str, Any]]],
                   markers: Sequence[Marker] = (), *, lo: int, hi: int,
                   start: int | None = None, ends: Mapping[str, int] | None = None) -> bytes:
    """A market's funding index over heights, one step line per series (applied ticks),
    from `start` (the index at `lo`) to each series' end height (default `hi`)."""
    applied = {label: [r for r in rows if r.get("status") == "applied"]
               for label, rows in series.items()}
    return _step_figure(f"{mkt}: funding index", applied, "new_index",
                        (lambda v: units.index(v, mu)) if mu else str,
                        f"index ($ per {mu.symbol})" if mu else "index (qq/bq x 1e12)",
                        markers, lo=lo, hi=hi, start=start, ends=ends)


def mark_figure(mkt: str, mu: units.MarketUnits | None,
                series: Mapping[str, Sequence[Mapping[str, Any]]],
                markers: Sequence[Marker] = (), *, lo: int, hi: int,
                start: int | None = None, ends: Mapping[str, int] | None = None) -> bytes:
    """A market's mark price after each oracle update, one step line per series."""
    return _step_figure(f"{mkt}: mark price", series, "mark_st",
                        (lambda v: units.price(v, mu)) if mu else str,
                        f"mark ($ per {mu.symbol})" if mu else "mark (st)",
                        markers, lo=lo, hi=hi, start=start, ends=ends)


def liquidations_figure(series: Mapping[str, Mapping[int, int]],
                        markers: Sequence[Marker] = (), *, lo: int, hi: int,
                        title: str = "liquidations per block") -> bytes:
    """Liquidations per height, grouped bars per series (e.g. branch vs counterfactual)."""
    fig, ax = _figure(title)
    n = max(1, len(series))
    width = 0.8 / n
    for i, ((label, counts), colour) in enumerate(zip(series.items(), _SERIES_COLOURS,
                                                      strict=False)):
        hs = sorted(counts)
        offset = (i - (n - 1) / 2) * width
        ax.bar([h + offset for h in hs], [counts[h] for h in hs], width=width, color=colour,
               label=f"{label} ({sum(counts.values())})")
    _int_axis(ax, str, "liquidations")
    _markers(ax, markers)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def equity_figure(acct: str, series: Mapping[str, Sequence[Mapping[str, Any]]],
                  markers: Sequence[Marker] = (), *, lo: int, hi: int) -> bytes:
    """An account's value and settled balance after each block."""
    fig, ax = _figure(f"{acct}: account value")
    for (label, rows), colour in zip(series.items(), _SERIES_COLOURS, strict=False):
        for field, style, name in (("account_value_qq", "-", "value"),
                                   ("balance_qq", ":", "balance")):
            pts = [(int(r["height"]), int(r[field])) for r in rows if r.get(field) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour,
                        label=f"{label} {name}", linewidth=1.3)
    _int_axis(ax, units.usd, "dollars")
    _markers(ax, markers)
    ax.set_xlim(lo, hi)
    ax.legend(fontsize=7, loc="best")
    return _png(fig)
