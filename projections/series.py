"""Time series over heights for plots and the incident report, from the audit queries.

Each series is a list of plain JSON rows (integers in their fixed-point units),
read through the `Auditor`'s public queries, so `audit plot ... --json` and the
report show the same integers as `audit funding`, `audit events` and `audit
liquidations` for the same range:

- `funding_series`: a market's funding ticks (applied and rejected).
- `mark_series`: a market's mark and oracle after each oracle update.
- `liquidation_counts`: liquidations per height (the register's rows).
- `equity_series`: an account's value (balance + unrealized PnL at the mark +
  pending funding) after each block, by replaying blocks from the nearest
  snapshot (hash-checked), on the chain or on an archived branch.
"""

from __future__ import annotations

from typing import Any

from ledger.core.engine import Engine
from ledger.errors import CommandInvalid
from ledger.replay import restore_exact
from projections.audit import Auditor

#: the rows a funding series keeps of each tick
TICK_FIELDS = ("height", "seq", "status", "prev_index", "new_index", "published_index",
               "rate_ppm", "reason")


def funding_series(au: Auditor, mkt: str, lo: int, hi: int,
                   branch: int | None = None) -> list[dict[str, Any]]:
    """Funding ticks of `mkt` in [lo, hi]: height, seq, status, prev/new index, rate."""
    doc = au.funding(mkt, from_height=lo, to_height=hi, branch=branch)
    return [{k: t[k] for k in TICK_FIELDS if k in t} for t in doc["ticks"]]


def mark_series(au: Auditor, mkt: str, lo: int, hi: int,
                branch: int | None = None) -> list[dict[str, Any]]:
    """Mark and oracle of `mkt` after each `OraclePriceUpdated` in [lo, hi]."""
    if mkt not in {r["payload"]["mkt"] for r in au.events(type_name="MarketListed")}:
        raise CommandInvalid(f"unknown market {mkt!r}")
    rows = au.events(type_name="OraclePriceUpdated", market=mkt, from_height=lo,
                     to_height=hi, branch=branch)
    return [{"height": r["height"], "seq": r["seq"], "mark_st": r["payload"]["mark_st"],
             "oracle_st": r["payload"]["oracle_st"]} for r in rows]


def liquidation_counts(au: Auditor, lo: int, hi: int, branch: int | None = None,
                       market: str | None = None) -> dict[int, int]:
    """Liquidations per height in [lo, hi] (heights with none are left out)."""
    out: dict[int, int] = {}
    for rec in au.liquidations(market=market, from_height=lo, to_height=hi, branch=branch):
        out[rec["height"]] = out.get(rec["height"], 0) + 1
    return dict(sorted(out.items()))


def equity_series(au: Auditor, acct: str, lo: int, hi: int,
                  branch: int | None = None) -> list[dict[str, Any]]:
    """An account's value after each block in [lo, hi] (None before it exists)."""
    store = au.store
    au.height_range(lo, hi, branch)  # refuses an unknown branch too
    rec = au.check_branch(branch)
    base = int(rec["base_height"]) if rec is not None else hi
    engine = restore_exact(store, min(lo, base))
    out: list[dict[str, Any]] = []
    if lo <= base:
        out.append(_equity_row(engine, acct, lo))
    # canonical blocks up to the branch base (or hi), then the branch's own blocks
    pieces: list[tuple[int | None, int, int]] = [(None, lo + 1, min(hi, base))]
    if rec is not None:
        pieces.append((branch, base + 1, hi))
    for piece_branch, a, b in pieces:
        if a > b:
            continue
        for header, envs in store.iter_blocks(a, b, branch=piece_branch):
            engine.apply_block(header.height, envs)
            if header.height >= lo:
                out.append(_equity_row(engine, acct, header.height))
    return out


def _equity_row(engine: Engine, acct: str, height: int) -> dict[str, Any]:
    if not engine.has_account(acct):
        return {"height": height, "account_value_qq": None, "balance_qq": None}
    return {"height": height, "account_value_qq": int(engine.account_value(acct)),
            "balance_qq": int(engine.balance(acct))}
