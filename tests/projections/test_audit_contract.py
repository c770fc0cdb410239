"""The audit contract (`audit_contract.AuditContract`) run against each store."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from projections.audit import Auditor
from tests.pg import replica_of
from tests.projections.audit_contract import AuditContract
from tools.pgcluster import PgCluster


class TestAuditContractLmdb(AuditContract):
    """The LMDB ledger and its read models in `<data>/readmodels`."""

    def open_au(self, chain: Path) -> AbstractContextManager[Auditor]:
        return Auditor.open(chain)


@pytest.mark.needs_postgres
class TestAuditContractPostgres(AuditContract):
    """A PostgreSQL replica fed by the block replicator from the same chain."""

    @pytest.fixture(autouse=True)
    def _cluster(self, pg_cluster: PgCluster) -> None:
        self.cluster = pg_cluster

    def open_au(self, chain: Path) -> AbstractContextManager[Auditor]:
        return Auditor.open(replica_of(self.cluster, chain))
