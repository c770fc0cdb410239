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
from typing import IO, Annotated, Any, cast

import typer

from ledger.errors import CommandInvalid
from projections.audit import EXPORTS, FORMATS, Auditor
from projections.checkpoints import get_checkpoint
from projections.readmodels import ReadModels
from projections.runner import BATCH_EVENTS
from projections.units import Fmt, units_from_events
from tools import output
from tools.common import (
    BranchOpt,
    DataOpt,
    FromOpt,
    JsonOpt,
    RawOpt,
    SchedulerOpt,
    StoreOpt,
    ToOpt,
    WorkerStoreOpt,
    check_height,
    data_dir,
    store_spec,
)
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


def _auditor(data: Path | None, catch_up: bool, json_out: bool,
             store: str | None = None) -> Auditor:
    """The Auditor over --store (a replica URL or a data directory), else over --data.

    On a read-only directory the read models answer as of their checkpoint; say so.
    """
    if store is None:
        _open_store(data).close()  # the error that says what to do if there is no ledger
    au = Auditor.open(store_spec(store, data), catch_up=catch_up, progress=not json_out)
    rm = au.models.readmodels
    if rm is not None and rm.mode == "readonly" and au.lag:
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


def _fmt(au: Auditor, raw: bool) -> Fmt:
    """Human units for this ledger's markets (raw quanta with --raw)."""
    return Fmt(units_from_events(au.events), raw=raw)


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
    scheduler: SchedulerOpt = None,
    worker_store: WorkerStoreOpt = None,
    workers: Annotated[int, typer.Option("--workers", help="Dask workers for "
                                         "--scheduler local.")] = 2,
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
                          batch_events=batch_events, parallel=modes[parallel],
                          scheduler=scheduler, worker_store=worker_store, workers=workers)
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
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """An account at a height (time travel) and its statement lines in a height range."""
    _heights(at_height=at_height, from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, catch_up, json_out, store) as au:
        doc = au.account(acct, at_height=at_height, from_height=from_height,
                         to_height=to_height, branch=branch, limit=limit)
        f = _fmt(au, raw)
    if json_out:
        output.dump_json(doc)
        return
    st = doc["statement"]
    output.kv(f"account {acct} at height {doc['height']}"
              + ("" if branch is None else f" (branch {branch})"), [
                  (f.head("balance", "qq"), f.usd(doc["balance_qq"])),
                  (f.head("statement balance", "qq"), f.usd(doc["statement_balance_qq"])),
                  (f.head("account value", "qq"), f.usd(doc["account_value_qq"])),
                  (f.head("initial margin", "qq"), f.usd(doc["imr_qq"])),
                  (f.head("maintenance margin", "qq"), f.usd(doc["mmr_qq"])),
                  (f.head("free", "qq"), f.usd(doc["free_qq"])),
                  ("open orders", len(doc["open_orders"]))])
    if doc["positions"]:
        cols = ["market", f.head("size", "bq"), f.head("cost", "qq"),
                f.head("realized", "qq"), f.head("mark", "st")]
        output.table("positions", cols,
                     [(p["mkt"], f.size(p["size_bq"], p["mkt"]), f.usd(p["cost_qq"]),
                       f.usd(p["realized_qq"]), f.price(p["mark_st"], p["mkt"]))
                      for p in doc["positions"]], right=cols[1:])
    _print_statement(st, f)


