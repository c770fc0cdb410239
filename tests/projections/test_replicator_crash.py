"""Crashes: the replicator SIGKILLed at random instants, the PostgreSQL server killed mid-block.

After every kill a reader's snapshot of the replica must be whole (heights
0..t linked, the tracking row naming block t, events exactly those blocks'
seqs, no read-model row above t): one transaction per block means a kill
loses the block in flight and nothing else. After the last kill the
replicator resumes and the replica equals the chain. The default run kills a
few times; the slow run kills at least 30 times while the writer appends.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.store.chain import ChainStore
from tests.projections.chains import ChainWriter
from tests.projections.replica_checks import assert_replica_equals_chain, reader_view
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres
ROOT = Path(__file__).resolve().parents[2]
SEED = 31


def _replicator(chain: Path, dsn: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tools.cli", "replicate", "--to", dsn,
                             "--data", str(chain), "--once", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _head(chain: Path) -> int:
    with ChainStore.open(chain) as store:
        return store.head.height


def kill_loop(chain: Path, dsn: str, kills: int, rng: random.Random, *,
              writer: subprocess.Popen[str] | None = None, budget_s: float = 600) -> int:
    """SIGKILL the replicator `kills` times, each after it committed at least one block;
    check the replica after each kill. Returns the kills that landed mid-run."""
    landed = 0
    deadline = time.monotonic() + budget_s
    while landed < kills and time.monotonic() < deadline:
        before = reader_view(dsn)["height"]
        if before >= _head(chain) and (writer is None or writer.poll() is not None):
            break  # caught up: the chain was too short for the kills asked
        proc = _replicator(chain, dsn)
        try:
            wait_until = time.monotonic() + 60
            while time.monotonic() < wait_until and proc.poll() is None:
                if reader_view(dsn)["height"] > before:
                    break
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.08))
            if proc.poll() is None:
                proc.kill()
                landed += 1
        finally:
            _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        reader_view(dsn)  # whole after the kill
    return landed


def _finish(chain: Path, dsn: str) -> None:
    proc = _replicator(chain, dsn)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_replica_equals_chain(chain, dsn)


@pytest.fixture(scope="module")
def long_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "ledger"
    with ChainWriter.create(path, seed=SEED, accounts=40, snapshot_every=10) as w:
        w.append(160)
    return path


def test_replicator_killed_at_random_instants_resumes_to_an_equal_replica(
        long_chain: Path, pg_dsn: str) -> None:
    rng = random.Random(7)
    landed = kill_loop(long_chain, pg_dsn, 4, rng)
    assert landed == 4
    _finish(long_chain, pg_dsn)


@pytest.mark.slow
def test_replicator_killed_30_times_while_the_writer_appends(
        tmp_path: Path, pg_dsn: str) -> None:
    chain = tmp_path / "ledger"
    with ChainWriter.create(chain, seed=SEED, accounts=40, snapshot_every=10) as w:
        w.append(400)
    writer = subprocess.Popen([sys.executable, str(ROOT / "tests/projections/chains.py"),
                               "append", str(chain), "150", str(SEED)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        landed = kill_loop(chain, pg_dsn, 32, random.Random(11), writer=writer,
                           budget_s=1200)
    finally:
        _, err = writer.communicate(timeout=600)
    assert writer.returncode == 0, err
    assert landed >= 30
    _finish(chain, pg_dsn)


def test_server_killed_mid_block_leaves_no_half_block_and_the_replicator_resumes(
        long_chain: Path) -> None:
    cluster = PgCluster.create(settings={"fsync": "off"})
    try:
        cluster.start()
        dsn = cluster.create_database("crash")
        proc = _replicator(long_chain, dsn)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if reader_view(dsn)["height"] >= 20:
                    break
                time.sleep(0.01)
            cluster.kill()  # SIGKILL the postmaster while the replicator writes
        finally:
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "error:" in err and "Traceback" not in err, err
        assert "nothing of an unfinished transaction is visible" in err or \
            "cannot connect" in err, err
        for _ in range(50):  # the old backends may take a moment to go
            try:
                cluster.start()
                break
            except Exception:
                time.sleep(0.2)
        seen = reader_view(dsn)
        assert 0 <= seen["height"] < _head(long_chain)
        _finish(long_chain, dsn)
    finally:
        cluster.destroy()
