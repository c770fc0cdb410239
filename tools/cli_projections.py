"""`ledgerctl rebuild` and `ledgerctl audit ...`: thin wrappers over `projections`.

Every command takes `--data` and `--json` (one JSON document; amounts are
integers in fixed-point units), heights where they make sense and `--branch B`
to ask an archived branch. Audit commands first fold new blocks into the read
models (with a progress bar on stderr for people); `--no-catch-up` answers as
of the read models' checkpoint instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.errors import CommandInvalid
from projections.audit import EXPORTS, FORMATS, Auditor
from projections.checkpoints import get_checkpoint
from projections.readmodels import ReadModels
from projections.runner import BATCH_EVENTS
from tools import output
from tools.common import BranchOpt, DataOpt, FromOpt, JsonOpt, ToOpt, check_height, data_dir
from tools.common import open_store as _open_store

audit_app = typer.Typer(help="Audit queries: statements, fills, funding, liquidations, "
                             "events, state at any height (read-only).",
                        no_args_is_help=True)

AccountOpt = Annotated[str | None, typer.Option("--account", help="Account id.")]
MarketOpt = Annotated[str | None, typer.Option("--market", help="Market id.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most this many rows.")]
AtOpt = Annotated[int | None, typer.Option("--at-height", help="Height to look at "
                                                               "(default: the head).")]
CatchOpt = Annotated[bool, typer.Option("--catch-up/--no-catch-up",
                                        help="Fold new blocks into the read models first.")]


def _auditor(data: Path | None, catch_up: bool, json_out: bool) -> Auditor:
    _open_store(data).close()  # the error that says what to do if there is no ledger
    au = Auditor.open(data_dir(data), catch_up=catch_up, progress=not json_out)
    if au.rm.mode == "readonly" and au.lag:
        output.err_console.print(
            f"note: read-only directory; the read models answer as of height "
            f"{au.as_of.height}, {au.lag} block(s) behind the head {au.store.head.height}",
            highlight=False, soft_wrap=True)
    return au


def _heights(**named: int | None) -> None:
    for name, value in named.items():
        check_height(value, "--" + name.replace("_", "-"))


def _limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise CommandInvalid(f"--limit must be 0 or more, was {limit}")


def _usd(v: Any) -> str:
    return "" if v is None else output.usd(int(v))


# -- rebuild ------------------------------------------------------------------------------


def rebuild(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    from_: Annotated[str, typer.Option("--from", help="genesis|snapshot")] = "snapshot",
    to_height: ToOpt = None,
    batch_events: Annotated[int, typer.Option("--batch-events",
                                              help="Events per checkpointed commit.")]
    = BATCH_EVENTS,
    parallel: Annotated[str, typer.Option(
        "--parallel", help="auto|on|off: fold the audit read models in a second process "
        "beside the exchange state (auto: when there are 200K+ events to fold).")] = "auto",
) -> None:
    """Rebuild every projection (exchange state, audit read models) with checkpoints.

    --from genesis starts over from block 0 (re-running it after an interruption
    resumes the unfinished job); --from snapshot starts the exchange state from
    the nearest snapshot. Reports the state hash reached and whether it matches
    the block header (exit code 3 if not).
    """
    from projections.jobs import rebuild as run_rebuild

    _heights(to_height=to_height)
    modes = {"auto": None, "on": True, "off": False}
    if parallel not in modes:
        raise CommandInvalid(f"--parallel must be auto, on or off, was {parallel!r}")
    with _open_store(data) as store, ReadModels.open(store.path) as rm:
        doc = run_rebuild(store, rm, from_=from_, to_height=to_height, progress=not json_out,
                          batch_events=batch_events, parallel=modes[parallel])
    if json_out:
        output.dump_json(doc)
    else:
        pairs = [(k, v) for k, v in doc.items() if k not in ("exchange", "audit")]
        output.kv("rebuild" if doc["match"] else "REBUILD MISMATCH", pairs)
    if not doc["match"]:
        raise typer.Exit(3)


# -- audit ----------------------------------------------------------------------------------


def account(
    acct: Annotated[str, typer.Argument(help="Account id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    at_height: AtOpt = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    limit: LimitOpt = None,
    catch_up: CatchOpt = True,
) -> None:
    """An account at a height (time travel) and its statement lines in a height range."""
    _heights(at_height=at_height, from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, catch_up, json_out) as au:
        doc = au.account(acct, at_height=at_height, from_height=from_height,
                         to_height=to_height, branch=branch, limit=limit)
    if json_out:
        output.dump_json(doc)
        return
    st = doc["statement"]
    output.kv(f"account {acct} at height {doc['height']}"
              + ("" if branch is None else f" (branch {branch})"), [
                  ("balance", _usd(doc["balance_qq"])),
                  ("statement balance", _usd(doc["statement_balance_qq"])),
                  ("account value", _usd(doc["account_value_qq"])),
                  ("initial margin", _usd(doc["imr_qq"])),
                  ("maintenance margin", _usd(doc["mmr_qq"])),
                  ("free", _usd(doc["free_qq"])),
                  ("open orders", len(doc["open_orders"]))])
    if doc["positions"]:
        output.table("positions", ["market", "size (bq)", "cost", "realized", "mark (st)"],
                     [(p["mkt"], p["size_bq"], _usd(p["cost_qq"]), _usd(p["realized_qq"]),
                       p["mark_st"]) for p in doc["positions"]],
                     right=["size (bq)", "cost", "realized", "mark (st)"])
    _print_statement(st)


def _print_statement(st: dict[str, Any]) -> None:
    output.table(f"statement {st['from_height']}..{st['to_height']} "
                 f"(read models as of {st['as_of_height']})",
                 ["height", "seq", "kind", "market", "delta", "balance"],
                 [(ln["height"], ln["seq"], ln["kind"], ln["mkt"] or "", _usd(ln["delta_qq"]),
                   _usd(ln["balance_qq"])) for ln in st["lines"]],
                 right=["height", "seq", "delta", "balance"])
    output.kv("totals", [("opening", _usd(st["opening_balance_qq"])),
                         ("change", _usd(st["total_delta_qq"])),
                         ("closing", _usd(st["closing_balance_qq"])),
                         ("lines", len(st["lines"]))])


def fills(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    account: AccountOpt = None,
    market: MarketOpt = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    limit: LimitOpt = None,
) -> None:
    """Fills with price, size, fees and realized P&L per side."""
    _heights(from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, False, json_out) as au:
        rows = au.fills(account=account, market=market, from_height=from_height,
                        to_height=to_height, branch=branch, limit=limit)
    if json_out:
        output.dump_json({"fills": rows})
        return
    output.table("fills", ["height", "seq", "market", "maker", "taker", "taker side", "qty (bq)",
                           "price (st)", "value", "maker fee", "taker fee"],
                 [(r["height"], r["seq"], r["mkt"], r["maker"], r["taker"], r["taker_side"],
                   r["qty_bq"], r["price_st"], _usd(r["value_qq"]), _usd(r["maker_fee_qq"]),
                   _usd(r["taker_fee_qq"])) for r in rows],
                 right=["height", "seq", "qty (bq)", "price (st)", "value", "maker fee",
                        "taker fee"])


def funding(
    market: Annotated[str, typer.Option("--market", help="Market id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    catch_up: CatchOpt = True,
) -> None:
    """A market's funding ticks (index, rate, premium) and the settlements they moved."""
    _heights(from_height=from_height, to_height=to_height)
    with _auditor(data, catch_up, json_out) as au:
        doc = au.funding(market, from_height=from_height, to_height=to_height, branch=branch)
    if json_out:
        output.dump_json(doc)
        return
    output.table(f"funding of {market}", ["height", "seq", "status", "prev index", "new index",
                                           "rate ppm", "dt", "settled (cum)"],
                 [(t["height"], t["seq"], t["status"], t["prev_index"],
                   t.get("new_index", t.get("published_index")), t.get("rate_ppm", ""),
                   t.get("dt", ""), _usd(t["settled_cum_qq"])) for t in doc["ticks"]],
                 right=["height", "seq", "prev index", "new index", "rate ppm", "dt",
                        "settled (cum)"])
    s = doc["settlements"]
    output.kv("settlements", [("count", s["count"]), ("total", _usd(s["total_qq"])),
                              ("paid", _usd(s["paid_qq"])), ("received", _usd(s["received_qq"])),
                              ("accounts", len(s["by_account"]))])


