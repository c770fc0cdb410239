"""The writer's block signatures travel with the blocks into the replica (schema 3).

An auditor who holds only the replica checks the chain's authority as the
ledger's own `verify` does: every block signed by an active writer key, every
operator command signed and journaled. A signature altered, swapped or dropped
in PostgreSQL fails `verify --store` at that block. A replica made before
schema 3 is backfilled from the ledger once, including blocks the ledger has
archived into a branch since.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from ledger.keys import WRITER_KEY_ENV, create_key
from ledger.store.chain import ChainStore
from ledger.store.pg.chain import PgChain
from projections.replicator import replicate
from projections.verification import verify
from tests.projections.chains import ChainWriter
from tests.projections.replica_checks import assert_replica_equals_chain
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres


def _sql(dsn: str, sql: str, *args: object) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql, args)


def _replicate(chain: Path, dsn: str) -> None:
    with ChainStore.open(chain) as store:
        replicate(store, dsn)


def test_the_replica_verifies_the_chains_authority_as_the_ledger_does(
        branched_chain: Path, pg_dsn: str) -> None:
    _replicate(branched_chain, pg_dsn)
    assert_replica_equals_chain(branched_chain, pg_dsn)
    for branch in (None, 1):
        on_ledger = verify(str(branched_chain), branch=branch)
        on_replica = verify(pg_dsn, branch=branch)
        assert on_ledger["ok"] and on_replica["ok"], on_replica
        assert on_replica["signatures"]["signed"]
        assert on_replica["signatures"] == on_ledger["signatures"]
    with PgChain.open(pg_dsn) as pg:
        top = pg.head.height
        sigs = pg.block_signatures(0, top)
    assert sorted(sigs) == list(range(top + 1))


@pytest.mark.parametrize(("tamper", "words"), [
    ("writer_sig = overlay(writer_sig placing '\\xff'::bytea from 5)", "does not verify"),
    ("writer_key = 'mallory'", "not an active writer key"),
    ("writer_key = NULL, writer_sig = NULL", "carries no writer signature"),
], ids=["altered", "another key", "dropped"])
def test_a_tampered_signature_fails_verify_at_its_block(
        chain: Path, pg_cluster: PgCluster, tamper: str, words: str) -> None:
    dsn = pg_cluster.create_database(f"sig_{abs(hash(tamper)) % 10**8}")
    _replicate(chain, dsn)
    _sql(dsn, f"UPDATE perpledger.blocks SET {tamper} WHERE branch = 0 AND height = 42")
    doc = verify(dsn)
    assert not doc["ok"] and doc["height"] == 42, doc
    assert words in doc["reason"], doc


def test_a_replica_from_before_signatures_is_backfilled_once(
        chain: Path, pg_dsn: str) -> None:
    _replicate(chain, pg_dsn)
    # As a replica made before schema 3 stands: no signature columns filled, no marker.
    _sql(pg_dsn, "UPDATE perpledger.blocks SET writer_key = NULL, writer_sig = NULL")
    _sql(pg_dsn, "DELETE FROM perpledger.meta WHERE key = 'block_signatures'")
    doc = verify(pg_dsn)
    assert not doc["ok"] and doc["height"] == 0 and "no writer signature" in doc["reason"]
    # Meanwhile the ledger rolls back: blocks the replica holds as canonical are now in
    # the ledger's branch 1, and must be found there.
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        assert w.rollback(50) == 1
        w.append(5)
    _replicate(chain, pg_dsn)
    assert verify(pg_dsn)["ok"]
    assert_replica_equals_chain(chain, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM perpledger.meta WHERE key = "
                           "'block_signatures'").fetchone()
    assert row is not None and row[0] is True


def test_an_auditors_trusted_writer_key_is_checked_on_the_replica(
        chain: Path, pg_dsn: str, tmp_path: Path) -> None:
    _replicate(chain, pg_dsn)
    writer_pub = f"{os.environ[WRITER_KEY_ENV]}.pub"  # the test session's writer key
    assert verify(pg_dsn, trust_keys=[writer_pub])["ok"]
    other = create_key(tmp_path / "someone-else.key")
    doc = verify(pg_dsn, trust_keys=[f"{other.path}.pub"])
    assert not doc["ok"] and doc["height"] == 0 and "trusted" in doc["reason"], doc
