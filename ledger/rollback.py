"""Operator rollback: plan (a dry run), then truncate, archive, restore and recover.

`plan_rollback` reads the suffix above a snapshot height and says what a
rollback would undo and carry forward; it changes nothing.

`execute_rollback` (DESIGN.md "Rollback", steps 2 to 4) restores the engine
from the target snapshot and checks its hash against the block header, runs
the recovery block through it (RolledBack with the carried-forward external
flows, BulkCancel of every open order except TP/SL, SetMode POST_ONLY with
the recovery band), and then, in ONE write transaction, archives the suffix
and appends that block. A crash at any instant leaves the old chain, or the
new chain with its recovery block; never a truncated chain without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from ledger.core.engine import Engine
from ledger.errors import NotFound, RollbackRefused, VerificationFailed
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import to_jsonable
from ledger.events.enums import Mode, OrderType
from ledger.events.payloads import CarriedFlow
from ledger.keys import Key
from ledger.replay import replay, restore
from ledger.sequencer import Sequencer
from ledger.signing import authorise
from ledger.store.blocks import BlockHeader
from ledger.store.chain import ChainStore

log = structlog.get_logger("ledger.rollback")

#: Paradex's post-incident band: every order within 5 bps of the external fair price.
RECOVERY_BAND_PPM = 500


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


def plan_rollback(store: ChainStore, target: int, *, force: bool = False) -> RollbackPlan:
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
    max_depth = int(store.config.get("max_rollback_depth", 10_000))
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
                      band_ppm: int = RECOVERY_BAND_PPM) -> list[Any]:
    """The first block of the new branch, as ordinary commands so replay reproduces it."""
    return [
        c.BeginBlock(plan.head_time),
        c.ApplyRollback(plan.target_height, plan.next_branch, plan.snapshot_state_hash,
                        tuple(plan.flows), reason, operator),
        c.BulkCancel(c.ALL, (OrderType.TAKE_PROFIT, OrderType.STOP_LOSS),
                     "rollback recovery"),
        c.SetMode(c.ALL, Mode.POST_ONLY, band_ppm, reason, operator),
        c.EndBlock(),
    ]


def restore_exact(store: ChainStore, height: int) -> Engine:
    """The engine at exactly `height`, from the nearest snapshot, hash-checked per block."""
    engine, base = restore(store, at_or_below=height)
    replay(store, engine, base + 1, height, check=True)
    return engine


def execute_rollback(seq: Sequencer, plan: RollbackPlan, *, reason: str, operator: str,
                     band_ppm: int = RECOVERY_BAND_PPM, key: Key | None = None
                     ) -> RollbackResult:
    """Carry out a plan (see module docstring). The sequencer must hold the write lock.

    On a signed chain the recovery block carries the operator's signature
    (`key`, else the sequencer's operator key) over its privileged commands.
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
    cmds = recovery_commands(plan, reason=reason, operator=operator, band_ppm=band_ppm)
    cmds = authorise(engine.state, store.chain_id, plan.target_height + 1, cmds,
                     key if key is not None else seq.operator_key(), operator=operator,
                     reason=reason)
    result = engine.run_block(plan.target_height + 1, cmds)
    unauthorised = [e for e in result.envelopes if isinstance(e.event, o.CommandUnauthorized)]
    if unauthorised:
        raise RollbackRefused(unauthorised[0].event.reason)
    cancelled = sum(1 for e in result.envelopes if isinstance(e.event, o.OrderCancelled))
    details = {"plan": {k: v for k, v in plan.to_json().items()
                        if k not in ("accounts_touched", "flows_carried_forward",
                                     "liquidations_undone")},
               "snapshot_state_hash": got.hex(),
               "recovery_state_hash": result.state_hash.hex(),
               "flows_carried_forward": len(plan.flows),
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
