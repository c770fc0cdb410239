"""The block replicator against a real PostgreSQL: equality, rollbacks, faults, verify.

Every test feeds a fresh database of the session's private cluster from a
real chain (the sequencer and the simulator's workload) and checks the
replica against the LMDB system of record.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ledger.errors import CommandInvalid, IntegrityError, LedgerLocked, StoreError
from ledger.store.chain import ChainStore
from ledger.store.pg.chain import PgChain
from ledger.store.pg.schema import SCHEMA_VERSION, SchemaTooNew, migrate
from projections.audit import Auditor
from projections.replicator import Replicator, replicate
from projections.verification import verify
from tests.projections.chains import ChainWriter
from tests.projections.replica_checks import assert_replica_equals_chain, reader_view
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres
ROOT = Path(__file__).resolve().parents[2]


def _run_to(store: ChainStore, dsn: str, height: int) -> None:
    """Replicate until the replica's head is `height`, then stop (one block per
    transaction, so the stop lands exactly there)."""
    with Replicator(store, dsn, group_blocks=1) as rep:
        rep.run(stop=lambda: rep.tracking.height >= height)
        assert rep.tracking.height == height


def test_a_replica_is_the_chain_and_a_second_run_adds_nothing(chain: Path,
                                                              pg_dsn: str) -> None:
    with ChainStore.open(chain) as store:
        first = replicate(store, pg_dsn)
        again = replicate(store, pg_dsn)
        assert first.blocks == store.head.height + 1 and first.events == store.head.seq
    assert again.blocks == 0 and again.events == 0
    assert_replica_equals_chain(chain, pg_dsn)
    reader_view(pg_dsn)


@pytest.mark.parametrize("behind", ["at_head", "inside_branch", "below_base"])
def test_a_rollback_is_mirrored_under_the_same_branch_id(chain: Path, pg_dsn: str,
                                                         behind: str) -> None:
    """The replicator caught up to the head, half-way through what becomes the branch, or
    below its base: in each case the replica ends with the chain's branch 1 and the new
    chain, verify passes on both stores, and the answers are the chain's."""
    stop_at = {"at_head": 61, "inside_branch": 55, "below_base": 35}[behind]
    with ChainStore.open(chain) as store:
        _run_to(store, pg_dsn, stop_at)
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        assert w.rollback(50) == 1
        w.append(8)
    views: list[dict[str, Any]] = []
    done = threading.Event()

    def watch() -> None:  # a reader polling while the rollback is mirrored
        while not done.is_set():
            views.append(reader_view(pg_dsn))

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        with ChainStore.open(chain) as store:
            report = replicate(store, pg_dsn)
    finally:
        done.set()
        reader.join()
    assert report.branches_mirrored == [1]
    assert views, "the reader saw the replica"
    assert_replica_equals_chain(chain, pg_dsn)
    with PgChain.open(pg_dsn) as pg:
        rec = pg.branch(1)
        assert (rec["base_height"], rec["last_height"]) == (50, 61)


def test_two_rollbacks_the_second_below_the_first_are_mirrored_in_order(
        chain: Path, pg_dsn: str) -> None:
    """The replica was at 40 when the chain rolled back to 50 and then to 30: blocks 41..50
    of the first lineage now live in branch 2, and the replica finds them there."""
    with ChainStore.open(chain) as store:
        _run_to(store, pg_dsn, 40)
    with ChainWriter.open(chain, seed=21, accounts=40) as w:
        assert w.rollback(50) == 1
        w.append(5)
        assert w.rollback(30, ref_prefix="c") == 2
        w.append(5)
    with ChainStore.open(chain) as store:
        report = replicate(store, pg_dsn)
    assert report.branches_mirrored == [1, 2]
    assert_replica_equals_chain(chain, pg_dsn)


def test_a_replica_of_another_chain_is_refused(chain: Path, pg_dsn: str,
                                               tmp_path: Path) -> None:
    other = tmp_path / "other"
    with ChainWriter.create(other, seed=3, accounts=10) as w:
        w.append(3)
    with ChainStore.open(chain) as store:
        replicate(store, pg_dsn)
    # Same chain id and genesis (same listings), different history: refused at the head.
    with ChainStore.open(other) as store, pytest.raises(IntegrityError, match="another copy"):
        replicate(store, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE perpledger.meta SET value = '\"another-chain\"' WHERE key = "
                     "'chain_id'")
    with ChainStore.open(chain) as store, pytest.raises(IntegrityError, match="another-chain"):
        replicate(store, pg_dsn)


