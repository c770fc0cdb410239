"""`ledgerctl bench append|engine|rebuild|audit|rollback`: benchmarks, never tests.

Each prints its figures as ratios to the raw LMDB ceiling measured in the same
run, plus the absolute numbers; `--json` prints one object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.status import Status

from tools import output
from tools.common import JsonOpt

bench_app = typer.Typer(help="Benchmarks (figures as ratios to the raw LMDB ceiling).",
                        no_args_is_help=True)


def _run(json_out: bool, title: str, fn: Callable[[Callable[[str], None]], dict[str, Any]]
         ) -> None:
    if json_out:
        result = fn(lambda _m: None)
        output.dump_json(result)
        return
    with Status(title, console=output.err_console) as status:
        result = fn(lambda m: status.update(f"{title}: {m}"))
    rows = []
    for k, v in result.items():
        rows.append((k, v if not isinstance(v, dict) else ", ".join(
            f"{a}={b}" for a, b in v.items())))
    output.kv(title, rows)


@bench_app.command("append")
def append(
    json_out: JsonOpt = False,
    events: Annotated[int, typer.Option("--events", help="Events to append.")] = 1_000_000,
    es_events: Annotated[int, typer.Option("--es-events",
                                           help="Events for the eventsourcing baseline.")]
    = 100_000,
) -> None:
    """Append, scan and truncate: ledger vs raw LMDB vs eventsourcing/SQLite."""
    from tools.bench_append import run

    _run(json_out, "bench append", lambda say: run(events, es_events=es_events, progress=say))


@bench_app.command("engine")
def engine(
    json_out: JsonOpt = False,
    commands: Annotated[int, typer.Option("--commands", help="Commands to run.")] = 200_000,
    accounts: Annotated[int, typer.Option("--accounts")] = 10_000,
    block_commands: Annotated[int, typer.Option("--block-commands")] = 1_000,
) -> None:
    """The simulated mix through decide, evolve, state hashing and durable append."""
    from tools.bench_engine import run

    _run(json_out, "bench engine", lambda say: run(commands, accounts=accounts,
                                                   block_commands=block_commands, say=say))


@bench_app.command("risk")
def risk(
    json_out: JsonOpt = False,
    accounts: Annotated[list[int] | None, typer.Option("--accounts")] = None,
) -> None:
    """Funding settlement and the liquidation sweep per block at 10K and 100K positions."""
    from tools.bench_risk import run

    sizes = accounts or [10_000, 100_000]
    _run(json_out, "bench risk", lambda say: run(sizes, say=say))


@bench_app.command("rebuild")
def rebuild(
    json_out: JsonOpt = False,
    events: Annotated[int, typer.Option("--events")] = 1_000_000,
) -> None:
    """Rebuild events/s vs raw scan-plus-decode and the eventsourcing projection runner."""
    from tools.bench_projections import bench_rebuild

    _run(json_out, "bench rebuild", lambda say: bench_rebuild(events))


@bench_app.command("audit")
def audit(
    json_out: JsonOpt = False,
    events: Annotated[list[int] | None, typer.Option("--events")] = None,
) -> None:
    """Account and time-travel query latency on 1M- and 3M-event chains."""
    from tools.bench_projections import bench_audit

    sizes = tuple(events or [1_000_000, 3_000_000])
    _run(json_out, "bench audit", lambda say: bench_audit(sizes))


@bench_app.command("rollback")
def rollback(
    json_out: JsonOpt = False,
    small: Annotated[int, typer.Option("--small")] = 1_000_000,
    big: Annotated[int, typer.Option("--big")] = 3_000_000,
    suffix: Annotated[int, typer.Option("--suffix")] = 100_000,
    demo: Annotated[bool, typer.Option("--demo/--no-demo")] = True,
) -> None:
    """Plan and execute a 100K-event rollback on 1M and 3M chains; time the demo."""
    from tools.bench_rollback import run

    _run(json_out, "bench rollback", lambda say: run(small, big, suffix, demo=demo, say=say))


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
