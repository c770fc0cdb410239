"""`ledgerctl serve`: the read-only HTTP audit API and /metrics on uvicorn."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import CommandInvalid, LedgerNotFound
from tools import output
from tools.common import DataOpt, JsonOpt, data_dir


def serve(
    data: DataOpt = None,
    store: Annotated[str | None, typer.Option(
        "--store", help="Where the ledger is: a data directory, or a PostgreSQL DSN "
                        "(postgresql://...) once replicas exist (issue 12).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free port).")] = 8014,
    json_out: JsonOpt = False,
) -> None:
    """Serve the audit API (GET /v1/...) and Prometheus /metrics until interrupted.

    Read-only: the chain is never written. Prints the URL it listens on first
    (with --json, one JSON line with host and port).
    """
    import uvicorn

    from projections.audit import Auditor
    from tools.api import create_app

    if data is not None and store is not None:
        raise CommandInvalid("pass --data DIR or --store LOCATION, not both")
    if not 0 <= port <= 65535:
        raise CommandInvalid(f"--port must be between 0 and 65535, was {port}")
    where = store if store is not None else str(data_dir(data))
    if not where.startswith(("postgresql://", "postgres://")) and not (
            Path(where) / "data.mdb").exists():
        raise LedgerNotFound(f"no ledger at {where} (pass --data DIR or --store LOCATION)")
    try:
        au = Auditor.open(where, progress=not json_out)
    except LedgerNotFound:
        if where.startswith(("postgresql://", "postgres://")):
            raise CommandInvalid("this build's Auditor opens LMDB data directories; "
                                 "PostgreSQL stores arrive with the replicas of issue 12"
                                 ) from None
        raise
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        au.close()
        raise CommandInvalid(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    with au:
        app = create_app(au)
        url = f"http://{host}:{bound}"
        if json_out:
            output.dump_json({"host": host, "port": bound, "url": url, "store": where})
        else:
            output.err_console.print(f"serving {where} on {url} (API at {url}/v1/..., "
                                     f"schema at {url}/openapi.json, metrics at {url}/metrics)")
        sys.stdout.flush()
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                lifespan="off")
        uvicorn.Server(config).run(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
