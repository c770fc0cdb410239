"""The audit read models in a PostgreSQL replica: written by the replicator, read by the Auditor.

The replicator folds the same `AuditProjection` the LMDB runner folds and
writes what it staged (`encode_staged`, `write_encoded`) in the same
transaction as the block, so the replica's tables hold exactly the LMDB read
models' entries: the same
value bytes, under columns instead of byte keys. `PgAuditModels` answers the
Auditor's `AuditView` from them, inside the chain's pinned snapshot, so a
query sees one consistent state of chain and read models together.

A mirrored rollback moves the rows above the base to the branch's namespace
(`archive_models_above`): the canonical fold of those blocks from the state
at the base is exactly the branch's own fold, as LMDB's runner would build it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from psycopg import Cursor

from ledger.store.pg import copybin
from ledger.store.pg.chain import PgChain
from ledger.store.pg.schema import SCHEMA
from ledger.store.pg.writer import copy_rows
from projections.audit_models import (
    Staged,
    StatementLine,
    line_from,
    split_funding_key,
    split_liq_key,
)
from projections.audit_source import AuditView
from projections.checkpoints import Checkpoint
from projections.readmodels import ReadModels, unpack

T = TypeVar("T")

_STMT_COPY = (f"COPY {SCHEMA}.stmt_lines (ns, acct, height, seq, k, kind, delta_qq, "
              "balance_qq, mkt, value) FROM STDIN (FORMAT BINARY)")
_TICK_COPY = (f"COPY {SCHEMA}.funding_ticks (ns, mkt, height, seq, status, value) FROM STDIN "
              "(FORMAT BINARY)")
_LIQ_COPY = (f"COPY {SCHEMA}.liquidations (ns, height, seq, acct, value) FROM STDIN "
             "(FORMAT BINARY)")
# A statement line row's head (10 fields, ns), its (height, seq, k) and a length prefix.
_LINE_HEAD = struct.Struct(">hii").pack
_LINE_MID = struct.Struct(">iqiqiq").pack
_LEN = struct.Struct(">i").pack


class StagedRows(NamedTuple):
    """A fold's staged entries as binary COPY rows (no stream signature; the rows of a
    run of blocks are written in one COPY per table)."""

    lines: bytes
    ticks: bytes
    liqs: bytes


def encode_staged(staged: Staged, ns: int) -> StagedRows:
    """A fold's staged entries as binary COPY rows of namespace `ns`: statement lines
    (from the columns the fold kept, `AuditProjection(columns=True)`), funding ticks
    and liquidations (from their LMDB-layout keys)."""
    if staged.line_columns is None:
        raise ValueError("encode_staged needs a fold that keeps line columns "
                         "(AuditProjection(columns=True))")
    b = copybin
    text, numeric, length, mid = b.text, b.numeric, _LEN, _LINE_MID
    head = _LINE_HEAD(10, 4, ns)
    lines: list[bytes] = []
    for acct, height, seq, k, cols, packed in staged.line_columns:
        lines += (head, text(acct), mid(8, height, 8, seq, 8, k), text(cols[0]),
                  numeric(cols[1]), numeric(cols[2]), text(cols[3]), length(len(packed)),
                  packed)
    ticks = []
    for key, value in staged.ticks:
        t_ns, mkt, height, seq = split_funding_key(key)
        ticks.append(b.row(b.int4(t_ns), b.text(mkt), b.int8(height), b.int8(seq),
                           b.text(unpack(value)["status"]), b.raw(value)))
    liqs = []
    for key, value in staged.liqs:
        l_ns, height, seq = split_liq_key(key)
        liqs.append(b.row(b.int4(l_ns), b.int8(height), b.int8(seq),
                          b.text(unpack(value)["acct"]), b.raw(value)))
    return StagedRows(b"".join(lines), b"".join(ticks), b"".join(liqs))


def write_encoded(cur: Cursor[Any], encoded: Sequence[StagedRows]) -> None:
    """Write `encode_staged`'s rows of one or more blocks (inside the caller's
    transaction): one COPY per table."""
    copy_rows(cur, _STMT_COPY, [e.lines for e in encoded])
    copy_rows(cur, _TICK_COPY, [e.ticks for e in encoded])
    copy_rows(cur, _LIQ_COPY, [e.liqs for e in encoded])


def archive_models_above(cur: Cursor[Any], height: int, branch: int) -> dict[str, int]:
    """Move the canonical read-model rows above `height` to namespace `branch`, and drop
    the replicator's saved fold states there; row counts."""
    moved = {}
    for table in ("stmt_lines", "funding_ticks", "liquidations"):
        cur.execute(f"UPDATE {SCHEMA}.{table} SET ns = %s WHERE ns = 0 AND height > %s",
                    (branch, height))
        moved[table] = cur.rowcount
    cur.execute(f"DELETE FROM {SCHEMA}.fold_states WHERE height > %s", (height,))
    return moved


