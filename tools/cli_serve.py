"""`ledgerctl serve`: the read-only HTTP audit API and /metrics on uvicorn."""

from __future__ import annotations

import socket
import sys
from typing import Annotated

import typer

from ledger.errors import CommandInvalid
from ledger.store.reader import is_pg_spec
from tools import output
from tools.common import DataOpt, JsonOpt, StoreOpt, store_spec


def serve(
    data: DataOpt = None,
    store: StoreOpt = None,
    replicator_target: Annotated[list[str] | None, typer.Option(
        "--replicator-target", help="A replica the replicator feeds (postgresql://...): "
                                    "its lag is a metric. Repeatable.")] = None,
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
    from tools.metrics import Metrics, replica_positions_from

    if not 0 <= port <= 65535:
        raise CommandInvalid(f"--port must be between 0 and 65535, was {port}")
    where = store_spec(store, data)
    for target in replicator_target or []:
        if not is_pg_spec(target):
            raise CommandInvalid(f"--replicator-target must be a postgresql:// URL, was "
                                 f"{target!r}")
    au = Auditor.open(where, progress=not json_out)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        au.close()
        raise CommandInvalid(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()[1]
    with au:
        app = create_app(au, metrics=Metrics(
            au, replicas=replica_positions_from(replicator_target or [])))
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
