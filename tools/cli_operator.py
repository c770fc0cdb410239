"""`ledgerctl rollback | mode set | refunds plan|issue | audit whatif`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from projections.refunds import RULE, plan_refunds
from projections.whatif import whatif
from tools import operator as ops
from tools import output
from tools.common import DataOpt, JsonOpt, data_dir, open_store

mode_app = typer.Typer(help="Exchange modes (OK, POST_ONLY, CANCEL_ONLY, HALTED).",
                       no_args_is_help=True)
refunds_app = typer.Typer(help="Refunds for the damage of a rolled-back branch.",
                          no_args_is_help=True)

ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (journaled).")]
OperatorOpt = Annotated[str, typer.Option("--operator", help="Who (journaled).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Operator key file that signs (else $PERPLEDGER_OPERATOR_KEY, else the one "
    "init created).")]


def rollback(
    to_height: Annotated[int, typer.Option("--to-height", help="A snapshot height.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    execute: Annotated[bool, typer.Option("--execute", help="Carry it out (else: plan).")]
    = False,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    operator: Annotated[str | None, typer.Option("--operator")] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow beyond --max-depth.")] = False,
    key: KeyOpt = None,
) -> None:
    """Roll the chain back to a snapshot height: prints the plan; --execute carries it out."""
    plan, result = ops.rollback(data_dir(data), to_height, execute=execute, reason=reason,
                                operator=operator, force=force, key=key)
    doc: dict[str, Any] = {"executed": result is not None, "plan": plan.to_json()}
    if result is not None:
        doc["result"] = {"branch": result.branch,
                         "recovery_height": result.recovery.height,
                         "snapshot_state_hash": result.snapshot_state_hash.hex(),
                         "state_hash_after": result.state_hash_after.hex(),
                         "orders_cancelled": result.cancelled_orders,
                         "mode": "POST_ONLY", "band_ppm": 500}
    if json_out:
        output.dump_json(doc)
        return
    p = doc["plan"]
    output.kv("rollback plan" + (" (EXECUTED)" if result else " (dry run: nothing changed)"), [
        ("target height", p["target_height"]), ("head height", p["head_height"]),
        ("blocks to archive", p["depth"]), ("snapshot state hash", p["snapshot_state_hash"]),
        ("events to archive", p["events_total"]), ("accounts touched",
                                                   len(p["accounts_touched"])),
        ("fills undone", p["fills_undone"]),
        ("liquidations undone", len(p["liquidations_undone"])),
        ("external flows carried forward", len(p["flows_carried_forward"])),
        ("archived branch id", p["branch_id"])])
    output.table("events to archive, by type", ["type", "count"],
                 sorted(p["events_by_type"].items()), right=["count"])
    if result is not None:
        output.kv("recovery", list(doc["result"].items()))
    else:
        output.console.print("run again with --execute --reason TEXT --operator NAME "
                             "to carry it out")


def mode_set(
    mode: Annotated[str, typer.Option("--mode", help="ok|post_only|cancel_only|halted")],
    reason: ReasonOpt,
    operator: OperatorOpt,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    market: Annotated[str | None, typer.Option("--market", help="One market (else all).")]
    = None,
    band_ppm: Annotated[int, typer.Option("--band-ppm", help="Recovery band.")] = 500,
    key: KeyOpt = None,
) -> None:
    """Set the global (or one market's) mode; recorded in the log and the journal."""
    out = ops.set_mode(data_dir(data), mode, market=market, band_ppm=band_ppm, reason=reason,
                       operator=operator, key=key)
    doc = {"mode": mode.upper(), "scope": market or "ALL", "band_ppm": band_ppm,
           "height": out.header.height,
           "orders_cancelled": sum(1 for e in out.envelopes
                                   if type(e.event).__name__ == "OrderCancelled")}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("mode set", list(doc.items()))


def refunds_plan(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List every account the branch harmed, by how much, and the total against the vault."""
    with open_store(data) as store:
        plan = plan_refunds(store, branch)
    doc = plan.to_json()
    if json_out:
        output.dump_json(doc)
        return
    output.table(f"refund plan for branch {branch} (harm = {RULE})",
                 ["account", "harm", "refund", "cf equity", "equity after", "bogus liq",
                  "already paid"],
                 [(ln.acct, output.usd(ln.harm_qq), output.usd(ln.amount_qq),
                   output.usd(ln.counterfactual_equity_qq),
                   output.usd(ln.equity_after_rollback_qq),
                   "yes" if ln.bogus_liquidation else "", output.usd(ln.already_refunded_qq))
                  for ln in plan.lines],
                 right=["harm", "refund", "cf equity", "equity after", "already paid"])
    output.kv("totals", [("accounts", len(plan.lines)), ("total refund", output.usd(plan.total_qq)),
                         ("LIQ_VAULT balance", output.usd(plan.vault_balance_qq)),
                         ("pro rata", "YES: the vault is short" if plan.pro_rata else "no")]
              + [("note", n) for n in plan.notes])


def refunds_issue(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    operator: OperatorOpt,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    execute: Annotated[bool, typer.Option("--execute", help="Append the refunds.")] = False,
    reason: Annotated[str, typer.Option("--reason")] = "refund of rollback damage",
    key: KeyOpt = None,
) -> None:
    """Append RefundIssued events from LIQ_VAULT (idempotent: a second run pays nothing)."""
    if not execute:
        refunds_plan(branch, data, json_out)
        if not json_out:
            output.console.print("dry run: add --execute to append these refunds")
        return
    plan, paid, height = ops.issue_refunds(data_dir(data), branch, operator=operator,
                                           reason=reason, key=key)
    doc = {"branch": branch, "issued": len(paid), "total_qq": sum(p["amount_qq"] for p in paid),
           "height": height, "pro_rata": plan.pro_rata, "refunds": paid}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("refunds issued" if paid else "nothing outstanding: no refunds issued",
                  [(k, v) for k, v in doc.items() if k != "refunds"])


def audit_whatif(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    guards: Annotated[str, typer.Option("--guards", help="on|off in the counterfactual.")]
    = "on",
    drop_seq: Annotated[list[int] | None, typer.Option("--drop-seq", help="Inputs to drop.")]
    = None,
) -> None:
    """Re-execute a branch with guards on (or inputs dropped) and compare per account."""
    from ledger.errors import CommandInvalid

    if guards.lower() not in ("on", "off"):
        raise CommandInvalid(f"--guards must be on or off, was {guards!r}")
    with open_store(data) as store:
        report = whatif(store, branch, guards_on=guards.lower() == "on",
                        drop_seqs=drop_seq or [])
    doc = report.to_json()
    if json_out:
        output.dump_json(doc)
        return
    output.kv(f"what-if for branch {branch}", [(k, v) for k, v in doc.items()
                                               if k != "accounts"])
    rows = [a for a in report.accounts if a.liquidated_actual or a.liquidated_counterfactual
            or a.equity_actual_qq != a.equity_counterfactual_qq]
    output.table("accounts that differ", ["account", "liq (actual)", "liq (should)", "bogus",
                                          "equity actual", "equity should", "funding actual",
                                          "funding should"],
                 [(a.acct, "yes" if a.liquidated_actual else "",
                   "yes" if a.liquidated_counterfactual else "",
                   "BOGUS" if a.bogus_liquidation else "", output.usd(a.equity_actual_qq),
                   output.usd(a.equity_counterfactual_qq), output.usd(a.funding_actual_qq),
                   output.usd(a.funding_counterfactual_qq)) for a in rows[:60]],
                 right=["equity actual", "equity should", "funding actual", "funding should"])


def register(app: typer.Typer) -> None:
    app.command()(rollback)
    mode_app.command("set")(mode_set)
    app.add_typer(mode_app, name="mode")
    refunds_app.command("plan")(refunds_plan)
    refunds_app.command("issue")(refunds_issue)
    app.add_typer(refunds_app, name="refunds")
    audit = _find_group(app, "audit")
    if audit is None:
        audit = typer.Typer(help="Audit queries.", no_args_is_help=True)
        app.add_typer(audit, name="audit")
    audit.command("whatif")(audit_whatif)


def _find_group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None
