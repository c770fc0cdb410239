"""`ledgerctl serve --store postgresql://...`: the HTTP API served from a replica answers
every route as the API served from the ledger's data directory does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.serving import serving
from tests.demo_chain import BRANCH, demo_ledger, logs_configured  # noqa: F401
from tests.pg import replica_of
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres
Demo = tuple[Path, dict[str, Any]]

#: (route, query parameters, the status both must answer): every route, on the chain and
#: on the archived branch, and refusals.
ROUTES: list[tuple[str, dict[str, Any], int]] = [
    ("/v1/height", {}, 200),
    ("/v1/accounts/u00012", {}, 200),
    ("/v1/accounts/u00183", {"at_height": 100, "branch": BRANCH}, 200),
    ("/v1/fills", {"account": "u00012", "limit": 50}, 200),
    ("/v1/fills", {"account": "u00012", "branch": BRANCH, "limit": 50, "page": 2}, 200),
    ("/v1/funding/PAXG-PERP", {"branch": BRANCH, "limit": 1000}, 200),
    ("/v1/funding/BTC-PERP", {"from_height": 90, "to_height": 103}, 200),
    ("/v1/liquidations", {"branch": BRANCH}, 200),
    ("/v1/events", {"type": "Liquidated", "branch": BRANCH, "limit": 20}, 200),
    ("/v1/events", {"account": "LIQ_VAULT", "limit": 100}, 200),
    ("/v1/branches", {}, 200),
    ("/v1/journal", {}, 200),
    ("/v1/snapshots", {}, 200),
    ("/v1/accounts/nobody", {}, 404),
    ("/v1/accounts/u00012", {"branch": 9}, 400),
]


@pytest.fixture(scope="module")
def servers(demo_ledger: Demo, pg_cluster: PgCluster  # noqa: F811
            ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    dsn = replica_of(pg_cluster, demo_ledger[0])
    with serving("--data", str(demo_ledger[0])) as ledger, serving("--store", dsn) as replica:
        yield ledger, replica


@pytest.mark.parametrize(("route", "params", "status"), ROUTES,
                         ids=[f"{r} {sorted(p.items())}" for r, p, _ in ROUTES])
def test_the_replica_serves_what_the_ledger_serves(
        servers: tuple[dict[str, Any], dict[str, Any]], route: str,
        params: dict[str, Any], status: int) -> None:
    ledger, replica = (s["client"].get(route, params=params) for s in servers)
    assert (ledger.status_code, replica.status_code) == (status, status), \
        (ledger.text, replica.text)
    assert replica.json() == ledger.json() and replica.json()
