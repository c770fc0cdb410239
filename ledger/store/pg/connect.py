"""Connections to a PostgreSQL replica, and its errors in the ledger's own words.

psycopg raises its own exception tree (DB-API names). Everything that crosses
into the ledger goes through `pg_errors`, which turns it into the ledger's
hierarchy with a message an operator can act on: which server (never the
password), what the server said, and what to do. So `ledgerctl` prints one
line and exits non-zero instead of a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ledger.errors import CommandInvalid, LedgerError, StoreError, StoreUnavailable

try:
    import psycopg
    from psycopg import errors as pg_err
    from psycopg.conninfo import conninfo_to_dict
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise StoreError("PostgreSQL support needs psycopg 3: pip install 'perpledger[postgres]'"
                     ) from exc

#: Seconds to wait for a server to answer a connection attempt (unless the DSN says).
CONNECT_TIMEOUT = 10


def describe(dsn: str) -> str:
    """The server and database a DSN names, for messages (never the password)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "an unparsable connection string"
    host = str(parts.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(parts.get("port") or os.environ.get("PGPORT") or "5432")
    db = str(parts.get("dbname") or parts.get("user") or "")
    user = str(parts.get("user") or "")
    where = f"{host}:{port}" if not host.startswith("/") else f"{host} (socket, port {port})"
    return f"postgresql://{user + '@' if user else ''}{where}/{db}"


def connect(dsn: str, *, application: str, autocommit: bool = False,
            read_only: bool = False) -> psycopg.Connection[Any]:
    """Open a connection, or raise `CommandInvalid` (not a DSN) / `StoreUnavailable`."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise CommandInvalid(f"not a PostgreSQL connection string ({_first_line(exc)}); "
                             "expected e.g. postgresql://user@host:5432/dbname") from None
    kw: dict[str, Any] = {"application_name": application[:63]}
    if "connect_timeout" not in parts:
        kw["connect_timeout"] = CONNECT_TIMEOUT
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, **kw)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(_connect_message(dsn, exc)) from None
    if read_only:
        conn.read_only = True
    return conn


def _connect_message(dsn: str, exc: Exception) -> str:
    said = _first_line(exc)
    hint = "is the server running and reachable?"
    low = said.lower()
    if "password" in low or "authentication" in low:
        hint = "check the user name and password in the connection string"
    elif "does not exist" in low and "database" in low:
        hint = "create the database first (createdb), or name an existing one"
    elif "role" in low and "does not exist" in low:
        hint = "name a user (role) that exists on that server"
    return f"cannot connect to {describe(dsn)}: {said} ({hint})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if "failed:" in line:  # libpq: "connection to server on socket ... failed: why"
            line = line.rsplit("failed:", 1)[1].strip()
        if line:
            return line
    return type(exc).__name__


@contextmanager
def pg_errors(dsn: str, doing: str) -> Iterator[None]:
    """Turn psycopg's exceptions raised while `doing` something into ledger errors."""
    try:
        yield
    except LedgerError:
        raise
    except pg_err.ReadOnlySqlTransaction:
        raise StoreError(f"{describe(dsn)} is read-only (a standby, or "
                         f"default_transaction_read_only is on) while {doing}; point the "
                         "replicator at the primary") from None
    except pg_err.InsufficientPrivilege as exc:
        raise StoreError(f"{describe(dsn)} refused {doing}: {_first_line(exc)} (grant the "
                         "user CREATE on the database, or use the owner)") from None
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise StoreUnavailable(f"lost the connection to {describe(dsn)} while {doing}: "
                               f"{_first_line(exc)}; nothing of an unfinished transaction "
                               "is visible, run the command again to resume") from None
    except psycopg.Error as exc:
        raise StoreError(f"{describe(dsn)} failed while {doing}: {_first_line(exc)}") from None
