"""`ledgerctl`: the operator's command line. Thin: parse, call, render.

Exit codes: 0 ok, 1 error, 2 usage (bad input), 3 verification failed.
Every command takes `--data DIR` and `--json`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.errors import CommandInvalid, LedgerError
from ledger.events.codec import envelope_json
from ledger.events.record import BY_NAME
from ledger.markets import DEMO_MARKETS, load_markets
from ledger.sequencer import Sequencer
from ledger.store.chain import DEFAULT_MAX_ROLLBACK_DEPTH
from projections.catalog import branches_json, journal_json, snapshots_json
from tools import output
from tools.common import (
    BranchOpt,
    DataOpt,
    FromOpt,
    JsonOpt,
    KeyOpt,
    SchedulerOpt,
    StoreOpt,
    ToOpt,
    WorkerStoreOpt,
    check_height,
    data_dir,
    open_reader,
    open_store,
    store_spec,
)
from tools.logs import configure

app = typer.Typer(
    name="ledgerctl",
    help="perpledger: an event-sourced, hash-chained ledger for a perp exchange.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
)
guards_app = typer.Typer(help="Data-check guards (G1-G7).", no_args_is_help=True)
app.add_typer(guards_app, name="guards")


@app.callback()
def _root() -> None:
    configure()


def _onoff(value: str, name: str) -> bool:
    v = value.lower()
    if v not in ("on", "off"):
        raise CommandInvalid(f"{name} must be 'on' or 'off', was {value!r}")
    return v == "on"


@app.command()
def init(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    chain_id: Annotated[str, typer.Option("--chain-id", help="Chain id.")] = "perpledger-demo",
    markets: Annotated[Path | None, typer.Option("--markets", help="Markets TOML file.")] = None,
    guards: Annotated[str, typer.Option("--guards", help="Data-check guards: on|off.")] = "on",
    snapshot_every: Annotated[int, typer.Option(help="Snapshot every N blocks.")] = 100,
    max_rollback_depth: Annotated[int, typer.Option(help="Deepest rollback without --force.")]
    = DEFAULT_MAX_ROLLBACK_DEPTH,
    genesis_time: Annotated[int, typer.Option(help="Genesis block time (s).")] = 0,
    map_size: Annotated[str | None, typer.Option(
        "--map-size", help="Initial LMDB map size (e.g. 4G; default $PERPLEDGER_MAP_SIZE "
        "or 1G); it grows by itself.")] = None,
    writer_key: Annotated[str | None, typer.Option(
        "--writer-key", help="Writer key file (created if absent; default "
        "$PERPLEDGER_WRITER_KEY, else DATA.keys/writer.key).")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="First operator key file (created if absent; default "
        "$PERPLEDGER_OPERATOR_KEY, else DATA.keys/operator.key).")] = None,
    operator: Annotated[str, typer.Option("--operator", help="The first operator's name.")]
    = "operator",
) -> None:
    """Create a ledger: the genesis block with the chain id, config and market listings."""
    from ledger.store.env import parse_size

    size = parse_size(map_size, "--map-size") if map_size is not None else None
    listings = load_markets(markets) if markets else DEMO_MARKETS
    path = data_dir(data)
    if snapshot_every < 0 or max_rollback_depth < 1:
        raise CommandInvalid("--snapshot-every must be >= 0 and --max-rollback-depth >= 1")
    seq = Sequencer.create(path, chain_id=chain_id, listings=listings,
                           guards=_onoff(guards, "--guards"), genesis_time=genesis_time,
                           config={"snapshot_every": snapshot_every,
                                   "max_rollback_depth": max_rollback_depth},
                           map_size=size, writer_key=writer_key, operator_key=key,
                           operator=operator)
    with seq:
        head = seq.store.head
        doc = {"data": str(path), "chain_id": chain_id, "genesis_hash": head.hash.hex(),
               "markets": [lst.mkt for lst in listings], "guards": guards.lower(),
               "state_hash": seq.engine.state_hash().hex(),
               "writer_key": seq.store.config.get("writer_key_path"),
               "operator_key": seq.store.config.get("operator_key_path")}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv(f"ledger created at {path}", list(doc.items()))


@app.command()
def info(data: DataOpt = None, json_out: JsonOpt = False) -> None:
    """Head, genesis, snapshots, archived branches and size on disk."""
    with open_store(data) as store:
        head = store.head
        gen = store.genesis_hash
        snaps = store.snapshots()
        branches = store.branches()
        stats = store.stats()
        doc: dict[str, Any] = {
            "chain_id": store.chain_id,
            "head_height": head.height,
            "head_seq": head.seq,
            "head_hash": head.hash.hex(),
            "head_time": head.time,
            "genesis_hash": gen.hex() if gen else None,
            "snapshots": [s.height for s in snaps],
            "branches": [b["branch"] for b in branches],
            "events": stats["events"],
            "archived_events": stats["archived_events"],
            "size_bytes": stats["size_bytes"],
            "config": store.config,
        }
    if json_out:
        output.dump_json(doc)
        return
    pairs = [(k, v) for k, v in doc.items() if k not in ("snapshots", "branches", "config")]
    pairs.append(("snapshots", ", ".join(map(str, doc["snapshots"][-10:])) or "none"))
    pairs.append(("branches", ", ".join(map(str, doc["branches"])) or "none"))
    pairs.append(("config", ", ".join(f"{k}={v}" for k, v in sorted(store.config.items()))))
    output.kv("ledger", pairs)


@app.command()
def blocks(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    from_h: Annotated[int | None, typer.Option("--from", help="First height.")] = None,
    to_h: Annotated[int | None, typer.Option("--to", help="Last height.")] = None,
    branch: BranchOpt = None,
    store: StoreOpt = None,
) -> None:
    """Block headers in a height range (inclusive)."""
    check_height(from_h, "--from")
    check_height(to_h, "--to")
    with open_reader(store, data) as chain:
        headers = chain.blocks(from_h, to_h, branch=branch)
    if json_out:
        output.dump_jsonl(h.to_json() for h in headers)
        return
    output.table("blocks", ["height", "time", "first seq", "events", "hash", "state hash"],
                 [(h.height, h.time, h.first_seq, h.count, output.short(h.hash),
                   output.short(h.state_hash)) for h in headers],
                 right=["height", "time", "first seq", "events"])


@app.command()
def events(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    height: Annotated[int | None, typer.Option("--height", help="One block.")] = None,
    account: Annotated[str | None, typer.Option("--account")] = None,
    market: Annotated[str | None, typer.Option("--market")] = None,
    type_name: Annotated[str | None, typer.Option("--type", help="Event type name.")] = None,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    branch: BranchOpt = None,
    limit: Annotated[int | None, typer.Option("--limit")] = None,
    store: StoreOpt = None,
) -> None:
    """Events by height, account, market or type (JSON Lines with --json)."""
    for v, n in ((height, "--height"), (from_height, "--from-height"),
                 (to_height, "--to-height")):
        check_height(v, n)
    if height is not None:
        from_height = to_height = height
    code = None
    if type_name is not None:
        cls = BY_NAME.get(type_name)
        if cls is None:
            raise CommandInvalid(f"unknown event type {type_name!r} "
                                 f"(e.g. Filled, Liquidated, FundingTicked)")
        code = cls.TYPE_CODE
    with open_reader(store, data) as chain:
        found = chain.events_by(account=account, market=market, type_code=code,
                                from_height=from_height, to_height=to_height,
                                branch=branch, limit=limit)
    rows = [envelope_json(e) for e in found]
    if json_out:
        output.dump_jsonl(rows)
        return
    output.table("events", ["seq", "height", "kind", "type", "payload"],
                 [(r["seq"], r["height"], r["kind"], r["type"],
                   _brief(r["payload"])) for r in rows], right=["seq", "height"])


def _brief(payload: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in payload.items())
    return text if len(text) < 110 else text[:107] + "..."


@app.command()
def verify(
    data: DataOpt = None,
    json_out: JsonOpt = False,
    branch: BranchOpt = None,
    reexecute: Annotated[bool, typer.Option("--reexecute",
                                            help="Re-run IN events through decide.")] = False,
    from_height: FromOpt = None,
    to_height: ToOpt = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel processes for --reexecute.")]
    = 1,
    store: StoreOpt = None,
    scheduler: SchedulerOpt = None,
    worker_store: WorkerStoreOpt = None,
    trust_key: Annotated[list[str] | None, typer.Option(
        "--trust-key", help="A writer key (or its .pub) you hold: the chain's genesis must "
        "register it (catches a chain rewritten from genesis with other keys).")] = None,
) -> None:
    """Walk the hash chain, events and indexes, every signature and the journal, every
    snapshot's bytes and the read models' checkpoints (and with --reexecute, the state
    machine); on a replica (--store postgresql://...), its chain, events, indexes,
    signatures and journal."""
    from projections.verification import verify as run_verify

    doc = run_verify(store_spec(store, data), branch=branch, reexecute=reexecute,
                     from_height=from_height, to_height=to_height, jobs=jobs,
                     scheduler=scheduler, worker_store=worker_store, progress=not json_out,
                     trust_keys=trust_key or [])
    if json_out:
        output.dump_json(doc)
    else:
        title = "verified" if doc["ok"] else "VERIFICATION FAILED"
        output.kv(title, verify_rows(doc))
    if not doc["ok"]:
        raise typer.Exit(3)


def verify_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """`verify`'s report as table rows: each part's findings on rows of their own."""
    rows: list[tuple[str, Any]] = [
        ("store", doc["store"]), ("result", "ok" if doc["ok"] else "FAILED"),
        ("first bad height", "" if doc["height"] is None else doc["height"]),
        ("reason", doc["reason"]), ("blocks", doc["blocks"]), ("events", doc["events"])]
    sig = doc.get("signatures")
    if sig is not None:
        rows += [("signatures", sig["status"]),
                 ("writer keys", ", ".join(sig["writer_keys"]) or "none"),
                 ("operator keys", ", ".join(sig["operator_keys"]) or "none")]
        rows += [("signature problem", p) for p in sig["problems"]]
    snaps = doc.get("snapshots")
    if snaps is not None:
        rows.append(("snapshots", f"{snaps['checked']} checked, "
                     f"{len(snaps['problems']) or 'no'} problems"))
        rows += [("snapshot problem", p) for p in snaps["problems"]]
    models = doc.get("readmodels")
    if models is not None:
        rows.append(("read models", f"{len(models['problems']) or 'no'} problems"))
        rows += [("read-model problem", p) for p in models["problems"]]
    rx = doc.get("reexecute")
    if rx is not None:
        rows.append(("re-execution", f"{'ok' if rx['ok'] else 'FAILED'}: {rx['blocks']} blocks"
                     f", {rx['events']} events in {rx['intervals']} intervals, "
                     f"{rx['seconds']} s"))
        if not rx["ok"]:
            rows.append(("re-execution reason", rx["reason"]))
    return rows


@app.command()
def submit(
    source: Annotated[str, typer.Argument(help="JSON Lines file, or - for stdin.")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    block_size: Annotated[int | None, typer.Option("--block-size",
                                                   help="Commands per block.")] = None,
    check_invariants: Annotated[bool, typer.Option("--check-invariants")] = False,
) -> None:
    """Append JSON Lines commands: a block per BeginBlock marker or per --block-size."""
    from tools.submit import run_submit

    code = run_submit(data_dir(data), source, block_size=block_size, json_out=json_out,
                      check_invariants=check_invariants)
    if code:
        raise typer.Exit(code)


@app.command()
def snapshot(data: DataOpt = None, json_out: JsonOpt = False) -> None:
    """Take a snapshot of the state at the head now."""
    with Sequencer.open(data_dir(data)) as seq:
        info = seq.snapshot()
    doc = {"height": info.height, "state_hash": info.state_hash.hex(), "size": info.size,
           "time": info.time}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("snapshot taken", list(doc.items()))


@app.command()
def snapshots(data: DataOpt = None, json_out: JsonOpt = False, store: StoreOpt = None
              ) -> None:
    """List snapshots: height, state hash, size and block time."""
    with open_reader(store, data) as chain:
        snaps = snapshots_json(chain)
    if json_out:
        output.dump_json(snaps)
        return
    output.table("snapshots", ["height", "state hash", "size (bytes)", "block time"],
                 [(s["height"], output.short(s["state_hash"]), s["size"], s["time"])
                  for s in snaps],
                 right=["height", "size (bytes)", "block time"])


@app.command()
def branches(data: DataOpt = None, json_out: JsonOpt = False, store: StoreOpt = None
             ) -> None:
    """Archived branches: heights, event counts, reason, operator, time."""
    with open_reader(store, data) as chain:
        rows = branches_json(chain)
    if json_out:
        output.dump_json(rows)
        return
    output.table("archived branches", ["branch", "heights", "events", "reason", "operator",
                                       "block time"],
                 [(r["branch"], f"{r['first_height']}..{r['last_height']}", r["events"],
                   r["reason"], r["operator"], r["head_time"]) for r in rows],
                 right=["branch", "events"])


@app.command()
def journal(data: DataOpt = None, json_out: JsonOpt = False, store: StoreOpt = None
            ) -> None:
    """Operator actions: rollbacks, mode changes, guards, refunds."""
    with open_reader(store, data) as chain:
        recs = journal_json(chain)
    if json_out:
        output.dump_json(recs)
        return
    output.table("journal", ["id", "action", "operator", "reason", "head", "recorded at"],
                 [(r["id"], r["action"], r["operator"], r["reason"], r["head_height"],
                   r["recorded_at"]) for r in recs], right=["id", "head"])


@guards_app.command("set")
def guards_set(
    state: Annotated[str, typer.Argument(help="on|off")],
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")],
    operator: Annotated[str, typer.Option("--operator", help="Who (journaled).")],
    data: DataOpt = None,
    json_out: JsonOpt = False,
    key: KeyOpt = None,
) -> None:
    """Switch the data-check guards on or off, recorded in the log and the journal."""
    enabled = _onoff(state, "guards state")
    with Sequencer.open(data_dir(data)) as seq:
        out = seq.set_guards(enabled, reason=reason, operator=operator,
                             key=seq.operator_key(key))
    doc = {"guards": "on" if enabled else "off", "height": out.header.height}
    if json_out:
        output.dump_json(doc)
    else:
        output.kv("guards", list(doc.items()))


def _register_extensions() -> None:
    """Attach command groups that live in their own modules (kept thin here)."""
    import importlib

    for name in ("tools.cli_sim", "tools.cli_projections", "tools.cli_operator",
                 "tools.cli_bench", "tools.cli_demo", "tools.cli_report",
                 "tools.cli_serve", "tools.cli_replicate", "tools.cli_keys"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.register(app)


_register_extensions()


def main() -> None:
    """Entry point: run the app; no traceback ever reaches the user.

    Typer runs in standalone mode: it answers usage errors with exit code 2 and
    turns `typer.Exit(n)` into exit code n. The click command is built once and
    its help polished (`tools.helptext`: no type noise) before it runs.
    Everything perpledger raises on purpose is a `LedgerError`, rendered as one
    line with its own exit code (ledger/errors.py: 1 error, 2 usage, 3
    verification failed). LMDB and OS errors are translated
    (`ledger.store.failures`: damage is exit 3, a full disk names the directory
    and its free space). Anything else is a bug: one line here, the traceback in
    the debug log (PERPLEDGER_LOG_LEVEL=debug).
    """
    from tools.helptext import polish

    try:
        polish(typer.main.get_command(app))(prog_name="ledgerctl")
    except LedgerError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 1)
    except BrokenPipeError:
        _quiet_exit(1)
    except Exception as exc:  # the one place that catches everything: see docstring
        _unexpected(exc)


def _unexpected(exc: Exception) -> None:
    import structlog

    from ledger.store.failures import translate

    configure()
    structlog.get_logger("ledgerctl").debug("unexpected error", argv=sys.argv[1:],
                                            exc_info=exc)
    known = translate(exc, _data_arg())
    if known is not None:
        _fail(str(known), known.exit_code)
    text = " ".join(str(exc).split()) or "no message"
    if len(text) > 300:
        text = text[:297] + "..."
    _fail(f"unexpected {type(exc).__name__}: {text} (this is a bug in perpledger; run again "
          "with PERPLEDGER_LOG_LEVEL=debug for the traceback and report it)", 1)


def _data_arg() -> Path:
    """The data directory this invocation names (for messages about its store)."""
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--data="):
            return Path(arg.split("=", 1)[1])
    return data_dir(None)


def _quiet_exit(code: int) -> None:
    import os

    # stdout's reader went away (`| head`): say nothing more on it.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(code)


def _fail(message: str, code: int) -> None:
    message = message.replace("\r", " ")
    if "--json" in sys.argv:
        sys.stdout.write('{"error": ' + _json_str(message) + ', "exit_code": ' + str(code)
                         + "}\n")
    from rich.markup import escape

    output.err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False,
                             soft_wrap=True)
    sys.exit(code)


def _json_str(s: str) -> str:
    import json

    return json.dumps(s)


if __name__ == "__main__":
    main()
