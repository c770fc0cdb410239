"""`audit plot`: one figure of a series over a height range, with the series as JSON.

`plot(au, what, ...)` returns the series it drew (the `--json` output, the same
integers as the audit queries) and the PNG. Vertical lines mark the base of the
branch asked (where it left the canonical chain) and each rollback's recovery
block in range.
"""

from __future__ import annotations

from typing import Any

from ledger.errors import CommandInvalid
from projections import figures as fg
from projections.audit import Auditor
from projections.series import equity_series, funding_series, liquidation_counts, mark_series
from projections.units import units_from_events

PLOTS = ("funding", "mark", "liquidations", "equity")


def plot(au: Auditor, what: str, *, market: str | None = None, account: str | None = None,
         from_height: int | None = None, to_height: int | None = None,
         branch: int | None = None) -> tuple[dict[str, Any], bytes]:
    """(series document, PNG bytes) of one plot (see module docstring), its series read
    from one consistent view of the store."""
    with au.store.pinned():
        return _plot(au, what, market, account, from_height, to_height, branch)


def _plot(au: Auditor, what: str, market: str | None, account: str | None,
          from_height: int | None, to_height: int | None,
          branch: int | None) -> tuple[dict[str, Any], bytes]:
    if what not in PLOTS:
        raise CommandInvalid(f"plot must be one of {', '.join(PLOTS)}, was {what!r}")
    lo, hi = au.height_range(from_height, to_height, branch)
    markers = _markers(au, lo, hi, branch)
    label = "canonical chain" if branch is None else f"branch {branch}"
    doc: dict[str, Any] = {"plot": what, "branch": branch, "from_height": lo, "to_height": hi,
                           "market": market, "account": account}
    if what in ("funding", "mark"):
        if market is None:
            raise CommandInvalid(f"plot {what} needs --market")
        units = units_from_events(au.events)
        if market not in units:
            raise CommandInvalid(f"unknown market {market!r} (markets: {', '.join(units)})")
        start = next(m for m in au.state(at_height=lo, branch=branch)["markets"]
                     if m["mkt"] == market)
        if what == "funding":
            rows = funding_series(au, market, lo, hi, branch)
            doc.update(start_index=start["funding_index"], series=rows)
            png = fg.funding_figure(market, units[market], {label: rows}, markers, lo=lo,
                                    hi=hi, start=start["funding_index"])
        else:
            rows = mark_series(au, market, lo, hi, branch)
            doc.update(start_mark_st=start["mark_st"], series=rows)
            png = fg.mark_figure(market, units[market], {label: rows}, markers, lo=lo, hi=hi,
                                 start=start["mark_st"])
    elif what == "liquidations":
        counts = liquidation_counts(au, lo, hi, branch, market)
        doc["series"] = [{"height": h, "count": n} for h, n in counts.items()]
        png = fg.liquidations_figure({label: counts}, markers, lo=lo, hi=hi,
                                     title="liquidations per block"
                                     + (f" ({market})" if market else ""))
    else:
        if account is None:
            raise CommandInvalid("plot equity needs --account")
        rows = equity_series(au, account, lo, hi, branch)
        if all(r["account_value_qq"] is None for r in rows):
            raise CommandInvalid(f"account {account!r} does not exist in heights {lo}..{hi}")
        doc["series"] = rows
        png = fg.equity_figure(account, {label: rows}, markers, lo=lo, hi=hi)
    return doc, png


def _markers(au: Auditor, lo: int, hi: int, branch: int | None) -> list[fg.Marker]:
    out = []
    if branch is not None:
        rec = au.check_branch(branch)
        assert rec is not None
        base = int(rec["base_height"])
        if lo <= base <= hi:
            out.append(fg.Marker(base, f"branch {branch} leaves the chain", "rollback"))
    else:
        for row in au.events(type_name="RolledBack", from_height=lo, to_height=hi):
            out.append(fg.Marker(row["height"], "recovery block after a rollback",
                                 "recovery"))
    return out