def test_schema_migrates_from_an_older_version_and_refuses_a_newer_one(
        chain: Path, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert migrate(conn, pg_dsn, to=1) == [1]
    with ChainStore.open(chain) as store:
        replicate(store, pg_dsn)  # migrates 1 -> latest first
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        got = [r[0] for r in conn.execute("SELECT version FROM perpledger.schema_version "
                                          "ORDER BY version").fetchall()]
        assert got == list(range(1, SCHEMA_VERSION + 1))
        conn.execute("INSERT INTO perpledger.schema_version (version, description) VALUES "
                     "(%s, 'from the future')", (SCHEMA_VERSION + 1,))
    with ChainStore.open(chain) as store, pytest.raises(SchemaTooNew, match="newer"):
        replicate(store, pg_dsn)
    with pytest.raises(SchemaTooNew, match="upgrade perpledger"):
        Auditor.open(pg_dsn)


def test_a_read_only_target_is_refused_and_nothing_is_written(chain: Path,
                                                              pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        db = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'ALTER DATABASE "{db}" SET default_transaction_read_only = on')
    with ChainStore.open(chain) as store, pytest.raises(StoreError, match="read-only"):
        replicate(store, pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('perpledger.blocks')").fetchone() == (None,)


def test_a_second_replicator_on_the_same_target_is_refused(chain: Path, pg_dsn: str) -> None:
    with ChainStore.open(chain) as store:
        first = Replicator(store, pg_dsn)
        try:
            with pytest.raises(LedgerLocked, match="another replicator"):
                Replicator(store, pg_dsn)
        finally:
            first.close()
        replicate(store, pg_dsn)  # the lock went with the first one's connection


def test_wrong_dsn_credentials_and_database_are_clear_errors(
        chain: Path, pg_cluster: PgCluster) -> None:
    pg_cluster.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                    "'auditor') THEN CREATE ROLE auditor LOGIN PASSWORD 'right'; END IF; END $$")
    hba = pg_cluster.data / "pg_hba.conf"
    text = hba.read_text()
    if "auditor" not in text:  # password authentication for this one role
        hba.write_text("local all auditor scram-sha-256\n" + text)
        pg_cluster.psql("SELECT pg_reload_conf()")
    sock = f"host={pg_cluster.sockdir}&port={pg_cluster.port}"
    cases: list[tuple[str, type[Exception], str]] = [
        ("postgresql://x y", CommandInvalid, "not a PostgreSQL connection string"),
        (f"postgresql://auditor:wrong@/postgres?{sock}", StoreError, "password"),
        (f"postgresql://postgres@/no_such_db?{sock}", StoreError, "does not exist"),
        (f"postgresql://postgres@/postgres?host={pg_cluster.sockdir}&port=1", StoreError,
         "cannot connect"),
    ]
    with ChainStore.open(chain) as store:
        for dsn, exc, words in cases:
            with pytest.raises(exc, match=words) as info:
                replicate(store, dsn)
            assert "wrong" not in str(info.value)  # never the password


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_replicates_and_verify_names_the_first_bad_height(
        chain: Path, pg_cluster: PgCluster) -> None:
    dsn = pg_cluster.create_database("verify_src")
    out = _cli("replicate", "--to", dsn, "--data", str(chain), "--once", "--json")
    assert out.returncode == 0, out.stderr
    ok = _cli("verify", "--store", dsn, "--json")
    assert ok.returncode == 0 and '"ok": true' in ok.stdout
    with PgChain.open(dsn) as pg:
        victim = pg.block(42)
    tampers = [
        ("UPDATE perpledger.events SET data = overlay(data placing '\\x00'::bytea from 9) "
         "WHERE branch = 0 AND seq = %s", victim.first_seq + 3,
         "events hash|filter columns|decode"),
        ("UPDATE perpledger.events SET accounts = array['mallory'] WHERE branch = 0 AND "
         "seq = %s", victim.first_seq + 1, "filter columns"),
        ("DELETE FROM perpledger.index_chunks WHERE branch = 0 AND idx = 2 AND first_seq = %s",
         victim.first_seq, "index rows"),
        ("UPDATE perpledger.blocks SET time = time + 1 WHERE branch = 0 AND height = 42 AND "
         "%s > 0", 1, "header columns"),
    ]
    for i, (sql, arg, words) in enumerate(tampers):
        pg_cluster.psql(f'CREATE DATABASE "verify_{i}" TEMPLATE "verify_src"')
        copy = pg_cluster.dsn(f"verify_{i}")
        with psycopg.connect(copy, autocommit=True) as conn:
            conn.execute(sql, (arg,))
        if i == 0:  # the command an operator runs: exit code 3 and the height
            bad = _cli("verify", "--store", copy, "--json")
            assert bad.returncode == 3 and "Traceback" not in bad.stderr, bad.stderr
            doc = json.loads(bad.stdout)
        else:
            doc = verify(copy)
        assert not doc["ok"] and doc["height"] == 42, doc
        assert any(w in doc["reason"] for w in words.split("|")), doc


def test_cli_errors_are_one_line_without_traceback(chain: Path, pg_dsn: str) -> None:
    for args in (["replicate", "--data", str(chain), "--once"],
                 ["replicate", "--to", "postgresql://x y", "--data", str(chain), "--once"],
                 ["audit", "state", "--store", pg_dsn],
                 ["replicate", "--to", pg_dsn, "--data", str(chain), "--once",
                  "--group-events", "0"]):
        out = _cli(*args)
        assert out.returncode in (1, 2), out
        assert "error:" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_replicator_follows_appends_until_signalled(chain: Path, pg_dsn: str,
                                                    fresh_copy: Callable[[Path], Path]
                                                    ) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "replicate", "--to", pg_dsn,
                             "--data", str(chain), "--poll", "0.05", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        writer = subprocess.run([sys.executable, str(ROOT / "tests/projections/chains.py"),
                                 "append", str(chain), "10", "21"], capture_output=True,
                                text=True, timeout=120)
        assert writer.returncode == 0, writer.stderr
        with ChainStore.open(chain) as store:
            head = store.head.height
        for _ in range(600):
            if reader_view(pg_dsn)["height"] == head:
                break
            threading.Event().wait(0.05)
        assert reader_view(pg_dsn)["height"] == head
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert '"stopped_by_signal": true' in out
    assert_replica_equals_chain(chain, pg_dsn)
    shutil.rmtree(chain / "readmodels", ignore_errors=True)


def test_the_journal_from_an_id_on_either_store(branched_chain: Path, pg_dsn: str) -> None:
    with ChainStore.open(branched_chain) as store:
        replicate(store, pg_dsn)
        every = store.journal()
        assert len(every) >= 2
        with PgChain.open(pg_dsn) as pg:
            assert pg.journal() == every
            for k in range(len(every) + 2):
                assert store.journal(after=k) == every[k:] == pg.journal(after=k)
