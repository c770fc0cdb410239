"""Metrics read from a real ledger: replicator lag once a replicator records its position,
guard rejections on the guards-on demo."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ledger.store.chain import ChainStore
from projections.audit import Auditor
from tools.demo import run_demo
from tools.metrics import REPLICATOR_CHECKPOINT, Metrics


def _samples(au: Auditor) -> dict[str, float]:
    body, _ = Metrics(au).render()
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_replicator_lag_appears_when_a_replicator_records_its_position(tmp_path: Path) -> None:
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
    with ChainStore.open(data, write=True) as store:
        store.put_checkpoint(REPLICATOR_CHECKPOINT, {"height": head - 7, "replica": "pg-1"})
    with Auditor.open(data) as au:
        after = _samples(au)
    assert after["perpledger_replicator_lag_blocks{replica=pg-1}"] == 7
