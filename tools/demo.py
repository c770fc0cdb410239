"""`ledgerctl demo incident`: the 19 January 2026 incident and its recovery, end to end.

1. A fresh ledger (guards off by default, as on the day), normal trading with
   snapshots every `snapshot_every` blocks up to the maintenance height.
2. At the maintenance height + 1 a restart race publishes a funding index of
   zero for the incident markets; with guards off the ledger applies it, and
   funding P&L and bogus liquidations follow for a few blocks.
3. The operator's recovery through the recovery service (projections.recovery),
   the very functions the CLI commands call: assess (rollback or compensate,
   from one corrected counterfactual), rollback plan and execute (archive,
   restore, recovery block with the latest good prices and the external flows
   carried forward, BulkCancel except TP/SL, POST_ONLY with the 500 ppm band,
   funding restarted), the what-if (bogus liquidations), refunds issued from
   LIQ_VAULT, mode back to OK, and verification of chain, branch and state.
With `--guards on` the zeroed index is refused, the market halts, and no one
is liquidated: there is nothing to recover.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.errors import LedgerExists
from ledger.events import outcomes as o
from ledger.events.enums import Mode
from ledger.events.record import type_code
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, ledger_exists, verify_store
from projections import recovery
from projections.assess import assess
from projections.refunds import plan_refunds
from projections.whatif import compare_worlds
from tools.output import usd
from tools.simulate import SIM_GENESIS_TIME, make_workload, run

DEMO_CHAIN_ID = "perpledger-demo-incident"
OPERATOR = "demo-operator"
INCIDENT_MARKETS = ("PAXG-PERP", "ETH-PERP")


@dataclass
class Timeline:
    """Human lines of what happened, in chain order."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    say: Callable[[str], None] | None = None

    def add(self, height: int | None, what: str) -> None:
        self.lines.append({"height": height, "what": what})
        if self.say is not None:
            self.say(f"[{'' if height is None else height:>5}] {what}")


def _fresh(path: Path) -> None:
    """Start from an empty directory; only ever wipe a ledger this demo created."""
    if not ledger_exists(path):
        return
    with ChainStore.open(path) as store:
        chain_id = store.chain_id
    if chain_id != DEMO_CHAIN_ID:
        raise LedgerExists(f"{path} holds a ledger that is not the demo's ({chain_id!r}); "
                           "pass --data with an empty directory")
    shutil.rmtree(path)


