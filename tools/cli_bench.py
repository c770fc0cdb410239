"""`ledgerctl bench append|engine|rebuild|audit|rollback`: benchmarks, never tests.

Each prints its figures as ratios to the raw LMDB ceiling measured in the same
run, plus the absolute numbers; `--json` prints one object. engine, append and
rebuild measure the compiled core and the pure-Python one side by side by
default (`--build both`): each build runs in its own process (the choice is
made at import, ledger.compiled), with its own raw ceiling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.status import Status

from ledger import compiled
from ledger.errors import CommandInvalid
from tools import output
from tools.common import JsonOpt

bench_app = typer.Typer(help="Benchmarks (figures as ratios to the raw LMDB ceiling).",
                        no_args_is_help=True)


BuildOpt = Annotated[str, typer.Option(
    "--build", help="compiled|pure|both: which build of the core to measure; both runs each "
    "in its own process and prints them side by side (default).")]
BUILDS = ("compiled", "pure")


def _run(json_out: bool, title: str, fn: Callable[[Callable[[str], None]], dict[str, Any]],
         build: str = "", argv: list[str] | None = None) -> None:
    """Run a benchmark in this process, or per build in child processes (see `--build`)."""
    if build and build not in (*BUILDS, "both"):
        raise CommandInvalid(f"--build must be compiled, pure or both, was {build!r}")
    if build and argv is not None and build != compiled.status()["build"]:
        result = _per_build(argv, BUILDS if build == "both" else (build,))
        if build != "both":
            result = result[build]
    elif json_out:
        result = fn(lambda _m: None)
    else:
        with Status(title, console=output.err_console) as status:
            result = fn(lambda m: status.update(f"{title}: {m}"))
    if json_out:
        output.dump_json(result)
        return
    if build == "both":
        rows = _flat(result["compiled"])
        pure = dict(_flat(result["pure"]))
        output.table(f"{title} (the same run's raw ceiling in each)", ["figure", *BUILDS],
                     [(k, v, pure.get(k, "")) for k, v in rows], right=list(BUILDS))
        return
    output.kv(title, _flat(result))


def _flat(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in doc.items():
        if isinstance(v, dict):
            rows += _flat(v, f"{prefix}{k}.")
        else:
            rows.append((prefix + k, v))
    return rows


def _per_build(argv: list[str], builds: tuple[str, ...]) -> dict[str, Any]:
    """Run `ledgerctl bench ARGV --json` once per build, each in a fresh process."""
    out: dict[str, Any] = {}
    for build in builds:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PERPLEDGER_PURE", "PERPLEDGER_COMPILED")}
        # A compiled run refuses a missing or stale build rather than measure pure Python.
        env.update({"PERPLEDGER_PURE": "1"} if build == "pure" else
                   {"PERPLEDGER_COMPILED": "require"})
        output.err_console.print(f"bench {argv[0]}: the {build} build, in its own process")
        proc = subprocess.run([sys.executable, "-m", "tools.cli", "bench", *argv, "--build",
                               build, "--json"], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            out[build] = {"unavailable": proc.stderr.strip().splitlines()[-1:]}
            continue
        out[build] = json.loads(proc.stdout)
    if all("unavailable" not in out.get(b, {"unavailable": 1}) for b in BUILDS):
        out["compiled_over_pure"] = {k: round(out["compiled"][k] / out["pure"][k], 2)
                                     for k, v in out["compiled"].items()
                                     if k.endswith("_per_s") and out["pure"].get(k)}
    return out


@bench_app.command("append")
def append(
    json_out: JsonOpt = False,
    events: Annotated[int, typer.Option("--events", help="Events to append.")] = 1_000_000,
    es_events: Annotated[int, typer.Option("--es-events",
                                           help="Events for the eventsourcing baseline.")]
    = 100_000,
    build: BuildOpt = "both",
) -> None:
    """Append, scan and truncate: ledger vs raw LMDB vs eventsourcing/SQLite."""
    from tools.bench_append import run

    _run(json_out, "bench append", lambda say: run(events, es_events=es_events, progress=say),
         build, ["append", "--events", str(events), "--es-events", str(es_events)])


@bench_app.command("engine")
def engine(
    json_out: JsonOpt = False,
    commands: Annotated[int, typer.Option("--commands", help="Commands to run.")] = 200_000,
    accounts: Annotated[int, typer.Option("--accounts")] = 10_000,
    block_commands: Annotated[int, typer.Option("--block-commands")] = 1_000,
    build: BuildOpt = "both",
) -> None:
    """The simulated mix through the pipelined writer: admit, decide, evolve, hash, append."""
    from tools.bench_engine import run

    _run(json_out, "bench engine", lambda say: run(commands, accounts=accounts,
                                                   block_commands=block_commands, say=say),
         build, ["engine", "--commands", str(commands), "--accounts", str(accounts),
                 "--block-commands", str(block_commands)])


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
    build: BuildOpt = "both",
) -> None:
    """Rebuild events/s vs raw scan-plus-decode and the eventsourcing projection runner."""
    from tools.bench_projections import bench_rebuild

    _run(json_out, "bench rebuild", lambda say: bench_rebuild(events, say=say), build,
         ["rebuild", "--events", str(events)])


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
