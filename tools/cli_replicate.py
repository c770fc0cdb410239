"""`ledgerctl replicate`: feed a PostgreSQL replica from this ledger; `replicate status`.

    ledgerctl replicate --to postgresql://ledger@db1/audit          # follow the chain
    ledgerctl replicate --to postgresql://ledger@db1/audit --once   # catch up and exit
    ledgerctl replicate status --to postgresql://ledger@db1/audit --replica postgresql://...

Thin: parse, call `projections.replicator` / `projections.replica_status`, render.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from ledger.errors import CommandInvalid
from ledger.store.reader import is_pg_spec
from projections.replica_grouping import GROUP_BLOCKS, GROUP_EVENTS
from tools import output
from tools.common import DataOpt, JsonOpt, open_store

replicate_app = typer.Typer(help="Feed a PostgreSQL audit replica from this ledger, block by "
                                 "block (whole blocks per transaction: one when caught up, "
                                 "runs of them when behind).",
                            invoke_without_command=True)

ToOpt = Annotated[str | None, typer.Option(
    "--to", help="The replica's primary: postgresql://user[:password]@host[:port]/dbname "
    "(or PG* environment variables).", show_default=False)]


def _target(to: str | None) -> str:
    if to is None:
        raise CommandInvalid("--to is required: the PostgreSQL database to replicate into, "
                             "e.g. --to postgresql://ledger@db1:5432/audit")
    if not is_pg_spec(to):
        raise CommandInvalid(f"--to must be a postgresql:// URL, was {to!r}")
    return to


@replicate_app.callback()
def replicate(
    ctx: typer.Context,
    to: ToOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    once: Annotated[bool, typer.Option("--once", help="Catch up to the head (as it is at "
                                       "the start) and exit.")]
    = False,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between looks at the "
                                        "chain's head when caught up.")] = 0.2,
    group_events: Annotated[int, typer.Option(
        "--group-events", help="When behind, one transaction takes whole blocks until it "
        "holds this many events.")] = GROUP_EVENTS,
    group_blocks: Annotated[int, typer.Option(
        "--group-blocks", help="... or this many blocks (1: one block per transaction "
        "always).")] = GROUP_BLOCKS,
) -> None:
    """Replicate blocks into PostgreSQL: follow the chain (or --once), mirroring rollbacks."""
    if ctx.invoked_subcommand is not None:
        return
    from ledger.store.pg.connect import describe
    from projections.replicator import replicate as run

    dsn = _target(to)
    if poll <= 0:
        raise CommandInvalid(f"--poll must be above 0 seconds, was {poll}")
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open_store(data) as store:
            report = run(store, dsn, follow=not once, poll=poll, stop=lambda: bool(stopping),
                         progress=not json_out, group_events=group_events,
                         group_blocks=group_blocks)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    doc = {"target": describe(dsn), **report.to_json(), "stopped_by_signal": bool(stopping)}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("replicated", list(doc.items()))


@replicate_app.command("status")
def status(
    to: ToOpt = None,
    data: DataOpt = None,
    json_out: JsonOpt = False,
    replica: Annotated[list[str] | None, typer.Option(
        "--replica", help="A streaming replica to report on (repeatable).")] = None,
    no_chain: Annotated[bool, typer.Option("--no-chain", help="Do not read the LMDB ledger "
                                           "(on a machine without it).")] = False,
) -> None:
    """Replicator lag (blocks and seconds behind the head) and the replicas' replay lag."""
    from projections.replica_status import replication_status

    dsn = _target(to)
    for r in replica or []:
        if not is_pg_spec(r):
            raise CommandInvalid(f"--replica must be a postgresql:// URL, was {r!r}")
    if no_chain:
        doc = replication_status(dsn, replicas=list(replica or []))
    else:
        with open_store(data) as store:
            doc = replication_status(dsn, store=store, replicas=list(replica or []))
    if json_out:
        output.dump_json(doc)
        return
    output.kv("replicator", [(k, v) for k, v in doc.items()
                             if k not in ("replicas", "standbys_seen_by_primary")])
    rows: list[tuple[Any, ...]] = [(r["application_name"], r["client"], r["state"],
                                    r["replay_lag_s"], r["replay_behind_bytes"])
                                   for r in doc["standbys_seen_by_primary"]]
    if rows:
        output.table("standbys (seen by the primary)", ["name", "client", "state",
                                                        "replay lag (s)", "behind (bytes)"],
                     rows, right=["replay lag (s)", "behind (bytes)"])
    if doc["replicas"]:
        output.table("replicas", ["replica", "height", "lag (blocks)", "lag (s)",
                                  "replay delay (s)", "behind (bytes)"],
                     [(r["replica"], r["replica_height"], r["lag_blocks"], r["lag_seconds"],
                       r["replay_delay_s"], r["replay_behind_bytes"]) for r in doc["replicas"]],
                     right=["height", "lag (blocks)", "lag (s)", "replay delay (s)",
                            "behind (bytes)"])


def bench_replicate(
    json_out: JsonOpt = False,
    events: Annotated[int, typer.Option("--events", help="Events in the chain.")] = 1_000_000,
    lag_blocks: Annotated[int, typer.Option("--lag-blocks", help="Blocks simulate appends "
                                            "while lag is sampled.")] = 300,
    dsn: Annotated[str | None, typer.Option("--dsn", help="An empty database to use instead "
                                            "of a private server (no lag figures).")] = None,
    repeat: Annotated[int, typer.Option("--repeat", help="Runs of the throughput and lag "
                                        "parts (medians and spreads are reported).")] = 3,
    chain: Annotated[Path | None, typer.Option(
        "--chain", help="Reuse the chain in this directory (built there first if there is "
        "none), instead of building one in a temporary directory.")] = None,
    group_events: Annotated[int, typer.Option("--group-events", help="The replicator's "
                                              "--group-events.")] = GROUP_EVENTS,
    group_blocks: Annotated[int, typer.Option("--group-blocks", help="The replicator's "
                                              "--group-blocks.")] = GROUP_BLOCKS,
) -> None:
    """Replicator events/s vs raw binary COPY, catch-up time, replica lag, PG vs LMDB queries."""
    from tools.bench_replicate import run
    from tools.cli_bench import _run

    _run(json_out, "bench replicate", lambda say: run(
        events, lag_blocks=lag_blocks, dsn=dsn, repeat=repeat, chain=chain,
        group_events=group_events, group_blocks=group_blocks, say=say))


def register(app: typer.Typer) -> None:
    """Add `replicate` (and `replicate status`) to the ledgerctl app, and `bench replicate`."""
    from tools.cli_bench import bench_app

    app.add_typer(replicate_app, name="replicate")
    bench_app.command("replicate")(bench_replicate)