def _print_statement(st: dict[str, Any], f: Fmt) -> None:
    cols = ["height", "seq", "kind", "market", f.head("delta", "qq"), f.head("balance", "qq")]
    output.table(f"statement {st['from_height']}..{st['to_height']} "
                 f"(read models as of {st['as_of_height']})", cols,
                 [(ln["height"], ln["seq"], ln["kind"], ln["mkt"] or "", f.usd(ln["delta_qq"]),
                   f.usd(ln["balance_qq"])) for ln in st["lines"]],
                 right=[cols[0], cols[1], cols[4], cols[5]])
    output.kv("totals", [(f.head("opening", "qq"), f.usd(st["opening_balance_qq"])),
                         (f.head("change", "qq"), f.usd(st["total_delta_qq"])),
                         (f.head("closing", "qq"), f.usd(st["closing_balance_qq"])),
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
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """Fills with price, size, fees and realized P&L per side."""
    _heights(from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, False, json_out, store) as au:
        rows = au.fills(account=account, market=market, from_height=from_height,
                        to_height=to_height, branch=branch, limit=limit)
        f = _fmt(au, raw)
    if json_out:
        output.dump_json({"fills": rows})
        return
    nums = [f.head("qty", "bq"), f.head("price", "st"), f.head("value", "qq"),
            f.head("maker fee", "qq"), f.head("taker fee", "qq")]
    output.table("fills", ["height", "seq", "market", "maker", "taker", "taker side", *nums],
                 [(r["height"], r["seq"], r["mkt"], r["maker"], r["taker"], r["taker_side"],
                   f.size(r["qty_bq"], r["mkt"]), f.price(r["price_st"], r["mkt"]),
                   f.usd(r["value_qq"]), f.usd(r["maker_fee_qq"]), f.usd(r["taker_fee_qq"]))
                  for r in rows],
                 right=["height", "seq", *nums])


def funding(
    market: Annotated[str, typer.Option("--market", help="Market id.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    catch_up: CatchOpt = True,
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """A market's funding ticks (index, rate, premium) and the settlements they moved."""
    _heights(from_height=from_height, to_height=to_height)
    with _auditor(data, catch_up, json_out, store) as au:
        doc = au.funding(market, from_height=from_height, to_height=to_height, branch=branch)
        f = _fmt(au, raw)
    if json_out:
        output.dump_json(doc)
        return
    nums = [f.head("prev index", "qq/bq x 1e12"), f.head("new index", "qq/bq x 1e12"),
            f.head("rate", "ppm"), "dt (s)", f.head("settled (cum)", "qq")]
    output.table(f"funding of {market}", ["height", "seq", "status", *nums],
                 [(t["height"], t["seq"], t["status"], f.index(t["prev_index"], market),
                   f.index(t.get("new_index", t.get("published_index")), market),
                   f.ppm(t.get("rate_ppm")), t.get("dt", ""), f.usd(t["settled_cum_qq"]))
                  for t in doc["ticks"]],
                 right=["height", "seq", *nums])
    s = doc["settlements"]
    output.kv("settlements", [("count", s["count"]), (f.head("total", "qq"), f.usd(s["total_qq"])),
                              (f.head("paid", "qq"), f.usd(s["paid_qq"])),
                              (f.head("received", "qq"), f.usd(s["received_qq"])),
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
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """The liquidation register: liquidations with fee, deficit, deltas and their ADL."""
    _heights(from_height=from_height, to_height=to_height)
    with _auditor(data, catch_up, json_out, store) as au:
        recs = au.liquidations(account=account, market=market, from_height=from_height,
                               to_height=to_height, branch=branch)
        f = _fmt(au, raw)
    if json_out:
        output.dump_json({"liquidations": recs})
        return
    money = [f.head(n, "qq") for n in ("AV", "MMR", "fee", "deficit", "delta")]
    output.table("liquidations", ["height", "seq", "account", "method", *money, "ADL"],
                 [(r["height"], r["seq"], r["acct"], r["method"] or "", f.usd(r.get("av_qq")),
                   f.usd(r.get("mmr_qq")), f.usd(r.get("fee_qq")), f.usd(r.get("deficit_qq")),
                   f.usd(r.get("acct_delta_qq")), len(r["deleveraged"])) for r in recs],
                 right=["height", "seq", *money, "ADL"])


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
    store: StoreOpt = None,
) -> None:
    """Events filtered by account, market and type (index-driven)."""
    _heights(from_height=from_height, to_height=to_height)
    _limit(limit)
    with _auditor(data, False, json_out, store) as au:
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
    raw: RawOpt = False,
    store: StoreOpt = None,
) -> None:
    """The exchange at a height: per market OI, index, mark, mode; vault, fees, totals."""
    _heights(at_height=at_height)
    with _auditor(data, catch_up, json_out, store) as au:
        doc = au.state(at_height=at_height, branch=branch)
        f = _fmt(au, raw)
    if json_out:
        output.dump_json(doc)
        return
    nums = [f.head("open interest", "bq"), f.head("oracle", "st"), f.head("mark", "st"),
            f.head("index", "qq/bq x 1e12")]
    output.table(f"markets at height {doc['height']}",
                 ["market", *nums, "mode", "effective"],
                 [(m["mkt"], f.size(m["open_interest_bq"], m["mkt"]),
                   f.price(m["oracle_st"], m["mkt"]), f.price(m["mark_st"], m["mkt"]),
                   f.index(m["funding_index"], m["mkt"]), m["mode"], m["effective_mode"])
                  for m in doc["markets"]],
                 right=nums)
    t = doc["totals"]
    output.kv("exchange", [("mode", doc["mode"]), ("guards", doc["guards_enabled"]),
                           (f.head("vault", "qq"), f.usd(doc["vault_balance_qq"])),
                           (f.head("fees", "qq"), f.usd(doc["fees_balance_qq"])),
                           (f.head("balances", "qq"), f.usd(t["balances_qq"])),
                           (f.head("external in", "qq"), f.usd(t["ext_in_qq"])),
                           (f.head("external out", "qq"), f.usd(t["ext_out_qq"])),
                           (f.head("bad debt", "qq"), f.usd(t["bad_debt_qq"])),
                           ("accounts", t["accounts"]), ("open orders", t["open_orders"]),
                           ("state hash", doc["state_hash"][:16])])


def export(
    what: Annotated[str, typer.Argument(help=" | ".join(EXPORTS))],
    fmt: Annotated[str, typer.Option("--format", help=" | ".join((*FORMATS, "parquet")))]
    = "jsonl",
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
    store: StoreOpt = None,
) -> None:
    """Export rows for analysts' tools as JSON Lines, CSV or Parquet (--output FILE).

    Parquet keeps integers exact (int64, or decimal128 for the 1e12-scaled
    funding columns), adds `branch` and `height` columns, and without --market
    exports the funding ticks of every market.
    """
    _heights(from_height=from_height, to_height=to_height)
    if fmt == "parquet" and output_path is None:
        raise CommandInvalid("--format parquet needs --output FILE (Parquet is binary)")
    with _auditor(data, catch_up, True, store) as au:
        kw: dict[str, Any] = dict(account=account, market=market, type_name=type_name,
                                  from_height=from_height, to_height=to_height, branch=branch)
        if fmt == "parquet":
            assert output_path is not None
            n = _export_parquet(au, what, output_path, kw, progress=not json_out)
        elif output_path is None:
            n = au.export(what, fmt, sys.stdout, **kw)
        else:
            with output_path.open("w", newline="") as fh, _RowsProgress(
                    fh, f"export {what}", enabled=not json_out) as counted:
                # export only calls write(): the counting wrapper stands in for the file
                n = au.export(what, fmt, cast(IO[str], counted), **kw)
    if output_path is not None:
        doc = {"what": what, "format": fmt, "rows": n, "output": str(output_path)}
        if json_out:
            output.dump_json(doc)
        else:
            output.kv("exported", list(doc.items()))


class _RowsProgress:
    """A text stream that counts the lines written through it on a rich spinner
    (an export's row count is unknown until it is done)."""

    def __init__(self, fh: Any, description: str, *, enabled: bool) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.fh = fh
        self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                            TextColumn("{task.completed:,} lines"), TimeElapsedColumn(),
                            console=output.err_console, disable=not enabled, transient=True)
        self.task = self.bar.add_task(description, total=None)

    def write(self, text: str) -> int:
        self.bar.advance(self.task, text.count("\n"))
        return int(self.fh.write(text))

    def __enter__(self) -> _RowsProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def _export_parquet(au: Auditor, what: str, path: Path, kw: dict[str, Any], *,
                    progress: bool) -> int:
    # pyarrow loads only for a Parquet export (it costs every other command 0.1-0.2 s).
    from projections.parquet import funding_rows, write_parquet

    if what == "funding" and kw["market"] is None:
        markets = sorted(units_from_events(au.events))
        rows = list(funding_rows(au.funding, markets, from_height=kw["from_height"],
                                 to_height=kw["to_height"], branch=kw["branch"]))
    else:
        rows = list(au.rows(what, **kw))
    return write_parquet(rows, path, what=what, branch=kw["branch"], progress=progress,
                         total=len(rows))


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
