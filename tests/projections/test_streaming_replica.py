"""A primary and a streaming replica (`pg_basebackup -R`), fed while `simulate` appends.

The system's PostgreSQL runs a private primary and a hot standby made from it
with `pg_basebackup -R`, both on unix sockets in temporary directories. The
replicator follows the chain into the primary while `ledgerctl simulate`
appends; the auditors then query the standby through the Auditor, and every
answer equals the LMDB ledger's. `replicate status` reports both lags, and
the replicator refuses the standby as a target (it is read-only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import StoreError
from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.replicator import replicate
from tests.projections.replica_checks import reader_view
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tools.cli", *args]


@pytest.fixture(scope="module")
def primary_and_replica() -> Iterator[tuple[PgCluster, PgCluster]]:
    primary = PgCluster.create(settings={"fsync": "off"})
    replica = None
    try:
        primary.start()
        primary.create_database("audit")
        replica = primary.replica()
        replica.start()
        yield primary, replica
    finally:
        if replica is not None:
            replica.destroy()
        primary.destroy()


def _wait(pred: object, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_auditors_on_the_standby_see_what_lmdb_says_while_simulate_appends(
        primary_and_replica: tuple[PgCluster, PgCluster], tmp_path: Path) -> None:
    primary, replica = primary_and_replica
    data = tmp_path / "ledger"
    to, standby = primary.dsn("audit"), replica.dsn("audit")
    run = subprocess.run(_cli("init", "--data", str(data), "--snapshot-every", "10"),
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    follower = subprocess.Popen(_cli("replicate", "--to", to, "--data", str(data), "--poll",
                                     "0.05", "--json"), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        sim = subprocess.run(_cli("simulate", "--data", str(data), "--blocks", "80",
                                  "--accounts", "60", "--seed", "4"), cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert sim.returncode == 0, sim.stderr
        with ChainStore.open(data) as store:
            head = store.head
        # The standby replays what the replicator committed on the primary.
        assert _wait(lambda: reader_view(standby)["height"] == head.height)
        status = subprocess.run(_cli("replicate", "status", "--to", to, "--data", str(data),
                                     "--replica", standby, "--json"), cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["replicator_running"] and doc["lag_blocks"] == 0 and doc["lag_seconds"] == 0
        assert len(doc["standbys_seen_by_primary"]) == 1
        assert doc["standbys_seen_by_primary"][0]["state"] == "streaming"
        (mine,) = doc["replicas"]
        assert mine["standby"] and mine["lag_blocks"] == 0 and mine["replica_height"] == \
            head.height
        assert mine["replay_delay_s"] is not None and mine["replay_delay_s"] >= 0
    finally:
        follower.terminate()
        out, err = follower.communicate(timeout=60)
    assert follower.returncode == 0, err
    with Auditor.open(data) as want, Auditor.open(standby) as got:
        assert got.store.head == want.store.head
        accounts = ["LIQ_VAULT", "FEES"] + [f"u{i:05d}" for i in (1, 7, 19, 42)]
        for acct in accounts:
            assert got.account(acct) == want.account(acct), acct
            assert got.statement(acct, from_height=30) == want.statement(acct,
                                                                         from_height=30)
        assert got.fills(from_height=40, to_height=60) == want.fills(from_height=40,
                                                                     to_height=60)
        for mkt in ("BTC-PERP", "PAXG-PERP"):
            assert got.funding(mkt) == want.funding(mkt)
        assert got.liquidations() == want.liquidations()
        assert got.events(type_name="OrderRejected", limit=50) == want.events(
            type_name="OrderRejected", limit=50)
        assert got.state(at_height=55) == want.state(at_height=55)
    with ChainStore.open(data) as store, pytest.raises(StoreError, match="standby"):
        replicate(store, standby)
