"""Metrics read from a real ledger: guard rejections on the guards-on demo, and the lag of a
real replica fed by the replicator (a private PostgreSQL cluster)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.replicator import replicate
from tests.pg import pg_cluster, pg_dsn  # noqa: F401
from tools.demo import run_demo
from tools.metrics import Metrics, replica_positions_from


def _samples(au: Auditor, targets: tuple[str, ...] = ()) -> dict[str, float]:
    body, _ = Metrics(au, replicas=replica_positions_from(targets)).render()
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.mark.needs_postgres
def test_replicator_lag_is_the_blocks_a_real_replica_is_behind(tmp_path: Path,
                                                               pg_dsn: str,  # noqa: F811
                                                               ) -> None:
    data = tmp_path / "demo"
    run_demo(data, guards=True, accounts=60, seed=7, normal_blocks=40, bad_blocks=4)
    with Auditor.open(data) as au:
        before = _samples(au)
        head = au.store.head.height
    assert not any(k.startswith("perpledger_replicator_lag_blocks") for k in before)
    # guards on: both zeroed ticks refused, and the markets halted by guard G1
    rejected = {k: v for k, v in before.items()
                if k.startswith("perpledger_guard_rejections_total")}
    assert sum(v for k, v in rejected.items() if "guard=funding:" in k) == 2
    assert before["perpledger_market_mode{market=PAXG-PERP,perpledger_market_mode=OK}"] == 0
    with ChainStore.open(data) as store:
        replicate(store, pg_dsn)
    with Sequencer.open(data) as seq:  # the chain moves on: 7 blocks the replica lacks
        for _ in range(7):
            seq.submit([])
    with Auditor.open(data) as au:
        after = _samples(au, (pg_dsn,))
    (lag,) = [v for k, v in after.items() if k.startswith("perpledger_replicator_lag_blocks")]
    assert lag == 7 and head + 7 == after["perpledger_head_height"]
