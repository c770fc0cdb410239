"""Options and helpers every `ledgerctl` command shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import CommandInvalid, LedgerNotFound
from ledger.store.chain import ChainStore, ledger_exists
from ledger.store.reader import ChainReader, is_pg_spec, open_chain

DEFAULT_DATA = "./ledger-data"

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data directory (else $PERPLEDGER_DATA, else ./ledger-data).",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output: JSON (or JSON Lines).")]
KeyOpt = Annotated[str | None, typer.Option(
    "--key", help="Operator key file that signs (else $PERPLEDGER_OPERATOR_KEY, else the one "
    "init created).")]
BranchOpt = Annotated[
    int | None, typer.Option("--branch", help="Ask an archived branch instead of the chain.")]
StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help="Where to read: a data directory or a PostgreSQL replica "
                 "(postgresql://user@host/db); default: --data.", show_default=False),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Run snapshot intervals on Dask: 'local' (a "
                 "LocalCluster here) or a scheduler address tcp://host:port.")]
WorkerStoreOpt = Annotated[
    str | None,
    typer.Option("--worker-store", help="What Dask or pool workers read: a PostgreSQL "
                 "replica URL or a shared copy of the data directory (default: the store).")]
FromOpt = Annotated[int | None, typer.Option("--from-height", help="First height (inclusive).")]
ToOpt = Annotated[int | None, typer.Option("--to-height", help="Last height (inclusive).")]
RawOpt = Annotated[bool, typer.Option("--raw", help="Show fixed-point quanta in tables "
                                                    "(qq, bq, st) instead of dollars and coins.")]


def data_dir(data: Path | None) -> Path:
    """Resolve the data directory: --data, then $PERPLEDGER_DATA, then ./ledger-data."""
    if data is not None:
        return data
    env = os.environ.get("PERPLEDGER_DATA")
    return Path(env) if env else Path(DEFAULT_DATA)


def store_spec(store: str | None, data: Path | None) -> str:
    """The store a read command reads: --store if given, else the data directory (both
    at once is refused: which one was meant?)."""
    if store is not None and data is not None:
        raise CommandInvalid("pass --data DIR or --store LOCATION, not both")
    if store is not None:
        if is_pg_spec(store):
            return store
        data = Path(store)
    path = data_dir(data)
    if not ledger_exists(path):
        raise LedgerNotFound(f"no ledger at {path} (run `ledgerctl init --data {path}` "
                             "or pass --data / --store)")
    return str(path)


def open_reader(store: str | None, data: Path | None) -> ChainReader:
    """Open the log a read command reads: --store (a data directory or a PostgreSQL
    replica URL), else the data directory."""
    return open_chain(store_spec(store, data))


def open_store(data: Path | None, *, write: bool = False) -> ChainStore:
    """Open the ledger for reading (or writing), with an error that says what to do."""
    path = data_dir(data)
    if not ledger_exists(path):
        raise LedgerNotFound(f"no ledger at {path} (run `ledgerctl init --data {path}` "
                             "or pass --data)")
    return ChainStore.open(path, write=write)


def check_height(value: int | None, name: str) -> None:
    if value is not None and value < 0:
        raise CommandInvalid(f"{name} must be a height of 0 or more, was {value}")
