"""The replicator's binary COPY encoder, read back by a real PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from ledger.store.pg import copybin as b
from ledger.store.pg.writer import copy_rows

pytestmark = pytest.mark.needs_postgres

NUMBERS = [0, 1, -1, 9999, 10_000, -10_000, 123_456_789, 10**40, -(10**40) - 7,
           2**63 - 1, -(2**63), 5 * 10**18, 100_000_000]
ARRAYS = [(), ("u00001",), ("alice", "bob", "ünïcödé"), ("",)]


def test_values_encoded_here_read_back_exactly(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (i int4, s smallint, q bigint, n numeric, a text[], "
                     "x text, r bytea)")
        rows = [b.row(b.int4(i), b.int2(i % 300 - 150), b.int8(-i * 10**12), b.numeric(n),
                      b.text_array(ARRAYS[i % len(ARRAYS)]),
                      b.text(None if i % 3 == 0 else f"t{i}"), b.raw(bytes([i]) * i))
                for i, n in enumerate(NUMBERS)]
        with conn.cursor() as cur:
            copy_rows(cur, "COPY t FROM STDIN (FORMAT BINARY)", rows)
        got = conn.execute("SELECT i, s, q, n, a, x, r FROM t ORDER BY i").fetchall()
    assert [int(r[3]) for r in got] == NUMBERS
    assert all(r[3] == Decimal(n) for r, n in zip(got, NUMBERS, strict=True))
    for i, r in enumerate(got):
        assert (r[0], r[1], r[2]) == (i, i % 300 - 150, -i * 10**12)
        assert tuple(r[4]) == ARRAYS[i % len(ARRAYS)]
        assert r[5] == (None if i % 3 == 0 else f"t{i}") and bytes(r[6]) == bytes([i]) * i
