"""Operator actions that write: rollback with recovery, modes, refunds (thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.errors import CommandInvalid, NotFound
from ledger.events import commands as c
from ledger.events.enums import Mode
from ledger.rollback import RollbackPlan, RollbackResult, execute_rollback, plan_rollback
from ledger.sequencer import BlockOutcome, Sequencer
from ledger.store.journal import JournalEntry
from projections.refunds import RefundPlan, plan_refunds, refund_ref

MODES = {"ok": Mode.OK, "post_only": Mode.POST_ONLY, "cancel_only": Mode.CANCEL_ONLY,
         "halted": Mode.HALTED}


def rollback(path: Path, target: int, *, execute: bool, reason: str | None,
             operator: str | None, force: bool, key: str | None = None
             ) -> tuple[RollbackPlan, RollbackResult | None]:
    """Plan, and with `execute`, carry out a rollback (which holds the write lock)."""
    if execute and (not reason or not operator):
        raise CommandInvalid("--execute needs --reason TEXT and --operator NAME "
                             "(both go into the journal)")
    if not execute:
        from tools.common import open_store

        with open_store(path) as store:
            return plan_rollback(store, target, force=force), None
    with Sequencer.open(path) as seq:
        plan = plan_rollback(seq.store, target, force=force)
        assert reason is not None and operator is not None
        result = execute_rollback(seq, plan, reason=reason, operator=operator,
                                  key=seq.operator_key(key))
        seq.snapshot()
        return plan, result


def set_mode(path: Path, mode: str, *, market: str | None, band_ppm: int, reason: str,
             operator: str, key: str | None = None) -> BlockOutcome:
    """Append a SetMode command (global, or one market) and journal it."""
    m = MODES.get(mode.lower())
    if m is None:
        raise CommandInvalid(f"--mode must be one of {', '.join(MODES)}, was {mode!r}")
    if band_ppm < 0:
        raise CommandInvalid(f"--band-ppm must be 0 or more, was {band_ppm}")
    with Sequencer.open(path) as seq:
        if market is not None and not seq.engine.has_market(market):
            raise NotFound(f"no market {market!r} on this chain")
        return seq.submit([c.SetMode(market or c.ALL, m, band_ppm, reason, operator)],
                          journal=JournalEntry("mode", operator, reason, {
                              "scope": market or c.ALL, "mode": m.name, "band_ppm": band_ppm}),
                          operator_key=seq.operator_key(key))


def issue_refunds(path: Path, branch: int, *, operator: str, reason: str,
                  key: str | None = None
                  ) -> tuple[RefundPlan, list[dict[str, Any]], int | None]:
    """Pay what the refund plan still owes, from LIQ_VAULT, in one block. Idempotent."""
    with Sequencer.open(path) as seq:
        plan = plan_refunds(seq.store, branch)
        ref = refund_ref(branch)
        cmds = []
        paid = []
        for ln in plan.lines:
            owed = ln.amount_qq - ln.already_refunded_qq
            if owed > 0:
                cmds.append(c.IssueRefund(ln.acct, owed, "LIQ_VAULT", ref))
                paid.append({"acct": ln.acct, "amount_qq": owed})
        if not cmds:
            return plan, [], None
        out = seq.submit(cmds, journal=JournalEntry("refunds", operator, reason, {
            "branch": branch, "accounts": len(paid),
            "total_qq": sum(p["amount_qq"] for p in paid), "pro_rata": plan.pro_rata}),
            operator_key=seq.operator_key(key))
        return plan, paid, out.header.height
