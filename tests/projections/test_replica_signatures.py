"""The writer's block signatures travel with the blocks into the replica (schema 3).

An auditor who holds only the replica checks the chain's authority as the
ledger's own `verify` does: every block signed by an active writer key, every
operator command signed and journaled. A signature altered, swapped or dropped
in PostgreSQL fails `verify --store` at that block. A replica made before
schema 3 is backfilled from the ledger once, including blocks the ledger has
archived into a branch since. A replica that is behind verifies at every
height it stops at: journal records arrive with the blocks they name.
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from ledger.errors import StoreError
from ledger.keys import WRITER_KEY_ENV, create_key
from ledger.store.chain import ChainStore
from ledger.store.pg.chain import PgChain
from projections.replicator import Replicator, replicate
from projections.verification import verify
from tests.demo_chain import demo_ledger  # noqa: F401
from tests.projections.chains import ChainWriter
from tests.projections.replica_checks import assert_replica_equals_chain

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
    # One bit of the signature flipped, whatever the (per-session) key made it.
    ("writer_sig = set_byte(writer_sig, 4, get_byte(writer_sig, 4) # 1)", "does not verify"),
    ("writer_key = 'mallory'", "not an active writer key"),
    ("writer_key = NULL, writer_sig = NULL", "carries no writer signature"),
], ids=["altered", "another key", "dropped"])
def test_a_tampered_signature_fails_verify_at_its_block(
        chain: Path, pg_dsn: str, tamper: str, words: str) -> None:
    _replicate(chain, pg_dsn)
    _sql(pg_dsn, f"UPDATE perpledger.blocks SET {tamper} WHERE branch = 0 AND height = 42")
    doc = verify(pg_dsn)
    assert not doc["ok"] and doc["height"] == 42, doc
    assert words in doc["reason"], doc


def test_a_replica_from_before_signatures_is_migrated_and_backfilled_once(
        chain: Path, pg_dsn: str) -> None:
    _replicate(chain, pg_dsn)
    _as_schema_2(pg_dsn)
    with pytest.raises(StoreError, match="schema version 2.*run `ledgerctl replicate` once"):
        PgChain.open(pg_dsn).close()
    # Meanwhile the ledger rolls back: blocks the replica holds as canonical are now in
    # the ledger's branch 1, and must be found there.
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        assert w.rollback(50) == 1
        w.append(5)
    _replicate(chain, pg_dsn)  # migrates to 3, backfills, mirrors the rollback, goes on
    assert verify(pg_dsn)["ok"]
    assert_replica_equals_chain(chain, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT value FROM perpledger.meta WHERE key = "
                           "'block_signatures'").fetchone()
    assert row is not None and row[0] is True
    # Once: a signature lost afterwards is not quietly copied again; verify names it.
    _sql(pg_dsn, "UPDATE perpledger.blocks SET writer_key = NULL, writer_sig = NULL WHERE "
         "branch = 0 AND height = 7")
    _replicate(chain, pg_dsn)
    doc = verify(pg_dsn)
    assert not doc["ok"] and doc["height"] == 7 and "no writer signature" in doc["reason"]


def _as_schema_2(dsn: str) -> None:
    """Make a replica what schema 2 wrote: no signature columns, no migration 3, no marker."""
    _sql(dsn, "ALTER TABLE perpledger.blocks DROP COLUMN writer_key, DROP COLUMN writer_sig")
    _sql(dsn, "DELETE FROM perpledger.schema_version WHERE version = 3")
    _sql(dsn, "DELETE FROM perpledger.meta WHERE key = 'block_signatures'")


def test_the_backfill_signs_a_mirrored_branch_too(branched_chain: Path, pg_dsn: str) -> None:
    _replicate(branched_chain, pg_dsn)
    _as_schema_2(pg_dsn)
    _replicate(branched_chain, pg_dsn)
    for branch in (None, 1):
        doc = verify(pg_dsn, branch=branch)
        assert doc["ok"] and doc["signatures"]["signed"], doc
    assert_replica_equals_chain(branched_chain, pg_dsn)


def test_an_auditors_trusted_writer_key_is_checked_on_the_replica(
        chain: Path, pg_dsn: str, tmp_path: Path) -> None:
    _replicate(chain, pg_dsn)
    writer_pub = f"{os.environ[WRITER_KEY_ENV]}.pub"  # the test session's writer key
    assert verify(pg_dsn, trust_keys=[writer_pub])["ok"]
    other = create_key(tmp_path / "someone-else.key")
    doc = verify(pg_dsn, trust_keys=[f"{other.path}.pub"])
    assert not doc["ok"] and doc["height"] == 0 and "trusted" in doc["reason"], doc


def test_a_replica_behind_the_ledger_verifies_wherever_it_stops(
        demo_ledger: tuple[Path, dict[str, object]], pg_dsn: str) -> None:  # noqa: F811
    """The demo's journal names blocks 101..103 (recovery, refunds, mode); its branch 1
    is mirrored after height 100. Each stop is a state an auditor's standby can be in."""
    seen = []
    with ChainStore.open(demo_ledger[0]) as store:
        journal = store.journal()
        for stop_at in (0, 3, 60, 100, 101, 102, 103):
            with Replicator(store, pg_dsn, group_blocks=1) as rep:
                rep.run(stop=lambda r=rep, h=stop_at: r.tracking.height >= h)
            doc = verify(pg_dsn)
            assert doc["ok"], (stop_at, doc)
            with PgChain.open(pg_dsn) as pg:
                held = pg.journal()
                seen.append((stop_at, len(held), len(pg.branches())))
            assert held == [r for r in journal if r["head_height"] <= stop_at]
    assert seen[-1] == (103, len(journal), 1) and len(journal) == 3