def liquidations(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    account: AccountOpt = None,
    market: MarketOpt = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    catch_up: CatchOpt = True,
) -> None:
    """The liquidation register: liquidations with fee, deficit, deltas and their ADL."""
    _heights(from_height=from_height, to_height=to_height)
    with _auditor(data, catch_up, json_out) as au:
        recs = au.liquidations(account=account, market=market, from_height=from_height,
                               to_height=to_height, branch=branch)
    if json_out:
        output.dump_json({"liquidations": recs})
        return
    output.table("liquidations", ["height", "seq", "account", "method", "AV", "MMR", "fee",
                                  "deficit", "delta", "ADL"],
                 [(r["height"], r["seq"], r["acct"], r["method"] or "", _usd(r.get("av_qq")),
                   _usd(r.get("mmr_qq")), _usd(r.get("fee_qq")), _usd(r.get("deficit_qq")),
                   _usd(r.get("acct_delta_qq")), len(r["deleveraged"])) for r in recs],
                 right=["height", "seq", "AV", "MMR", "fee", "deficit", "delta", "ADL"])


def events(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    account: AccountOpt = None,
    market: MarketOpt = None,
    type_name: Annotated[str | None, typer.Option("--type", help="Event type name.")] = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    limit: LimitOpt = None,
) -> None:
    """Events filtered by account, market and type (index-driven)."""
    _heights(from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, False, json_out) as au:
        rows = au.events(account=account, market=market, type_name=type_name,
                         from_height=from_height, to_height=to_height, branch=branch,
                         limit=limit)
    if json_out:
        output.dump_json({"events": rows})
        return
    output.table("events", ["seq", "height", "kind", "type", "payload"],
                 [(r["seq"], r["height"], r["kind"], r["type"], _brief(r["payload"]))
                  for r in rows], right=["seq", "height"])


