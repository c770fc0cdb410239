"""Summaries of an engine state for auditors: one account, or the whole exchange.

Read through the engine's public accessors only (`ledger.core.views`);
amounts stay integers in their fixed-point units.
"""

from __future__ import annotations

from typing import Any

from ledger.core.engine import Engine
from ledger.core.state import FEES, LIQ_VAULT
from ledger.errors import NotFound
from ledger.events.codec import to_jsonable


def account_state(engine: Engine, acct: str) -> dict[str, Any]:
    """Balance, positions, open orders, account value and margin of an account."""
    av, imr, mmr, free = engine.margin(acct)
    positions = []
    for mkt, (size, cost, idx, realized) in engine.positions(acct).items():
        mark = engine.market(mkt).mark_st
        positions.append({"mkt": mkt, "size_bq": size, "cost_qq": cost, "idx": idx,
                          "realized_qq": realized, "mark_st": mark})
    orders = [to_jsonable(ov) for ov in engine.open_orders(acct)]
    return {"balance_qq": engine.balance(acct), "account_value_qq": av, "imr_qq": imr,
            "mmr_qq": mmr, "free_qq": free, "positions": positions, "open_orders": orders}


def exchange_summary(engine: Engine) -> dict[str, Any]:
    """Per market open interest, prices, index and modes; system balances and totals."""
    long_oi: dict[str, int] = {}
    short_oi: dict[str, int] = {}
    total_balance = 0
    open_orders = 0
    accounts = engine.accounts()
    for acct in accounts:
        total_balance += engine.balance(acct)
        open_orders += len(engine.open_orders(acct))
        for mkt, (size, _cost, _idx, _realized) in engine.positions(acct).items():
            if size > 0:
                long_oi[mkt] = long_oi.get(mkt, 0) + size
            else:
                short_oi[mkt] = short_oi.get(mkt, 0) - size
    markets = []
    for mkt in engine.markets():
        mv = engine.market(mkt)
        markets.append({"mkt": mkt, "open_interest_bq": long_oi.get(mkt, 0),
                        "short_interest_bq": short_oi.get(mkt, 0), "oracle_st": mv.oracle_st,
                        "mark_st": mv.mark_st, "funding_index": mv.funding_index,
                        "last_funding_time": mv.last_funding_time, "mode": mv.mode.name,
                        "effective_mode": mv.effective_mode.name, "status": mv.status,
                        "mode_reason": mv.mode_reason})
    g = engine.globals()

    def bal(acct: str) -> int | None:
        try:
            return engine.balance(acct)
        except NotFound:
            return None

    return {"mode": g.mode.name, "guards_enabled": g.guards_enabled,
            "loss_mode": g.loss_mode.name, "markets": markets,
            "vault_balance_qq": bal(LIQ_VAULT), "fees_balance_qq": bal(FEES),
            "totals": {"accounts": len(accounts), "open_orders": open_orders,
                       "balances_qq": total_balance, "ext_in_qq": g.ext_in,
                       "ext_out_qq": g.ext_out, "funding_dust": g.funding_dust,
                       "bad_debt_qq": g.bad_debt, "seq": g.seq, "time": g.time}}
