"""Compensation without a rollback (SPEC 13): leave the chain, pay what the incident cost.

comp(a) = max(0, E_C(a) - E_B(a)): C re-executes the canonical chain from the
newest snapshot below the first suspect height H to the head, with the bad
inputs from H on corrected; B is the chain at its head; both at B's marks.
Unlike a refund after a rollback, a bogus liquidation here is a loss the
chain keeps, so it is paid (cause `liquidation`). This is what dYdX did after
its October 2025 outage, from its insurance fund; here it is paid from
LIQ_VAULT under the ref `compensation-from-H`, idempotent like refunds: the
payouts already made under that ref are kept out of B and subtracted.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.core.counterfactual import Override
from ledger.errors import CommandInvalid
from ledger.store.reader import ChainReader, one_view
from projections.counterfactual import Counterfactual, chain_stretch, run_counterfactual
from projections.remedy import RemedyPlan, build_plan, paid_under, vault_available


def compensation_ref(from_height: int) -> str:
    """The `ref` of every compensation payout for an incident first suspect at a height."""
    return f"compensation-from-{from_height}"


def base_snapshot(store: ChainReader, from_height: int, snapshot: int | None = None) -> int:
    """The snapshot a counterfactual from `from_height` starts at: given, or the newest below."""
    head = store.head.height
    if not 0 < from_height <= head:
        raise CommandInvalid(f"--from-height must be a height in 1..{head} (the head), "
                             f"was {from_height}")
    heights = [s.height for s in store.snapshots()]
    if snapshot is None:
        below = [h for h in heights if h < from_height]
        if not below:
            raise CommandInvalid(f"no snapshot below height {from_height} to start the "
                                 "counterfactual from; take snapshots (`ledgerctl snapshot`)")
        return below[-1]
    if snapshot not in heights or snapshot >= from_height:
        near = ", ".join(str(h) for h in heights if h < from_height) or "none"
        raise CommandInvalid(f"--snapshot {snapshot} must be a snapshot height below "
                             f"--from-height {from_height}; snapshots below it: {near}")
    return snapshot


@one_view
def plan_compensation(store: ChainReader, from_height: int, *, snapshot: int | None = None,
                      overrides: Mapping[int, Override] | None = None,
                      cf: Counterfactual | None = None) -> RemedyPlan:
    """The compensation plan for an incident first suspect at `from_height` (reads only)."""
    ref = compensation_ref(from_height)
    if cf is None:
        base = base_snapshot(store, from_height, snapshot)
        cf = run_counterfactual(store, chain_stretch(store, base),
                                first_suspect_height=from_height, overrides=overrides,
                                drop_refs=[ref])
    plan = build_plan("compensation", ref, cf, other="B", other_blocks=cf.actual_blocks,
                      marks_engine=cf.actual, marks_height=cf.stretch.last_height,
                      already_paid=paid_under(store, ref), vault_qq=vault_available(cf.actual),
                      remedy_ref=ref)
    plan.head_hash = store.head.hash
    return plan
