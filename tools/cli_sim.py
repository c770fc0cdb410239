"""`ledgerctl simulate`: a deterministic, realistic workload appended through the sequencer."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ledger.errors import CommandInvalid
from tools import output
from tools.common import DataOpt, JsonOpt, data_dir
from tools.simulate import make_workload, open_or_create, parse_injections, run


def simulate(
    blocks: Annotated[int, typer.Option("--blocks", help="Blocks to append.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    accounts: Annotated[int, typer.Option("--accounts", help="Simulated users.")] = 200,
    seed: Annotated[int, typer.Option("--seed")] = 1,
    snapshot_every: Annotated[int | None, typer.Option("--snapshot-every")] = None,
    check_invariants: Annotated[bool, typer.Option("--check-invariants")] = False,
    guards: Annotated[str, typer.Option("--guards", help="on|off, when creating.")] = "on",
    inject_zero_funding: Annotated[
        list[str] | None,
        typer.Option("--inject-zero-funding", help="HEIGHT[:MARKET]: publish a zero index."),
    ] = None,
    shocks: Annotated[bool, typer.Option("--shocks/--no-shocks")] = True,
) -> None:
    """Append N blocks of simulated trading (creates the ledger with demo markets if absent)."""
    if blocks < 1:
        raise CommandInvalid(f"--blocks must be 1 or more, was {blocks}")
    if accounts < 5:
        raise CommandInvalid(f"--accounts must be 5 or more, was {accounts}")
    g = guards.lower()
    if g not in ("on", "off"):
        raise CommandInvalid(f"--guards must be on or off, was {guards!r}")
    inject = parse_injections(inject_zero_funding or [])
    path = data_dir(data)
    with open_or_create(path, guards=g == "on", snapshot_every=snapshot_every,
                        check_invariants=check_invariants) as seq:
        # The workload's block h has time start + h: anchor it at the head so time never
        # runs backwards (after a rollback the chain's clock is ahead of its height).
        head = seq.store.head
        wl = make_workload(seed=seed, accounts=accounts, inject=inject, shocks=shocks,
                           start_time=head.time - head.height)
        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                      disable=json_out, transient=True) as bar:
            task = bar.add_task("blocks", total=blocks, rate="")
            state = {"events": 0}

            def tick(out: object) -> None:
                state["events"] += len(out.envelopes)  # type: ignore[attr-defined]
                bar.update(task, advance=1, rate=f"{state['events']:,} events")

            stats = run(seq, wl, blocks, on_block=tick)
        head = seq.store.head
        doc = {"blocks": stats.blocks, "commands": stats.commands, "events": stats.events,
               "first_height": stats.first_height, "head_height": head.height,
               "head_hash": head.hash.hex(), "state_hash": seq.engine.state_hash().hex(),
               "counts": dict(sorted(stats.counts.items()))}
    if json_out:
        output.dump_json(doc)
        return
    output.kv("simulation", [(k, v) for k, v in doc.items() if k != "counts"])
    output.table("events by type", ["type", "count"], sorted(stats.counts.items()),
                 right=["count"])


def register(app: typer.Typer) -> None:
    app.command()(simulate)
