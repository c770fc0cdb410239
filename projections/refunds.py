"""Refund plans for the damage a rolled-back branch did.

Default rule (harm): what the account should have had at the branch's last
height (its equity in the counterfactual re-execution, guards on) minus what
it has on the canonical chain right after the rollback (its equity after the
recovery block), where that is positive. Equity is account value: balance
plus unrealized PnL at the mark, including pending funding.

Refunds come from LIQ_VAULT. If the vault holds less than the total, every
refund is cut pro rata (floor), and the plan says so plainly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.errors import NotFound
from ledger.events import outcomes as o
from ledger.events.record import type_code
from ledger.rollback import restore_exact
from ledger.store.chain import ChainStore
from projections.whatif import WhatIf, whatif

VAULT = "LIQ_VAULT"
RULE = "counterfactual equity at branch end minus equity after rollback, if positive"


def refund_ref(branch: int) -> str:
    """The `ref` every refund for a branch carries (what makes issuing idempotent)."""
    return f"rollback-branch-{branch}"


@dataclass
class RefundLine:
    acct: str
    harm_qq: int
    amount_qq: int
    counterfactual_equity_qq: int
    equity_after_rollback_qq: int
    bogus_liquidation: bool
    already_refunded_qq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "rule": RULE}


@dataclass
class RefundPlan:
    branch: int
    recovery_height: int
    lines: list[RefundLine]
    total_harm_qq: int
    total_qq: int
    vault_balance_qq: int
    pro_rata: bool
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "recovery_height": self.recovery_height,
            "rule": RULE,
            "accounts": len(self.lines),
            "total_harm_qq": self.total_harm_qq,
            "total_qq": self.total_qq,
            "vault_balance_qq": self.vault_balance_qq,
            "pro_rata": self.pro_rata,
            "notes": self.notes,
            "lines": [ln.to_json() for ln in self.lines],
        }


def recovery_height(store: ChainStore, branch: int) -> int:
    """The canonical height of the RolledBack block that opened the chain after `branch`."""
    for env in store.events_by(type_code=type_code(o.RolledBack)):
        if env.event.branch_id == branch:
            return int(env.height)
    raise NotFound(f"no RolledBack event for branch {branch} on the canonical chain; "
                   "was the branch archived by `ledgerctl rollback --execute`?")


def already_refunded(store: ChainStore, branch: int) -> dict[str, int]:
    """Refunds already issued on the canonical chain for a branch, per account."""
    ref = refund_ref(branch)
    done: dict[str, int] = {}
    for env in store.events_by(type_code=type_code(o.RefundIssued)):
        ev = env.event
        if ev.ref == ref:
            done[ev.acct] = done.get(ev.acct, 0) + ev.amount_qq
    return done


def plan_refunds(store: ChainStore, branch: int, *, report: WhatIf | None = None) -> RefundPlan:
    """Compute the refund plan for an archived branch (reads only)."""
    report = report or whatif(store, branch, guards_on=True)
    rh = recovery_height(store, branch)
    after = restore_exact(store, rh)
    head_engine = restore_exact(store, store.head.height)
    vault = int(head_engine.balance(VAULT)) if head_engine.has_account(VAULT) else 0
    done = already_refunded(store, branch)
    lines: list[RefundLine] = []
    for diff in report.accounts:
        eq_after = int(after.account_value(diff.acct)) if after.has_account(diff.acct) else 0
        harm = diff.equity_counterfactual_qq - eq_after
        if harm <= 0:
            continue
        lines.append(RefundLine(diff.acct, harm, harm, diff.equity_counterfactual_qq, eq_after,
                                diff.bogus_liquidation, done.get(diff.acct, 0)))
    total_harm = sum(ln.harm_qq for ln in lines)
    notes = []
    pro_rata = False
    outstanding = sum(max(0, ln.harm_qq - ln.already_refunded_qq) for ln in lines)
    available = vault + sum(done.values())
    if total_harm > available and total_harm > 0:
        pro_rata = True
        for ln in lines:
            ln.amount_qq = ln.harm_qq * available // total_harm
        notes.append(f"LIQ_VAULT holds {vault} qq against {outstanding} qq outstanding: every "
                     "refund is cut pro rata (floor); the shortfall is not paid")
    total = sum(ln.amount_qq for ln in lines)
    if done:
        notes.append(f"{len(done)} accounts already refunded {sum(done.values())} qq for this "
                     "branch; `refunds issue` pays only what is outstanding")
    return RefundPlan(branch, rh, lines, total_harm, total, vault, pro_rata, notes)