def _brief(payload: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in payload.items())
    return text if len(text) < 100 else text[:97] + "..."


def state(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    at_height: AtOpt = None,
    branch: BranchOpt = None,
    catch_up: CatchOpt = True,
) -> None:
    """The exchange at a height: per market OI, index, mark, mode; vault, fees, totals."""
    _heights(at_height=at_height)
    with _auditor(data, catch_up, json_out) as au:
        doc = au.state(at_height=at_height, branch=branch)
    if json_out:
        output.dump_json(doc)
        return
    output.table(f"markets at height {doc['height']}",
                 ["market", "open interest (bq)", "oracle (st)", "mark (st)", "index", "mode",
                  "effective"],
                 [(m["mkt"], m["open_interest_bq"], m["oracle_st"], m["mark_st"],
                   m["funding_index"], m["mode"], m["effective_mode"]) for m in doc["markets"]],
                 right=["open interest (bq)", "oracle (st)", "mark (st)", "index"])
    t = doc["totals"]
    output.kv("exchange", [("mode", doc["mode"]), ("guards", doc["guards_enabled"]),
                           ("vault", _usd(doc["vault_balance_qq"])),
                           ("fees", _usd(doc["fees_balance_qq"])),
                           ("balances", _usd(t["balances_qq"])),
                           ("external in", _usd(t["ext_in_qq"])),
                           ("external out", _usd(t["ext_out_qq"])),
                           ("bad debt", _usd(t["bad_debt_qq"])),
                           ("accounts", t["accounts"]), ("open orders", t["open_orders"]),
                           ("state hash", doc["state_hash"][:16])])


def export(
    what: Annotated[str, typer.Argument(help=" | ".join(EXPORTS))],
    fmt: Annotated[str, typer.Option("--format", help=" | ".join(FORMATS))] = "jsonl",
    output_path: Annotated[Path | None, typer.Option("--output", "-o",
                                                     help="File (default: stdout).")] = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    account: AccountOpt = None,
    market: MarketOpt = None,
    type_name: Annotated[str | None, typer.Option("--type", help="Event type name.")] = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    catch_up: CatchOpt = True,
) -> None:
    """Export rows for analysts' tools as JSON Lines or CSV."""
    _heights(from_height=from_height, to_height=to_height)
    with _auditor(data, catch_up, True) as au:
        kw: dict[str, Any] = dict(account=account, market=market, type_name=type_name,
                                  from_height=from_height, to_height=to_height, branch=branch)
        if output_path is None:
            n = au.export(what, fmt, sys.stdout, **kw)
        else:
            with output_path.open("w", newline="") as fh:
                n = au.export(what, fmt, fh, **kw)
    if output_path is not None:
        doc = {"what": what, "format": fmt, "rows": n, "output": str(output_path)}
        if json_out:
            output.dump_json(doc)
        else:
            output.kv("exported", list(doc.items()))


def status(data: DataOpt = None, json_out: JsonOpt = False) -> None:
    """Where each projection stands against the head (no catch-up)."""
    with _open_store(data) as store, ReadModels.open_for_reading(store.path) as rm:
        head = store.head
        rows = []
        for name in ("exchange", "audit"):
            ck = get_checkpoint(rm, name)
            rows.append({"projection": name, "height": ck.height, "seq": ck.seq,
                         "lag_blocks": head.height - ck.height, "events": ck.events,
                         "hash": ck.hash.hex()})
    doc = {"head_height": head.height, "readmodels": str(data_dir(data) / "readmodels"),
           "projections": rows}
    if json_out:
        output.dump_json(doc)
        return
    output.table(f"projections (head {head.height})", ["projection", "height", "lag", "events"],
                 [(r["projection"], r["height"], r["lag_blocks"], r["events"]) for r in rows],
                 right=["height", "lag", "events"])


def register(app: typer.Typer) -> None:
    """Add `rebuild` and the `audit` group to the ledgerctl app."""
    app.command("rebuild")(rebuild)
    audit_app.command("account")(account)
    audit_app.command("fills")(fills)
    audit_app.command("funding")(funding)
    audit_app.command("liquidations")(liquidations)
    audit_app.command("events")(events)
    audit_app.command("state")(state)
    audit_app.command("export")(export)
    audit_app.command("status")(status)
    app.add_typer(audit_app, name="audit")
