"""PostgreSQL fixtures: a private cluster per test session, a fresh database per test.

The cluster is the system's PostgreSQL started as a user would
(`tools.pgcluster`: initdb and pg_ctl in a temporary directory, a unix socket
only, run as the `postgres` user when the tests run as root) and stopped at
the end of the session. Tests using it carry `@pytest.mark.needs_postgres`:
they skip where the binaries are missing, and CI fails if they skipped.

fsync is off: the tests crash processes (the replicator, the server), never
the machine, and a crashed server loses nothing it acknowledged without it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.pgcluster import PgCluster, find_bindir

FAST = {"fsync": "off", "full_page_writes": "off"}
_names = itertools.count(1)
_replicas: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's private PostgreSQL server (skips where PostgreSQL is not installed)."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = PgCluster.create(settings=FAST)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> str:
    """A fresh, empty database on the session's server."""
    return pg_cluster.create_database(f"t{next(_names)}")


def replica_of(cluster: PgCluster, chain: Path) -> str:
    """A database the replicator fed from `chain` (once per session per chain)."""
    from ledger.store.chain import ChainStore
    from projections.replicator import replicate

    key = (cluster.dsn(), str(chain))
    if key not in _replicas:
        dsn = cluster.create_database(f"r{next(_names)}")
        with ChainStore.open(chain) as store:
            replicate(store, dsn)
        _replicas[key] = dsn
    return _replicas[key]
