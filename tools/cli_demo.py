"""`ledgerctl demo incident`: the README's first command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.errors import CommandInvalid
from tools import output
from tools.common import DataOpt, JsonOpt, data_dir
from tools.demo import run_demo

demo_app = typer.Typer(help="End-to-end demonstrations.", no_args_is_help=True)


@demo_app.command("incident")
def incident(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    guards: Annotated[str, typer.Option("--guards", help="off (as on the day) or on.")] = "off",
    accounts: Annotated[int, typer.Option("--accounts")] = 600,
    seed: Annotated[int, typer.Option("--seed")] = 7,
    blocks: Annotated[int, typer.Option("--blocks", help="Blocks before the maintenance.")]
    = 100,
) -> None:
    """Replay the 19 Jan 2026 incident and its one-command recovery in a fresh ledger."""
    g = guards.lower()
    if g not in ("on", "off"):
        raise CommandInvalid(f"--guards must be on or off, was {guards!r}")
    if accounts < 20:
        raise CommandInvalid(f"--accounts must be 20 or more, was {accounts}")
    if blocks < 30:
        raise CommandInvalid(f"--blocks must be 30 or more, was {blocks}")
    path: Path = data_dir(data)
    started = time.perf_counter()
    bad_blocks = 12
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=json_out, transient=True) as bar:
        task = bar.add_task("trading", total=blocks + bad_blocks)
        say = None if json_out else (lambda line: bar.console.print(line, highlight=False))
        summary = run_demo(path, guards=g == "on", accounts=accounts, seed=seed,
                           normal_blocks=blocks, bad_blocks=bad_blocks, say=say,
                           tick=lambda: bar.advance(task))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["data"] = str(path)
    if json_out:
        output.dump_json(summary)
    else:
        rows = [
            ("guards", summary["guards"]),
            ("accounts liquidated on the bad branch", summary["liquidated_on_bad_branch"]),
            ("of which bogus (not liquidated in the corrected counterfactual)",
             summary["bogus_liquidations"]),
            ("funding ticks rejected by guards", summary["funding_ticks_rejected"]),
            *([("markets taken out of OK by guards", ", ".join(summary["markets_left_ok"]))]
              if "markets_left_ok" in summary else []),
        ]
        if summary["rolled_back"]:
            a = summary["assess"]
            rows += [
                ("inputs corrected in the counterfactual", summary["corrections"]),
                ("assess (a): roll back and refund",
                 f"{a['rollback_refund_accounts']} accounts, "
                 f"{output.usd(a['rollback_refund_total_qq'])}"),
                ("assess (b): leave the chain and compensate",
                 f"{a['compensation_accounts']} accounts, "
                 f"{output.usd(a['compensation_total_qq'])}"),
                ("prices carried forward by the recovery block",
                 summary["prices_carried_forward"]),
                ("positions restored by the rollback", summary["positions_restored"]),
                ("accounts refunded", summary["refunded_accounts"]),
                ("refunded total", output.usd(summary["refunded_total"])),
                *((f"  of which {k}", output.usd(v))
                  for k, v in summary["refund_by_cause_qq"].items() if v),
                ("LIQ_VAULT before refunds", output.usd(summary["vault_before"])),
                ("LIQ_VAULT after refunds", output.usd(summary["vault_after"])),
            ]
        rows += [
            ("snapshot state hash", summary["snapshot_state_hash"][:16]),
            ("state hash after rollback", (summary["state_hash_after_rollback"] or "")[:16]
             if summary["rolled_back"] else "no rollback needed"),
            ("chain, branch and state verified", "yes" if summary["verified"] else "NO"),
            ("seconds", summary["seconds"]),
        ]
        output.kv("incident summary", rows)
    if not summary["verified"]:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.add_typer(demo_app, name="demo")
