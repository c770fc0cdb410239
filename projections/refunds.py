"""Refunds after a rollback: what the rollback cannot restore (SPEC 13).

refund(a) = max(0, E_C(a) - E_R(a)): C is the branch's corrected
counterfactual at the branch's last height, R the chain right after the
recovery block, both valued at R's marks (projections.remedy builds the plan).
A rollback restores positions, so a bogus liquidation costs (almost) nothing
here; what is owed is the P&L of the trades the rollback reversed and the
funding it undid, at common marks. The recovery block's funding restart is
part of R: with ACCRUE_CAPPED the accrual it paid is already in R and is not
paid again; with SKIP the refunds pay the undone funding in full.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.core.counterfactual import Override
from ledger.errors import NotFound
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.record import type_code
from ledger.replay import restore_exact
from ledger.store.reader import ChainReader, one_view
from projections.counterfactual import Counterfactual, branch_stretch, run_counterfactual
from projections.remedy import RemedyPlan, build_plan, paid_under, vault_available


def refund_ref(branch: int) -> str:
    """The `ref` every refund for a branch carries (what makes issuing idempotent)."""
    return f"rollback-branch-{branch}"


def recovery_height(store: ChainReader, branch: int) -> int:
    """The canonical height of the RolledBack block that opened the chain after `branch`."""
    for env in store.events_by(type_code=type_code(o.RolledBack)):
        if env.event.branch_id == branch:
            return int(env.height)
    raise NotFound(f"no RolledBack event for branch {branch} on the canonical chain; "
                   "was the branch archived by `ledgerctl rollback --execute`?")


def funding_resume_note(action: str | None) -> str:
    """How a plan treats the funding the rollback undid, given the recovery's restart."""
    if action == "ACCRUE_CAPPED":
        return ("funding: the recovery block accrued at most max_gap seconds of the undone "
                "funding (FundingResume ACCRUE_CAPPED); that accrual is in R, so only the rest "
                "is refunded")
    if action == "SKIP":
        return ("funding: the recovery block restarted funding without accrual "
                "(FundingResume SKIP); the funding the rollback undid is refunded in full")
    return ("funding: the recovery block did not restart funding; the funding the rollback "
            "undid is refunded in full, so do not resume with ACCRUE_CAPPED over the gap")


@one_view
def plan_refunds(store: ChainReader, branch: int, *,
                 overrides: Mapping[int, Override] | None = None,
                 first_suspect_height: int | None = None,
                 cf: Counterfactual | None = None) -> RemedyPlan:
    """The refund plan for an archived branch (reads only)."""
    stretch = branch_stretch(store, branch)
    rh = recovery_height(store, branch)
    if rh != stretch.base_height + 1:
        raise NotFound(f"branch {branch}'s recovery block is at height {rh}, not right above "
                       f"its base {stretch.base_height}; the chain below it moved")
    if cf is None:
        cf = run_counterfactual(store, stretch, first_suspect_height=first_suspect_height,
                                overrides=overrides)
    recovery = store.events(rh, rh)
    resumes = sorted({e.event.action.name for e in recovery
                      if type(e.event) is c.FundingResume})
    action = resumes[0] if len(resumes) == 1 else None
    ref = refund_ref(branch)
    plan = build_plan("refunds", ref, cf, other="R", other_blocks=[recovery],
                      marks_engine=restore_exact(store, rh), marks_height=rh,
                      already_paid=paid_under(store, ref),
                      vault_qq=vault_available(restore_exact(store, store.head.height)),
                      funding_resume=action)
    plan.notes.append(funding_resume_note(action))
    plan.head_hash = store.head.hash
    return plan
