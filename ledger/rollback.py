"""Operator rollback: plan (a dry run), then truncate, archive, restore and recover.

`plan_rollback` reads the suffix above a snapshot height and says what a
rollback would undo and carry forward; it changes nothing.

`execute_rollback` (DESIGN.md "Rollback", steps 2 to 4) restores the engine
from the target snapshot and checks its hash against the block header, runs
the recovery block through it (`recovery_commands`: the suffix's latest
guard-approved prices, RolledBack with the carried-forward external flows,
BulkCancel of every open order except TP/SL, SetMode POST_ONLY with the
recovery band, a funding restart), and then, in ONE write transaction,
archives the suffix and appends that block. A crash at any instant leaves the
old chain, or the new chain with its recovery block; never a truncated chain
without it. The operator's workflow around it (which prices to carry, the
refunds after it) is the recovery service, projections.recovery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ledger.core.engine import BlockResult, Engine
from ledger.core.state import DEFAULT_RECOVERY_BAND_PPM
from ledger.errors import NotFound, RollbackRefused, VerificationFailed
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import to_jsonable
from ledger.events.enums import TP_SL, FundingResumeAction, Mode
from ledger.events.payloads import CarriedFlow
from ledger.events.record import type_code
from ledger.keys import Key
from ledger.replay import restore_exact
from ledger.sequencer import Sequencer
from ledger.signing import authorise
from ledger.store.blocks import BlockHeader
from ledger.store.chain import max_rollback_depth
from ledger.store.reader import ChainReader

log = structlog.get_logger("ledger.rollback")

#: Paradex's post-incident band (ledger.core.state): every order within 5 bps of the
#: external fair price.
RECOVERY_BAND_PPM = DEFAULT_RECOVERY_BAND_PPM


@dataclass
class RollbackPlan:
    """What a rollback to `target_height` would do (nothing is changed by planning)."""

    target_height: int
    head_height: int
    head_hash: bytes
    head_time: int
    snapshot_state_hash: bytes
    depth: int
    max_depth: int
    next_branch: int
    events_total: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    accounts_touched: list[str] = field(default_factory=list)
    fills: int = 0
    liquidations: list[dict[str, Any]] = field(default_factory=list)
    deleveragings: int = 0
    flows: list[CarriedFlow] = field(default_factory=list)
    #: the chain's markets, by id (the recovery block restarts each one's funding clock)
    markets: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "target_height": self.target_height,
            "head_height": self.head_height,
            "head_hash": self.head_hash.hex(),
            "depth": self.depth,
            "max_depth": self.max_depth,
            "snapshot_state_hash": self.snapshot_state_hash.hex(),
            "branch_id": self.next_branch,
            "events_total": self.events_total,
            "events_by_type": dict(sorted(self.events_by_type.items())),
            "accounts_touched": self.accounts_touched,
            "fills_undone": self.fills,
            "liquidations_undone": self.liquidations,
            "deleveragings_undone": self.deleveragings,
            "flows_carried_forward": [to_jsonable(f) for f in self.flows],
        }


def plan_rollback(store: ChainReader, target: int, *, force: bool = False) -> RollbackPlan:
    """Plan a rollback to snapshot height `target`; raise `RollbackRefused` saying why not."""
    head = store.head
    if target >= head.height:
        raise RollbackRefused(
            f"height {target} is at or above the head ({head.height}): there is nothing to "
            "roll back; pick a snapshot height below the head (`ledgerctl snapshots`)")
    snaps = store.snapshots()
    heights = [s.height for s in snaps]
    if target not in heights:
        below = [h for h in heights if h < target][-3:]
        above = [h for h in heights if h > target][:3]
        near = ", ".join(map(str, below + above)) or "none"
        raise RollbackRefused(
            f"height {target} is not a snapshot height; a rollback must land on a verified "
            f"snapshot. Nearest snapshot heights: {near}")
    max_depth = max_rollback_depth(store.config)
    depth = head.height - target
    if depth > max_depth and not force:
        raise RollbackRefused(
            f"rolling back {depth} blocks is deeper than max_rollback_depth ({max_depth}); "
            "check the target, then pass --force if you really mean it")
    snap = next(s for s in snaps if s.height == target)
    header = store.block(target)
    if header.state_hash != snap.state_hash:
        raise VerificationFailed(target, "snapshot state hash differs from the block header's")
    plan = RollbackPlan(target, head.height, head.hash, head.time, snap.state_hash, depth,
                        max_depth, store.next_branch_id())
    plan.markets = sorted({e.event.mkt for e in store.events_by(
        type_code=type_code(o.MarketListed), to_height=target)})
    touched: dict[str, None] = {}
    for env in store.iter_events(target + 1, head.height):
        ev = env.event
        name = type(ev).__name__
        plan.events_total += 1
        plan.events_by_type[name] = plan.events_by_type.get(name, 0) + 1
        for f in type(ev).ACCOUNT_FIELDS:
            touched[getattr(ev, f)] = None
        if isinstance(ev, o.Filled):
            plan.fills += 1
        elif isinstance(ev, o.Liquidated):
            plan.liquidations.append({"acct": ev.acct, "height": env.height, "seq": env.seq,
                                      "method": ev.method.name, "deficit_qq": ev.deficit_qq})
        elif isinstance(ev, o.Deleveraged):
            plan.deleveragings += 1
        elif isinstance(ev, o.Deposited):
            plan.flows.append(CarriedFlow(ev.acct, ev.amount_qq, ev.ext_ref, env.seq))
        elif isinstance(ev, o.Withdrew):
            plan.flows.append(CarriedFlow(ev.acct, -ev.amount_qq, ev.ext_ref, env.seq))
        elif isinstance(ev, o.RolledBack):
            # Flows an earlier rollback carried onto this suffix must be carried again.
            plan.flows.extend(ev.flows)
    plan.accounts_touched = sorted(touched)
    return plan


@dataclass
class RollbackResult:
    branch: int
    recovery: BlockHeader
    snapshot_state_hash: bytes
    state_hash_after: bytes
    cancelled_orders: int


def recovery_commands(plan: RollbackPlan, *, reason: str, operator: str,
                      oracles: Sequence[c.UpdateOracle],
                      funding_resume: FundingResumeAction | None,
                      band_ppm: int = RECOVERY_BAND_PPM) -> list[Any]:
    """The first block of the new branch, as ordinary commands so replay reproduces it.

    It opens with `oracles`, the latest guard-approved price of each market from
    the orphaned suffix (external prices are facts, SPEC 13: the chain resumes at
    current prices, not the snapshot's), carries the external flows forward
    (ApplyRollback), cancels every order except TP/SL, enters POST_ONLY with
    the recovery band and, with `funding_resume`, restarts every market's funding
    clock at the block time: SKIP accrues nothing over the undone stretch (the
    refunds pay the funding it undid), ACCRUE_CAPPED accrues at most max_gap
    seconds of it at the current rate (and the refund plan counts that accrual).
    """
    cmds: list[Any] = [c.BeginBlock(plan.head_time), *oracles,
                       c.ApplyRollback(plan.target_height, plan.next_branch,
                                       plan.snapshot_state_hash, tuple(plan.flows), reason,
                                       operator),
                       c.BulkCancel(c.ALL, TP_SL, "rollback recovery"),
                       c.SetMode(c.ALL, Mode.POST_ONLY, band_ppm, reason, operator)]
    if funding_resume is not None:
        cmds.extend(c.FundingResume(mkt, funding_resume) for mkt in plan.markets)
    cmds.append(c.EndBlock())
    return cmds


def recovery_block(engine: Engine, plan: RollbackPlan, *, reason: str, operator: str,
                   oracles: Sequence[c.UpdateOracle],
                   funding_resume: FundingResumeAction | None,
                   band_ppm: int = RECOVERY_BAND_PPM, key: Key | None = None) -> BlockResult:
    """Run the recovery block on `engine`, the state at the target height (nothing written).

    `execute_rollback` appends what this returns, signed with the operator's `key`
    on a signed chain (ledger.signing.authorise); an assessment runs it on a copy,
    without a key, to see the chain a rollback would leave, before anyone decides
    (a simulation: the authority is not enforced on it).
    """
    cmds = recovery_commands(plan, reason=reason, operator=operator, oracles=oracles,
                             funding_resume=funding_resume, band_ppm=band_ppm)
    height = plan.target_height + 1
    if key is not None:
        cmds = authorise(engine.state, engine.state.chain_id, height, cmds, key,
                         operator=operator, reason=reason)
        return engine.run_block(height, cmds)
    enforce = engine.enforce_authority
    engine.enforce_authority = False
    try:
        return engine.run_block(height, cmds)
    finally:
        engine.enforce_authority = enforce


def execute_rollback(seq: Sequencer, plan: RollbackPlan, *, reason: str, operator: str,
                     oracles: Sequence[c.UpdateOracle],
                     funding_resume: FundingResumeAction | None,
                     band_ppm: int = RECOVERY_BAND_PPM, key: Key | None = None
                     ) -> RollbackResult:
    """Carry out a plan (see module docstring). The sequencer must hold the write lock.

    On a signed chain the recovery block carries the operator's signature (`key`,
    else the sequencer's operator key) over its privileged commands.

    `oracles` and `funding_resume` shape the recovery block (`recovery_commands`);
    the recovery service (projections.recovery) derives the oracles from the
    suffix's counterfactual.
    """
    store = seq.store
    if not reason.strip() or not operator.strip():
        raise RollbackRefused("a rollback needs --reason and --operator (they are journaled)")
    head = store.head
    if head.hash != plan.head_hash or store.next_branch_id() != plan.next_branch:
        raise RollbackRefused("the chain moved since the plan was made; plan again")
    engine = restore_exact(store, plan.target_height)
    got = engine.state_hash()
    if got != plan.snapshot_state_hash:
        raise VerificationFailed(plan.target_height,
                                 "restored state hash differs from the snapshot's")
    if key is None:
        key = seq.operator_key()
    if engine.state.keys and key is None:
        raise RollbackRefused("a rollback of a signed chain needs the operator key")
    result = recovery_block(engine, plan, reason=reason, operator=operator, oracles=oracles,
                            funding_resume=funding_resume, band_ppm=band_ppm, key=key)
    cancelled = sum(1 for e in result.envelopes if isinstance(e.event, o.OrderCancelled))
    details = {"plan": {k: v for k, v in plan.to_json().items()
                        if k not in ("accounts_touched", "flows_carried_forward",
                                     "liquidations_undone")},
               "snapshot_state_hash": got.hex(),
               "recovery_state_hash": result.state_hash.hex(),
               "flows_carried_forward": len(plan.flows),
               "oracles_carried_forward": [to_jsonable(u) for u in oracles],
               "funding_resume": None if funding_resume is None else funding_resume.name,
               "orders_cancelled": cancelled}
    branch = store.truncate_to(plan.target_height, reason=reason, operator=operator,
                               details=details, then_append=result.envelopes,
                               block_time=plan.head_time, state_hash=result.state_hash)
    if branch != plan.next_branch:  # single writer: cannot happen unless the lock failed
        raise NotFound(f"rollback archived into branch {branch}, planned {plan.next_branch}")
    seq.engine = engine
    header = store.block(plan.target_height + 1)
    log.info("rolled back", target=plan.target_height, branch=branch,
             archived=plan.events_total, operator=operator)
    return RollbackResult(branch, header, got, result.state_hash, cancelled)