class PgAuditModels:
    """`AuditModels` over a replica's tables (read through the chain's connection)."""

    def __init__(self, chain: PgChain) -> None:
        self.chain = chain

    @property
    def readmodels(self) -> ReadModels | None:
        return None

    def read(self, fn: Callable[[AuditView], T]) -> T:
        with self.chain.pinned():
            return fn(_PgView(self.chain))

    def catch_up(self, *, progress: bool) -> None:
        """The replicator keeps these current: nothing to fold here."""

    def ensure_branch(self, branch: int) -> None:
        """A branch's rows were moved or written when its rollback was mirrored."""

    def close(self) -> None:
        """The chain owns the connection."""


class _PgView:
    """`AuditView` as SQL over one pinned snapshot."""

    def __init__(self, chain: PgChain) -> None:
        self._rows = chain._rows
        self._chain = chain

    def checkpoint(self) -> Checkpoint:
        head = self._chain.head
        return Checkpoint(head.height, head.hash, head.seq, head.seq)

    def lines(self, ns: int, acct: str, lo: int, hi: int) -> list[StatementLine]:
        rows = self._rows(f"SELECT height, seq, value FROM {SCHEMA}.stmt_lines WHERE ns = %s "
                          "AND acct = %s AND height BETWEEN %s AND %s ORDER BY height, seq, k",
                          (ns, acct, lo, hi))
        return [line_from(acct, int(h), int(s), bytes(v)) for h, s, v in rows]

    def balance_before(self, ns: int, acct: str, height: int,
                       canonical_below: int | None) -> int:
        spaces: Sequence[tuple[int, int]] = [(ns, height)]
        if canonical_below is not None:
            spaces = [(ns, height), (0, canonical_below)]
        for space, below in spaces:
            rows = self._rows(f"SELECT height, seq, value FROM {SCHEMA}.stmt_lines WHERE "
                              "ns = %s AND acct = %s AND height < %s ORDER BY height DESC, "
                              "seq DESC, k DESC LIMIT 1", (space, acct, below))
            if rows:
                h, s, v = rows[0]
                return line_from(acct, int(h), int(s), bytes(v)).balance_qq
        return 0

    def all_lines(self, ns: int, lo: int, hi: int) -> list[StatementLine]:
        rows = self._rows(f"SELECT acct, height, seq, value FROM {SCHEMA}.stmt_lines WHERE "
                          "ns = %s AND height BETWEEN %s AND %s", (ns, lo, hi))
        return [line_from(a, int(h), int(s), bytes(v)) for a, h, s, v in rows]

    def funding_ticks(self, ns: int, mkt: str, lo: int, hi: int) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT height, seq, value FROM {SCHEMA}.funding_ticks WHERE "
                          "ns = %s AND mkt = %s AND height BETWEEN %s AND %s ORDER BY height, "
                          "seq", (ns, mkt, lo, hi))
        return [{"height": int(h), "seq": int(s), **unpack(bytes(v))} for h, s, v in rows]

    def liquidations(self, ns: int, lo: int, hi: int) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT value FROM {SCHEMA}.liquidations WHERE ns = %s AND height "
                          "BETWEEN %s AND %s ORDER BY height, seq", (ns, lo, hi))
        return [unpack(bytes(v)) for (v,) in rows]


def open_pg_auditor_parts(dsn: str) -> tuple[PgChain, PgAuditModels]:
    """The replica's chain and its audit read models, sharing one read-only connection."""
    chain = PgChain.open(dsn)
    return chain, PgAuditModels(chain)
