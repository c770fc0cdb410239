"""The operator's recovery from an incident, as one application service.

assess -> rollback (plan, execute) -> refunds (plan, issue) or compensation
(plan, issue) -> mode -> verify. `ledgerctl` (rollback, assess, refunds,
compensate, mode), the incident demo and the Python API all call these
functions, so there is one workflow and one rule. Every action that writes
appends one block through the single writer (`Sequencer`), and its journal
record is written in that block's own transaction (the rollback's in the
truncation's), so the journal and the chain can never disagree.

Plans change nothing. A rollback's recovery block carries forward the suffix's
latest guard-approved prices, which come from the suffix's counterfactual
(projections.counterfactual): the same C the refund plan is computed from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from ledger.core.counterfactual import Correction, Override
from ledger.core.state import LIQ_VAULT
from ledger.errors import CommandInvalid, NotFound
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import to_jsonable
from ledger.events.enums import FundingResumeAction, Mode
from ledger.keys import Key
from ledger.rollback import RECOVERY_BAND_PPM, RollbackPlan, RollbackResult, execute_rollback
from ledger.rollback import plan_rollback as plan_ledger_rollback
from ledger.sequencer import BlockOutcome, Sequencer, recover
from ledger.store.blocks import BlockHeader
from ledger.store.chain import ChainStore, verify_store
from ledger.store.journal import JournalEntry
from ledger.store.reader import ChainReader
from projections.compensation import plan_compensation
from projections.counterfactual import (
    Counterfactual,
    chain_stretch,
    latest_good_prices,
    run_counterfactual,
)
from projections.refunds import plan_refunds, refund_ref
from projections.remedy import RemedyPlan

log = structlog.get_logger("projections.recovery")

MODES = {"ok": Mode.OK, "post_only": Mode.POST_ONLY, "cancel_only": Mode.CANCEL_ONLY,
         "halted": Mode.HALTED}
FUNDING_RESUME = {"skip": FundingResumeAction.SKIP,
                  "accrue": FundingResumeAction.ACCRUE_CAPPED, "none": None}


def _require(reason: str | None, operator: str | None, what: str) -> tuple[str, str]:
    if not reason or not reason.strip() or not operator or not operator.strip():
        raise CommandInvalid(f"{what} needs --reason TEXT and --operator NAME "
                             "(both go into the journal)")
    return reason, operator


# -- rollback ---------------------------------------------------------------------


@dataclass
class RecoveryPlan:
    """A rollback plan with what its recovery block will carry (nothing is changed)."""

    rollback: RollbackPlan
    oracles: list[c.UpdateOracle]
    funding_resume: FundingResumeAction | None
    corrections: list[Correction] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.rollback.to_json(),
                "oracles_carried_forward": [to_jsonable(u) for u in self.oracles],
                "funding_resume": (None if self.funding_resume is None
                                   else self.funding_resume.name),
                "corrections": [x.to_json() for x in self.corrections]}


def plan_rollback(store: ChainReader, target: int, *, force: bool = False,
                  overrides: Mapping[int, Override] | None = None,
                  funding_resume: FundingResumeAction | None = FundingResumeAction.SKIP,
                  cf: Counterfactual | None = None) -> RecoveryPlan:
    """Plan a rollback to snapshot height `target` and its recovery block (reads only).

    Raises `RollbackRefused` (saying what to do instead) when the target is not
    a snapshot height below the head, or is deeper than max_rollback_depth
    without `force`. `cf`: the suffix's counterfactual if already computed (an
    assessment's, for the same stretch).
    """
    rb = plan_ledger_rollback(store, target, force=force)
    stretch = chain_stretch(store, target)
    if cf is None or cf.stretch != stretch:
        cf = run_counterfactual(store, stretch, overrides=overrides)
    return RecoveryPlan(rb, latest_good_prices(cf), funding_resume, cf.corrections)


def execute_recovery(seq: Sequencer, plan: RecoveryPlan, *, reason: str | None,
                     operator: str | None, key: Key | None = None) -> RollbackResult:
    """Archive the suffix and append the recovery block in one transaction, then snapshot.

    On a signed chain the recovery block is signed with the operator's `key` (else
    the sequencer's operator key: ledger.sequencer.Sequencer.operator_key).
    """
    reason, operator = _require(reason, operator, "a rollback")
    result = execute_rollback(seq, plan.rollback, reason=reason, operator=operator,
                              oracles=plan.oracles, funding_resume=plan.funding_resume,
                              key=key)
    seq.snapshot()
    return result


# -- payouts ----------------------------------------------------------------------


@dataclass
class Payout:
    """What issuing a remedy did: the plan, the block and the vault around it."""

    plan: RemedyPlan
    paid: list[tuple[str, int]]
    header: BlockHeader | None
    rejected: list[dict[str, Any]]
    #: LIQ_VAULT's account value right before and right after the payout block
    vault_before_qq: int
    vault_after_qq: int

    @property
    def total_qq(self) -> int:
        return sum(a for _, a in self.paid)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.plan.kind, "ref": self.plan.ref,
                "issued": len(self.paid), "total_qq": self.total_qq,
                "height": None if self.header is None else self.header.height,
                "pro_rata": self.plan.pro_rata, "rejected": self.rejected,
                "vault_before_qq": self.vault_before_qq, "vault_after_qq": self.vault_after_qq,
                "payouts": [{"acct": a, "amount_qq": q} for a, q in self.paid]}


def _pay(seq: Sequencer, plan: RemedyPlan, *, action: str, reason: str, operator: str,
         details: dict[str, Any], key: Key | None = None) -> Payout:
    """Pay what `plan` still owes from LIQ_VAULT in one block (idempotent by the plan's ref).

    The plan must have been computed at the current head (the callers re-plan otherwise).
    """
    owed = [(ln.acct, ln.owed_qq) for ln in plan.lines if ln.owed_qq > 0]
    before = seq.engine.account_value(LIQ_VAULT)
    if not owed:
        return Payout(plan, [], None, [], before, before)
    cmds = [c.IssueRefund(acct, amount, LIQ_VAULT, plan.ref) for acct, amount in owed]
    out = seq.submit(cmds, journal=JournalEntry(action, operator, reason, {
        **details, "ref": plan.ref, "accounts": len(owed),
        "total_qq": sum(a for _, a in owed), "pro_rata": plan.pro_rata,
        "corrections": len(plan.cf.corrections)}),
        operator_key=key if key is not None else seq.operator_key())
    rejected = [to_jsonable(e.event) for e in out.rejections
                if type(e.event) is o.RefundRejected]
    if rejected:
        log.warning("refunds rejected", count=len(rejected), ref=plan.ref)
    return Payout(plan, owed, out.header, rejected, before,
                  seq.engine.account_value(LIQ_VAULT))


def issue_refunds(seq: Sequencer, branch: int, *, reason: str | None, operator: str | None,
                  overrides: Mapping[int, Override] | None = None,
                  plan: RemedyPlan | None = None, key: Key | None = None) -> Payout:
    """Pay the refund plan of an archived branch (what is outstanding only).

    `plan`: the branch's refund plan if just computed; re-planned if the head moved.
    """
    reason, operator = _require(reason, operator, "issuing refunds")
    if (plan is None or plan.head_hash != seq.store.head.hash or plan.kind != "refunds"
            or plan.cf.stretch.branch != branch):
        plan = plan_refunds(seq.store, branch, overrides=overrides)
    return _pay(seq, plan, action="refunds", reason=reason, operator=operator,
                details={"branch": branch}, key=key)


def issue_compensation(seq: Sequencer, from_height: int, *, reason: str | None,
                       operator: str | None, snapshot: int | None = None,
                       overrides: Mapping[int, Override] | None = None,
                       key: Key | None = None) -> Payout:
    """Pay the compensation plan of an incident first suspect at `from_height`."""
    reason, operator = _require(reason, operator, "issuing compensation")
    plan = plan_compensation(seq.store, from_height, snapshot=snapshot, overrides=overrides)
    return _pay(seq, plan, action="compensation", reason=reason, operator=operator,
                details={"from_height": from_height,
                         "snapshot_height": plan.cf.stretch.base_height}, key=key)


# -- modes and verification -------------------------------------------------------


def set_mode(seq: Sequencer, mode: str, *, market: str | None = None,
             band_ppm: int = RECOVERY_BAND_PPM, reason: str | None,
             operator: str | None, key: Key | None = None) -> BlockOutcome:
    """Append a SetMode (global, or one market), journaled with its block."""
    reason, operator = _require(reason, operator, "a mode change")
    m = MODES.get(mode.lower())
    if m is None:
        raise CommandInvalid(f"--mode must be one of {', '.join(MODES)}, was {mode!r}")
    if band_ppm < 0:
        raise CommandInvalid(f"--band-ppm must be 0 or more, was {band_ppm}")
    if market is not None and not seq.engine.has_market(market):
        raise NotFound(f"no market {market!r} on this chain")
    scope = market or c.ALL
    return seq.submit([c.SetMode(scope, m, band_ppm, reason, operator)],
                      journal=JournalEntry("mode", operator, reason, {
                          "scope": scope, "mode": m.name, "band_ppm": band_ppm}),
                      operator_key=key if key is not None else seq.operator_key())


def verify_recovery(store: ChainStore, branch: int | None) -> dict[str, bool]:
    """The chain, the archived branch and the state replayed from the newest snapshot."""
    chain_ok = verify_store(store).ok
    branch_ok = branch is None or verify_store(store, branch=branch).ok
    state_ok = recover(store).state_hash() == store.block(store.head.height).state_hash
    return {"chain": bool(chain_ok), "branch": bool(branch_ok), "state": bool(state_ok),
            "verified": bool(chain_ok and branch_ok and state_ok)}


__all__ = ["FUNDING_RESUME", "MODES", "Payout", "RecoveryPlan", "execute_recovery",
           "issue_compensation", "issue_refunds", "plan_rollback", "refund_ref", "set_mode",
           "verify_recovery"]
