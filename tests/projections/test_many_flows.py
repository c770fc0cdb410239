"""A rollback that carries 10,000 external flows, then every audit query and a full rebuild.

The fixed-width bug class (issue 10, item 7): a statement line's index within
its event was a u8, so the 256th flow a `RolledBack` carried broke every audit
query and `rebuild --from genesis`, while `verify` still passed. Every query
runs through the real `ledgerctl` here, so a traceback anywhere fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from projections.recovery import execute_recovery, plan_rollback

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 100
DEPOSITS_EACH = 100  # 10,000 flows in one block
AMOUNT = 1_000_000


def _cli(*args: str) -> Any:
    r = subprocess.run([sys.executable, "-m", "tools.cli", *args, "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (args, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout) if r.stdout.strip().startswith(("{", "[")) else r.stdout


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flows") / "ledger"
    accts = [f"u{i:03d}" for i in range(ACCOUNTS)]
    with Sequencer.create(path, chain_id="flows", listings=DEMO_MARKETS,
                          config={"snapshot_every": 0}) as seq:
        seq.submit([c.CreateAccount(a) for a in accts])
        seq.snapshot()
        target = seq.store.head.height
        seq.submit([c.Deposit(a, AMOUNT, f"bank-{a}-{k}")
                    for k in range(DEPOSITS_EACH) for a in accts])
        plan = plan_rollback(seq.store, target)
        assert len(plan.rollback.flows) == ACCOUNTS * DEPOSITS_EACH
        execute_recovery(seq, plan, reason="many flows", operator="tests")
    return path


def test_the_recovery_block_carries_every_flow(rolled_back: Path) -> None:
    with ChainStore.open(rolled_back) as store:
        assert verify_store(store).ok
        (rb,) = store.events_by(type_code=o.RolledBack.TYPE_CODE)
        assert len(rb.event.flows) == ACCOUNTS * DEPOSITS_EACH


def test_every_audit_query_answers_after_a_10000_flow_rollback(rolled_back: Path) -> None:
    data = ["--data", str(rolled_back)]
    acct = _cli("audit", "account", "u042", *data)
    carried = [ln for ln in acct["statement"]["lines"] if ln["kind"] == "carried_forward"]
    assert len(carried) == DEPOSITS_EACH
    assert acct["statement"]["closing_balance_qq"] == AMOUNT * DEPOSITS_EACH
    assert [ln["balance_qq"] for ln in carried] == [
        AMOUNT * (k + 1) for k in range(DEPOSITS_EACH)]
    assert _cli("audit", "fills", *data) is not None
    assert _cli("audit", "funding", "--market", "BTC-PERP", *data) is not None
    assert _cli("audit", "liquidations", *data) is not None
    events = _cli("audit", "events", "--type", "RolledBack", *data)
    assert len(events["events"]) == 1
    state = _cli("audit", "state", *data)
    assert state["height"] == 2  # genesis, accounts (the snapshot), recovery
    branch = _cli("audit", "account", "u042", "--branch", "1", *data)
    assert branch["statement"]["closing_balance_qq"] == AMOUNT * DEPOSITS_EACH
    csv_out = subprocess.run(
        [sys.executable, "-m", "tools.cli", "audit", "export", "--format", "csv", "statement",
         *data], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert csv_out.returncode == 0, csv_out.stderr[-2000:]
    # header + one carried line per flow (the creations move no balance)
    assert len(csv_out.stdout.strip().splitlines()) == 1 + ACCOUNTS * DEPOSITS_EACH


def test_rebuild_from_genesis_after_a_10000_flow_rollback(rolled_back: Path) -> None:
    report = _cli("rebuild", "--from", "genesis", "--data", str(rolled_back))
    assert report["match"] is True
    acct = _cli("audit", "account", "u007", "--data", str(rolled_back))
    assert acct["statement"]["closing_balance_qq"] == AMOUNT * DEPOSITS_EACH
