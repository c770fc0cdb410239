"""Re-execution and rebuild on a real Dask cluster (`distributed.LocalCluster`).

The cluster's workers are separate processes that open the store themselves:
the data directory, or a PostgreSQL replica of it. A forged block is found at
its height exactly as the process pool finds it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.events import outcomes as o
from ledger.events.record import field_types
from ledger.store.chain import ChainStore
from projections.jobs import rebuild
from projections.readmodels import ReadModels
from projections.reexecute import reexecute
from tests.pg import replica_of
from tests.projections.tamper import forge_event
from tools.pgcluster import PgCluster

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of two worker processes on loopback; its tcp:// address."""
    import logging

    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None,
                           silence_logs=logging.ERROR)
    try:
        yield str(cluster.scheduler_address)
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def forged(sim_chain: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A copy of the simulated chain with one fill's fee forged, the hash chain redone and
    re-signed with the writer's key: only re-execution can find it."""
    import shutil

    path = tmp_path_factory.mktemp("forged") / "ledger"
    shutil.copytree(sim_chain, path, ignore=shutil.ignore_patterns("readmodels", "*.lock"))
    with ChainStore.open(path) as store:
        fill = next(e for e in store.events(120, None) if isinstance(e.event, o.Filled))
    ev = fill.event
    fields = {name: getattr(ev, name) for name, _ in field_types(type(ev))}
    forged = type(ev)(**{**fields, "taker_fee_qq": ev.taker_fee_qq + 1})
    return path, forge_event(path, fill.seq, forged, resign=True), fill.seq


def _same_finding(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert (a["ok"], a["height"], a["reason"]) == (b["ok"], b["height"], b["reason"])
    assert a["divergence"] == b["divergence"]


def test_a_dask_cluster_finds_a_forged_block_at_its_height_as_the_pool_does(
        forged: tuple[Path, int, int], scheduler: str) -> None:
    path, height, seq = forged
    with ChainStore.open(path) as store:
        pool = reexecute(store, jobs=2)
        dask = reexecute(store, scheduler=scheduler)
    assert not pool["ok"] and pool["height"] == height and pool["divergence"]["seq"] == seq
    _same_finding(dask, pool)
    assert dask["intervals"] == pool["intervals"] > 2 and dask["scheduler"] == scheduler


@pytest.mark.needs_postgres
def test_dask_workers_read_the_log_from_a_postgresql_replica(
        forged: tuple[Path, int, int], scheduler: str, pg_cluster: PgCluster) -> None:
    path, height, _ = forged
    dsn = replica_of(pg_cluster, path)
    with ChainStore.open(path) as store:
        pool = reexecute(store, jobs=2)
        remote = reexecute(store, scheduler=scheduler, worker_store=dsn)
    _same_finding(remote, pool)
    assert remote["height"] == height


def test_rebuild_on_dask_reaches_the_state_the_runner_does(
        sim_chain: Path, fresh_copy: Callable[[Path], Path], scheduler: str) -> None:
    local, remote = fresh_copy(sim_chain), fresh_copy(sim_chain)
    with ChainStore.open(local) as store, ReadModels.open(local) as rm:
        want = rebuild(store, rm, from_="genesis", parallel=False)
    with ChainStore.open(remote) as store, ReadModels.open(remote) as rm:
        got = rebuild(store, rm, from_="genesis", parallel=False, scheduler=scheduler)
    assert got["match"] and want["match"]
    assert (got["height"], got["state_hash"]) == (want["height"], want["state_hash"])
    assert got["exchange"]["intervals"] > 2 and got["exchange"]["scheduler"] == scheduler
    assert got["audit"]["height"] == want["audit"]["height"]


def test_cli_verify_reexecute_on_a_local_cluster_exits_3_at_the_forged_height(
        forged: tuple[Path, int, int]) -> None:
    path, height, _ = forged
    out = subprocess.run([sys.executable, "-m", "tools.cli", "verify", "--data", str(path),
                          "--reexecute", "--scheduler", "local", "--jobs", "2", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 3, out.stdout + out.stderr
    assert f'"height": {height}' in out.stdout and "taker_fee_qq" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "verify", "--data", str(path),
                          "--reexecute", "--scheduler", "udp://nowhere", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--scheduler must be" in bad.stderr
