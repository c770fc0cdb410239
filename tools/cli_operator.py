"""`ledgerctl rollback | assess | refunds plan|issue | compensate plan|issue | mode set |
audit whatif`: the recovery service (projections.recovery) on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.core.counterfactual import KEEP, SKIP, Override
from ledger.errors import CommandInvalid
from ledger.events.enums import FundingResumeAction
from ledger.rollback import RECOVERY_BAND_PPM
from ledger.sequencer import Sequencer
from projections import recovery
from projections.assess import assess as assess_incident
from projections.compensation import plan_compensation
from projections.counterfactual import parse_override
from projections.refunds import plan_refunds
from projections.remedy import RULE, RemedyPlan
from projections.units import Fmt
from projections.whatif import whatif
from tools import output
from tools.common import (
    DataOpt,
    JsonOpt,
    KeyOpt,
    RawOpt,
    StoreOpt,
    data_dir,
    open_reader,
    open_store,
)

mode_app = typer.Typer(help="Exchange modes (OK, POST_ONLY, CANCEL_ONLY, HALTED).",
                       no_args_is_help=True)
refunds_app = typer.Typer(help="Refunds of what a rollback could not restore (SPEC 13).",
                          no_args_is_help=True)
compensate_app = typer.Typer(help="Compensation for an incident left on the chain (SPEC 13).",
                             no_args_is_help=True)

ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (journaled).")]
OperatorOpt = Annotated[str | None, typer.Option("--operator", help="Who (journaled).")]
CorrectOpt = Annotated[
    list[str] | None,
    typer.Option("--correct", metavar="SEQ=VALUE",
                 help="Correct one input of the counterfactual: VALUE is the funding index "
                      "or oracle price to use, 'skip' or 'keep'. Repeatable.")]
CorrectionsOpt = Annotated[
    Path | None,
    typer.Option("--corrections", help="JSON file: [{\"seq\": N, \"used\": VALUE}, ...].")]
FundingResumeOpt = Annotated[
    str, typer.Option("--funding-resume",
                      help="Restart funding in the recovery block: skip | accrue | none.")]
ExecuteOpt = Annotated[bool, typer.Option("--execute", help="Carry it out (else: plan).")]


def _overrides(correct: list[str] | None, path: Path | None) -> dict[int, Override]:
    """Operator corrections from --correct and --corrections, by seq (later wins)."""
    out: dict[int, Override] = {}
    if path is not None:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CommandInvalid(f"--corrections {path}: cannot read it as JSON ({exc})") from None
        if not isinstance(doc, list):
            raise CommandInvalid(f"--corrections {path}: expected a JSON array of "
                                 '{"seq": N, "used": VALUE}')
        for k, item in enumerate(doc, 1):
            used = item.get("used") if isinstance(item, dict) else None
            seq = item.get("seq") if isinstance(item, dict) else None
            if type(seq) is not int or not (type(used) is int or used in (KEEP, SKIP)):
                raise CommandInvalid(f"--corrections {path}: item {k}: expected "
                                     '{"seq": integer, "used": integer | "keep" | "skip"}, '
                                     f"was {json.dumps(item)[:80]}")
            out[seq] = used
    for text in correct or []:
        seq, value = parse_override(text)
        out[seq] = value
    return out


def _resume(value: str) -> FundingResumeAction | None:
    if value.lower() not in recovery.FUNDING_RESUME:
        raise CommandInvalid(f"--funding-resume must be skip, accrue or none, was {value!r}")
    return recovery.FUNDING_RESUME[value.lower()]


def rollback(
    to_height: Annotated[int, typer.Option("--to-height", help="A snapshot height.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    execute: ExecuteOpt = False,
    reason: ReasonOpt = None,
    operator: OperatorOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Allow beyond max_rollback_depth.")]
    = False,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    funding_resume: FundingResumeOpt = "skip",
    key: KeyOpt = None,
) -> None:
    """Roll the chain back to a snapshot height: prints the plan; --execute carries it out."""
    overrides = _overrides(correct, corrections)
    resume = _resume(funding_resume)
    if execute and (not reason or not operator):
        raise CommandInvalid("--execute needs --reason TEXT and --operator NAME "
                             "(both go into the journal)")
    path = data_dir(data)
    result = None
    if execute:
        with Sequencer.open(path) as seq:
            plan = recovery.plan_rollback(seq.store, to_height, force=force,
                                          overrides=overrides, funding_resume=resume)
            result = recovery.execute_recovery(seq, plan, reason=reason, operator=operator,
                                               key=seq.operator_key(key))
    else:
        with open_store(data) as store:
            plan = recovery.plan_rollback(store, to_height, force=force, overrides=overrides,
                                          funding_resume=resume)
    doc: dict[str, Any] = {"executed": result is not None, "plan": plan.to_json()}
    if result is not None:
        doc["result"] = {"branch": result.branch,
                         "recovery_height": result.recovery.height,
                         "snapshot_state_hash": result.snapshot_state_hash.hex(),
                         "state_hash_after": result.state_hash_after.hex(),
                         "orders_cancelled": result.cancelled_orders,
                         "mode": "POST_ONLY", "band_ppm": RECOVERY_BAND_PPM}
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
        ("prices carried forward", ", ".join(
            f"{u['mkt']} {u['oracle_st']:,} st" for u in p["oracles_carried_forward"])),
        ("funding restart", p["funding_resume"] or "none"),
        ("corrected inputs (counterfactual)", len(p["corrections"])),
        ("archived branch id", p["branch_id"])])
    output.table("events to archive, by type", ["type", "count"],
                 sorted(p["events_by_type"].items()), right=["count"])
    if result is not None:
        output.kv("recovery", list(doc["result"].items()))
    else:
        output.console.print("run again with --execute --reason TEXT --operator NAME "
                             "to carry it out")


def show_plan(plan: RemedyPlan, title: str, *, raw: bool = False, limit: int = 60) -> None:
    """A remedy plan for people: lines by cause, then totals and notes."""
    f = Fmt({}, raw=raw)
    usd = f.usd
    doc = plan.to_json()
    causes = [k for k, v in doc["harm_by_cause"].items() if v] or ["trading"]
    rows = sorted(plan.lines, key=lambda ln: (-ln.harm_qq, ln.acct))[:limit]
    output.table(f"{title}: {len(plan.lines)} accounts owed ({RULE})",
                 ["account", f.head("harm", "qq"), *causes, "pay", "paid", "bogus liq"],
                 [(ln.acct, usd(ln.harm_qq),
                   *(usd(ln.harm_by_cause.get(k, 0)) for k in causes),
                   usd(ln.amount_qq), usd(ln.already_paid_qq),
                   "yes" if ln.bogus_liquidation else "") for ln in rows],
                 right=[f.head("harm", "qq"), *causes, "pay", "paid"])
    if len(plan.lines) > limit:
        output.console.print(f"... {len(plan.lines) - limit} more lines in --json")
    if plan.cf.corrections:
        output.table("corrected inputs", ["seq", "type", "market", "published", "used", "why"],
                     [(x.seq, x.type, x.mkt, x.published, "left out" if x.used is None
                       else x.used, x.why) for x in plan.cf.corrections[:20]],
                     right=["seq", "published", "used"])
    output.kv("totals", [
        ("compared with", "the chain right after the recovery block" if plan.other == "R"
         else "the chain at its head"),
        ("marks at height", plan.marks_height),
        ("accounts owed", len(plan.lines)),
        ("accounts better off (pay nothing, owe nothing)", plan.better_off),
        ("total harm", usd(plan.total_harm_qq)),
        *((f"  by {k}", usd(v)) for k, v in doc["harm_by_cause"].items() if v),
        ("to pay", usd(plan.total_qq)),
        ("already paid", usd(plan.already_paid_qq)),
        ("outstanding", usd(plan.outstanding_qq)),
        ("LIQ_VAULT can pay", usd(plan.vault_available_qq)),
        ("pro rata", "YES: the vault is short" if plan.pro_rata else "no"),
        ("flows flagged (applied as facts)", len(plan.cf.flagged_flows))]
        + [("note", n) for n in plan.notes])


def refunds_plan(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """Every account the rollback of a branch left worse off, by how much and why."""
    with open_reader(store, data) as chain:
        plan = plan_refunds(chain, branch, overrides=_overrides(correct, corrections))
    if json_out:
        output.dump_json(plan.to_json())
    else:
        show_plan(plan, f"refund plan for branch {branch}", raw=raw)


def _show_payout(payout: recovery.Payout, json_out: bool) -> None:
    doc = payout.to_json()
    if json_out:
        output.dump_json(doc)
        return
    title = (f"{doc['kind']} issued" if doc["issued"]
             else f"nothing outstanding under {doc['ref']}: nothing issued")
    output.kv(title, [(k, output.usd(v) if k.endswith("_qq") else v)
                      for k, v in doc.items() if k != "payouts"])


def refunds_issue(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    operator: OperatorOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    execute: ExecuteOpt = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")]
    = "refund of rollback damage",
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    key: KeyOpt = None,
) -> None:
    """Pay the refund plan from LIQ_VAULT (idempotent: a second run pays nothing)."""
    if not execute:
        refunds_plan(branch, data, json_out, correct, corrections, False)
        if not json_out:
            output.console.print("dry run: add --execute --operator NAME to pay these refunds")
        return
    with Sequencer.open(data_dir(data)) as seq:
        payout = recovery.issue_refunds(seq, branch, reason=reason, operator=operator,
                                        overrides=_overrides(correct, corrections),
                                        key=seq.operator_key(key))
    _show_payout(payout, json_out)


SnapshotOpt = Annotated[int | None, typer.Option(
    "--snapshot", help="Snapshot to start from (default: the newest below --from-height).")]
FromHeightOpt = Annotated[int, typer.Option("--from-height",
                                            help="The first suspect height.")]


def compensate_plan(
    from_height: FromHeightOpt,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    snapshot: SnapshotOpt = None,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """Every account an incident left worse off on the chain as it stands, by cause."""
    with open_reader(store, data) as chain:
        plan = plan_compensation(chain, from_height, snapshot=snapshot,
                                 overrides=_overrides(correct, corrections))
    if json_out:
        output.dump_json(plan.to_json())
    else:
        show_plan(plan, f"compensation plan from height {from_height}", raw=raw)


def compensate_issue(
    from_height: FromHeightOpt,
    operator: OperatorOpt = None,
    reason: ReasonOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    execute: ExecuteOpt = False,
    snapshot: SnapshotOpt = None,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    key: KeyOpt = None,
) -> None:
    """Pay the compensation plan from LIQ_VAULT (idempotent by its ref)."""
    if not execute:
        compensate_plan(from_height, data, json_out, snapshot, correct, corrections, False)
        if not json_out:
            output.console.print("dry run: add --execute --operator NAME --reason TEXT to pay")
        return
    with Sequencer.open(data_dir(data)) as seq:
        payout = recovery.issue_compensation(seq, from_height, reason=reason,
                                             operator=operator, snapshot=snapshot,
                                             overrides=_overrides(correct, corrections),
                                             key=seq.operator_key(key))
    _show_payout(payout, json_out)


def assess(
    from_height: FromHeightOpt,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    snapshot: SnapshotOpt = None,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    funding_resume: FundingResumeOpt = "skip",
    store: StoreOpt = None,
) -> None:
    """Rollback or compensate? Both remedies side by side; changes nothing."""
    with open_reader(store, data) as chain:
        report = assess_incident(chain, from_height, snapshot=snapshot,
                                 overrides=_overrides(correct, corrections),
                                 funding_resume=_resume(funding_resume))
    doc = report.to_json()
    if json_out:
        output.dump_json(doc)
        return
    rb, cp = doc["rollback"], doc["compensation"]
    causes = sorted({k for side in (rb, cp) for k, v in side["harm_by_cause"].items() if v})
    rows: list[tuple[str, Any, Any]] = [
        ("compared with", "R: after the recovery block", "B: the chain at its head"),
        ("marks at height", rb["marks"]["height"], cp["marks"]["height"]),
        ("accounts owed", rb["accounts_owed"], cp["accounts_owed"]),
        ("accounts better off", rb["accounts_better_off"], cp["accounts_better_off"]),
        ("bogus liquidations among them", rb["bogus_liquidations"], cp["bogus_liquidations"]),
        ("total owed", output.usd(rb["total_harm_qq"]), output.usd(cp["total_harm_qq"])),
        *((f"  by {k}", output.usd(rb["harm_by_cause"].get(k, 0)),
           output.usd(cp["harm_by_cause"].get(k, 0))) for k in causes),
        ("LIQ_VAULT can pay", output.usd(rb["vault_available_qq"]),
         output.usd(cp["vault_available_qq"])),
        ("pro rata", "YES" if rb["pro_rata"] else "no", "YES" if cp["pro_rata"] else "no"),
        ("blocks undone", rb["blocks_undone"], 0),
        ("fills undone", rb["fills_undone"], 0),
        ("liquidations undone", rb["liquidations_undone"], 0),
        ("external flows carried forward", rb["flows_carried_forward"], 0),
    ]
    output.table(f"assess: incident from height {doc['from_height']}, snapshot "
                 f"{doc['snapshot_height']}, head {doc['head_height']} "
                 f"({len(doc['corrections'])} inputs corrected)",
                 ["", f"(a) roll back to {doc['snapshot_height']} and refund",
                  "(b) leave the chain and compensate"], rows,
                 right=[f"(a) roll back to {doc['snapshot_height']} and refund",
                        "(b) leave the chain and compensate"])
    for note in {*rb["notes"], *cp["notes"]}:
        output.console.print(f"note: {note}")


def mode_set(
    mode: Annotated[str, typer.Option("--mode", help="ok|post_only|cancel_only|halted")],
    reason: ReasonOpt = None,
    operator: OperatorOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    market: Annotated[str | None, typer.Option("--market", help="One market (else all).")]
    = None,
    band_ppm: Annotated[int, typer.Option("--band-ppm", help="Recovery band.")]
    = RECOVERY_BAND_PPM,
    key: KeyOpt = None,
) -> None:
    """Set the global (or one market's) mode; recorded in the log and the journal."""
    with Sequencer.open(data_dir(data)) as seq:
        out = recovery.set_mode(seq, mode, market=market, band_ppm=band_ppm, reason=reason,
                                operator=operator, key=seq.operator_key(key))
    doc = {"mode": mode.upper(), "scope": market or "ALL", "band_ppm": band_ppm,
           "height": out.header.height,
           "orders_cancelled": sum(1 for e in out.envelopes
                                   if type(e.event).__name__ == "OrderCancelled")}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("mode set", list(doc.items()))


def audit_whatif(
    branch: Annotated[int, typer.Option("--branch", help="Archived branch id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    correct: CorrectOpt = None,
    corrections: CorrectionsOpt = None,
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """The branch against its corrected counterfactual, account by account (bogus liquidations)."""
    with open_reader(store, data) as chain:
        report = whatif(chain, branch, overrides=_overrides(correct, corrections))
    doc = report.to_json()
    if json_out:
        output.dump_json(doc)
        return
    output.kv(f"what-if for branch {branch}",
              [(k, len(v) if isinstance(v, list) else v) for k, v in doc.items()
               if k != "accounts"])
    rows = [a for a in report.accounts if a.liquidated_actual or a.liquidated_counterfactual
            or a.equity_actual_qq != a.equity_counterfactual_qq]
    f = Fmt({}, raw=raw)
    money = [f.head(n, "qq") for n in ("equity actual", "equity should", "funding actual",
                                       "funding should")]
    output.table("accounts that differ (equity at the branch's final marks)",
                 ["account", "liq (actual)", "liq (should)", "bogus", *money],
                 [(a.acct, "yes" if a.liquidated_actual else "",
                   "yes" if a.liquidated_counterfactual else "",
                   "BOGUS" if a.bogus_liquidation else "", f.usd(a.equity_actual_qq),
                   f.usd(a.equity_counterfactual_qq), f.usd(a.funding_actual_qq),
                   f.usd(a.funding_counterfactual_qq)) for a in rows[:60]],
                 right=money)


def register(app: typer.Typer) -> None:
    app.command()(rollback)
    app.command()(assess)
    mode_app.command("set")(mode_set)
    app.add_typer(mode_app, name="mode")
    refunds_app.command("plan")(refunds_plan)
    refunds_app.command("issue")(refunds_issue)
    app.add_typer(refunds_app, name="refunds")
    compensate_app.command("plan")(compensate_plan)
    compensate_app.command("issue")(compensate_issue)
    app.add_typer(compensate_app, name="compensate")
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