def run_demo(path: Path, *, guards: bool = False, accounts: int = 600, seed: int = 7,
             normal_blocks: int = 100, bad_blocks: int = 12, snapshot_every: int = 25,
             markets: tuple[str, ...] = INCIDENT_MARKETS,
             say: Callable[[str], None] | None = None,
             tick: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the whole story in `path` and return the summary (see module docstring)."""
    _fresh(path)
    tl = Timeline(say=say)
    maintenance = normal_blocks
    zero_at = maintenance + 1
    wl = make_workload(seed=seed, accounts=accounts, inject=[(zero_at, m) for m in markets])

    def step(_out: object) -> None:
        if tick is not None:
            tick()

    seq = Sequencer.create(path, chain_id=DEMO_CHAIN_ID, listings=DEMO_MARKETS, guards=guards,
                           genesis_time=SIM_GENESIS_TIME,
                           config={"snapshot_every": snapshot_every,
                                   "max_rollback_depth": 1_000})
    with seq:
        tl.add(0, f"genesis: {len(DEMO_MARKETS)} markets, guards {'ON' if guards else 'OFF'}")
        stats = run(seq, wl, maintenance, on_block=step)
        tl.add(maintenance, f"normal trading to the maintenance height: {stats.commands:,} "
                            f"commands, {stats.counts.get('Filled', 0):,} fills, "
                            f"{stats.counts.get('Liquidated', 0)} genuine liquidations")
        snap = seq.snapshot()
        tl.add(maintenance, f"pre-upgrade snapshot, state hash {snap.state_hash.hex()[:16]}")
        vault_start = seq.engine.balance("LIQ_VAULT")
        bad = run(seq, wl, bad_blocks, on_block=step)
        store = seq.store
        rejected = [e for e in store.events_by(type_code=type_code(o.FundingTickRejected),
                                               from_height=zero_at)]
        liquidated = store.events_by(type_code=type_code(o.Liquidated), from_height=zero_at)
        liq_accounts = sorted({e.event.acct for e in liquidated})
        tl.add(zero_at, f"restart race publishes funding index 0 for {', '.join(markets)}")
        summary: dict[str, Any] = {
            "guards": "on" if guards else "off",
            "seed": seed,
            "accounts": accounts,
            "maintenance_height": maintenance,
            "zero_index_height": zero_at,
            "incident_markets": list(markets),
            "funding_ticks_rejected": len(rejected),
            "liquidated_on_bad_branch": len(liq_accounts),
            "snapshot_height": maintenance,
            "snapshot_state_hash": snap.state_hash.hex(),
        }
        if guards:
            halted = [m for m in markets if seq.engine.effective_mode(m) != Mode.OK]
            for e in rejected:
                tl.add(e.height, f"guards refuse the tick for {e.event.mkt}: {e.event.reason}")
            tl.add(store.head.height, f"markets out of OK: {', '.join(halted) or 'none'}; "
                                      f"liquidations since the bad tick: {len(liq_accounts)}")
            report = verify_store(store)
            summary.update({
                "markets_left_ok": halted,
                "bogus_liquidations": 0,
                "positions_restored": 0,
                "refunded_accounts": 0,
                "refunded_total": 0,
                "vault_before": seq.engine.balance("LIQ_VAULT"),
                "vault_after": seq.engine.balance("LIQ_VAULT"),
                "state_hash_after_rollback": None,
                "rolled_back": False,
                "verified": bool(report.ok),
            })
            summary["timeline"] = tl.lines
            return summary
        tl.add(zero_at, f"{len(liq_accounts)} accounts liquidated over {bad_blocks} blocks "
                        f"({bad.counts.get('Deleveraged', 0)} deleveragings)")

        # -- the operator's recovery, through the recovery service ----------------------
        reason = "19 Jan incident: restart race zeroed funding indices"
        assessment = assess(store, zero_at, snapshot=maintenance)
        ref_a, comp_b = assessment.refunds, assessment.compensation
        tl.add(store.head.height,
               f"assess from {zero_at}: {len(ref_a.cf.corrections)} inputs corrected; "
               f"(a) roll back and refund {len(ref_a.lines)} accounts "
               f"{usd(ref_a.total_harm_qq)}, or (b) compensate {len(comp_b.lines)} accounts "
               f"{usd(comp_b.total_harm_qq)}")
        plan = recovery.plan_rollback(store, maintenance, cf=ref_a.cf)
        tl.add(store.head.height, f"rollback plan: archive {plan.rollback.events_total:,} "
                                  f"events in {plan.rollback.depth} blocks, carry "
                                  f"{len(plan.rollback.flows)} external flows and "
                                  f"{len(plan.oracles)} prices forward")
        result = recovery.execute_recovery(seq, plan, reason=reason, operator=OPERATOR)
        tl.add(result.recovery.height, f"rolled back to {maintenance} (branch {result.branch} "
                                       f"archived); {result.cancelled_orders} orders cancelled "
                                       "except TP/SL; POST_ONLY with 500 ppm band")
        rplan = plan_refunds(store, result.branch)
        wi = compare_worlds(rplan.cf)
        bogus = wi.bogus
        tl.add(None, f"audit whatif: {len(bogus)} of {len(wi.liquidated_actual)} liquidations "
                     "were bogus (not liquidated in the corrected counterfactual)")
        restored = sum(1 for acct in wi.liquidated_actual
                       if any(seq.engine.position(acct, m)[0] != 0
                              for m in seq.engine.markets()))
        payout = recovery.issue_refunds(seq, result.branch, reason=reason, operator=OPERATOR,
                                        plan=rplan)
        if payout.header is not None:
            tl.add(payout.header.height, f"{len(payout.paid)} refunds issued from LIQ_VAULT, "
                                         f"total {usd(payout.total_qq)}")
        out = recovery.set_mode(seq, "ok", band_ppm=0, reason="recovery complete",
                                operator=OPERATOR)
        tl.add(out.header.height, "mode back to OK")
        checks = recovery.verify_recovery(store, result.branch)
        tl.add(store.head.height, f"verify: chain {'ok' if checks['chain'] else 'FAILED'}, "
                                  f"branch {'ok' if checks['branch'] else 'FAILED'}, replayed "
                                  f"state {'matches' if checks['state'] else 'DIFFERS'}")
        summary.update({
            "rolled_back": True,
            "branch": result.branch,
            "events_archived": plan.rollback.events_total,
            "flows_carried_forward": len(plan.rollback.flows),
            "prices_carried_forward": len(plan.oracles),
            "corrections": len(rplan.cf.corrections),
            "bogus_liquidations": len(bogus),
            "positions_restored": restored,
            "assess": {
                "rollback_refund_accounts": len(ref_a.lines),
                "rollback_refund_total_qq": ref_a.total_harm_qq,
                "compensation_accounts": len(comp_b.lines),
                "compensation_total_qq": comp_b.total_harm_qq,
                "compensation_by_cause_qq": comp_b.by_cause(),
                "refund_by_cause_qq": ref_a.by_cause(),
            },
            "refunded_accounts": len(payout.paid),
            "refunded_total": payout.total_qq,
            "refund_by_cause_qq": rplan.by_cause(),
            "vault_start": vault_start,
            # LIQ_VAULT's account value right before and right after the refund block:
            # the drop is the refund total, to the quantum.
            "vault_before": payout.vault_before_qq,
            "vault_after": payout.vault_after_qq,
            "refunds_pro_rata": rplan.pro_rata,
            # The restored state's own hash (computed from the restored entities,
            # checked against the snapshot and the header), then the recovery block's.
            "state_hash_after_rollback": result.snapshot_state_hash.hex(),
            "state_hash_after_recovery": result.state_hash_after.hex(),
            "verified": checks["verified"],
        })
        summary["timeline"] = tl.lines
        return summary
