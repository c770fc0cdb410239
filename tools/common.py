"""Options and helpers every `ledgerctl` command shares."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import CommandInvalid, LedgerNotFound
from ledger.store.chain import ChainStore, ledger_exists

DEFAULT_DATA = "./ledger-data"

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="Data directory (else $PERPLEDGER_DATA, else ./ledger-data).",
                 show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output: JSON (or JSON Lines).")]
BranchOpt = Annotated[
    int | None, typer.Option("--branch", help="Ask an archived branch instead of the chain.")]
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
