"""`ledgerctl report incident` and `ledgerctl audit plot`: what happened, as a page and figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.errors import CommandInvalid
from projections.browser import print_pdf
from projections.incident import DEFAULT_WINDOW, build_incident
from projections.plots import PLOTS, plot
from projections.report_html import render_report
from projections.units import units_from_events
from tools import output
from tools.cli_projections import audit_app
from tools.common import BranchOpt, DataOpt, FromOpt, JsonOpt, StoreOpt, ToOpt, store_spec

report_app = typer.Typer(help="Reports for operators and auditors.", no_args_is_help=True)
OutOpt = Annotated[Path, typer.Option("--out", help="Where to write it.")]


def _progress(json_out: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                    console=output.err_console, disable=json_out, transient=True)


@report_app.command("incident")
def incident(
    out: OutOpt,
    branch: Annotated[int | None, typer.Option(
        "--branch", help="The archived branch of a rollback.")] = None,
    from_height: Annotated[int | None, typer.Option(
        "--from-height", help="First suspect height (compensation without rollback).")]
    = None,
    window: Annotated[int, typer.Option(
        "--window", help="Blocks shown before the first suspect height.")] = DEFAULT_WINDOW,
    pdf: Annotated[Path | None, typer.Option(
        "--pdf", help="Also print the page to this PDF (needs chromium).")] = None,
    plan: Annotated[Path | None, typer.Option(
        "--plan", help="A refund or compensation plan as JSON (a plan command's --json "
                       "output) to render instead of the branch's refund plan.")] = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """One self-contained HTML page of an incident: timeline, funding and mark per market,
    liquidations against the counterfactual, refunds by cause, hashes and verification.

    --json prints the document the page renders (every number on the page is in it).
    """
    from projections.audit import Auditor

    where = store_spec(store, data)
    given = None if plan is None else load_plan(plan)
    with _progress(json_out) as bar:
        task = bar.add_task("reading the incident", total=4)
        with Auditor.open(where, progress=False) as au:
            doc = build_incident(au, branch=branch, from_height=from_height, window=window,
                                 plan=given)
            units = units_from_events(au.events)
        bar.update(task, advance=1, description="drawing the figures")
        page = render_report(doc, units)
        bar.update(task, advance=1, description="writing the page")
        out.write_text(page, encoding="utf-8")
        bar.update(task, advance=1, description="printing the PDF")
        if pdf is not None:
            print_pdf(out, pdf)
        bar.update(task, advance=1)
    if json_out:
        output.dump_json({"out": str(out), "pdf": None if pdf is None else str(pdf),
                          "report": doc})
        return
    t = doc["liquidations"]["totals"]
    output.kv("incident report", [
        ("page", str(out)), ("pdf", str(pdf) if pdf else "no"), ("kind", doc["kind"]),
        ("heights", f"{doc['window']['from_height']}..{doc['window']['to_height']}"),
        ("liquidations (branch / counterfactual / chain)",
         f"{t.get('branch', '-')} / {t.get('counterfactual', '-')} / {t.get('chain', '-')}"),
        ("plan lines", len((doc["plan"] or {}).get("lines") or [])),
        ("verified", ", ".join(f"{k}: {'ok' if v['ok'] else 'FAILED'}"
                               for k, v in doc["hashes"]["verify"].items()))])


def load_plan(path: Path) -> dict[str, Any]:
    """A plan document from a file: the plan itself or an object holding it under "plan"."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise CommandInvalid(f"--plan: {path} does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandInvalid(f"--plan: {path} is not JSON: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("plan"), dict):
        doc = doc["plan"]
    if not isinstance(doc, dict) or not isinstance(doc.get("lines"), list):
        raise CommandInvalid(f"--plan: {path} holds no plan (an object with a 'lines' list)")
    return doc


def audit_plot(
    what: Annotated[str, typer.Argument(help=" | ".join(PLOTS))],
    out: OutOpt,
    market: Annotated[str | None, typer.Option("--market", help="Market (funding, mark).")]
    = None,
    account: Annotated[str | None, typer.Option("--account", help="Account (equity).")]
    = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """Plot a funding index, a mark, liquidations per block or an account's value over
    heights to a PNG (--json prints the series drawn)."""
    from projections.audit import Auditor

    if out.suffix.lower() != ".png":
        raise CommandInvalid(f"--out must name a .png file, was {str(out)!r}")
    where = store_spec(store, data)
    with _progress(json_out) as bar:
        bar.add_task(f"plotting {what}", total=None)
        with Auditor.open(where, progress=False) as au:
            doc, png = plot(au, what, market=market, account=account,
                            from_height=from_height, to_height=to_height, branch=branch)
        out.write_bytes(png)
    doc["out"] = str(out)
    if json_out:
        output.dump_json(doc)
    else:
        output.kv(f"plot {what}", [(k, v) for k, v in doc.items() if k != "series"]
                  + [("points", len(doc["series"]))])


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
    audit_app.command("plot")(audit_plot)
