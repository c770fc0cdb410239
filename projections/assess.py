"""Rollback or compensate, before acting: both remedies from one counterfactual (SPEC 13).

`assess(store, from_height)` changes nothing. It takes H = `from_height` as the
first suspect height and the newest snapshot below it (or the one named) as
the rollback target S, runs the counterfactual C of the canonical chain from S
to the head once, and sets side by side:

(a) roll back to S and refund what the rollback cannot restore: the recovery
    block is run on a copy of the state at S exactly as `rollback --execute`
    would build it (same prices carried forward, same flows, same funding
    restart), and C is compared with that R at R's marks;
(b) leave the chain and compensate: C against B, the chain at its head.

Per account: payouts by cause, totals, vault sufficiency (pro rata if short),
accounts affected, and what a rollback would undo (fills, liquidations).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.core.counterfactual import Override
from ledger.events.enums import FundingResumeAction
from ledger.rollback import RollbackPlan, plan_rollback, recovery_block
from ledger.store.reader import ChainReader, one_view
from projections.compensation import base_snapshot, compensation_ref, plan_compensation
from projections.counterfactual import chain_stretch, latest_good_prices, run_counterfactual
from projections.refunds import funding_resume_note, refund_ref
from projections.remedy import RemedyPlan, build_plan, vault_available


@dataclass
class Assessment:
    """The two remedies of one incident, side by side (nothing is changed)."""

    from_height: int
    rollback_plan: RollbackPlan
    refunds: RemedyPlan
    compensation: RemedyPlan

    def to_json(self) -> dict[str, Any]:
        rb = self.rollback_plan
        ref, comp = self.refunds, self.compensation

        def side(p: RemedyPlan) -> dict[str, Any]:
            doc = p.to_json()
            keep = ("compared_with", "marks", "accounts_owed", "accounts_better_off",
                    "bogus_liquidations", "total_harm_qq", "harm_by_cause", "total_qq",
                    "already_paid_qq", "outstanding_qq", "vault_available_qq", "pro_rata",
                    "notes", "lines", "ref", "funding_resume")
            return {k: doc[k] for k in keep}

        return {
            "from_height": self.from_height,
            "snapshot_height": rb.target_height,
            "head_height": rb.head_height,
            "corrections": [x.to_json() for x in ref.cf.corrections],
            "flagged_flows": [x.to_json() for x in ref.cf.flagged_flows],
            "rollback": {
                "blocks_undone": rb.depth,
                "events_undone": rb.events_total,
                "fills_undone": rb.fills,
                "liquidations_undone": len(rb.liquidations),
                "deleveragings_undone": rb.deleveragings,
                "flows_carried_forward": len(rb.flows),
                "max_depth": rb.max_depth,
                "needs_force": rb.depth > rb.max_depth,
                **side(ref),
            },
            "compensation": side(comp),
        }


@one_view
def assess(store: ChainReader, from_height: int, *, snapshot: int | None = None,
           overrides: Mapping[int, Override] | None = None,
           funding_resume: FundingResumeAction | None = FundingResumeAction.SKIP,
           ) -> Assessment:
    """Both remedies for an incident first suspect at `from_height` (see module docstring)."""
    base = base_snapshot(store, from_height, snapshot)
    comp_ref = compensation_ref(from_height)
    cf = run_counterfactual(store, chain_stretch(store, base), first_suspect_height=from_height,
                            overrides=overrides, drop_refs=[comp_ref])
    compensation = plan_compensation(store, from_height, cf=cf)
    rb = plan_rollback(store, base, force=True)
    r_engine = cf.start_engine()
    block = recovery_block(r_engine, rb, reason="assessment", operator="assess",
                           oracles=latest_good_prices(cf), funding_resume=funding_resume)
    action = None if funding_resume is None else funding_resume.name
    refunds = build_plan("refunds", refund_ref(rb.next_branch), cf, other="R",
                         other_blocks=[block.envelopes], marks_engine=r_engine,
                         marks_height=base + 1, already_paid={},
                         vault_qq=vault_available(r_engine), funding_resume=action)
    refunds.notes.append(funding_resume_note(action))
    return Assessment(from_height, rb, refunds, compensation)
