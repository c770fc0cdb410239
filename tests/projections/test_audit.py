"""Audit answers checked against independent computations over the raw events and the engine.

The statement read model is folded from OUT events alone (it never runs the
engine), so comparing its balances with the engine's state at the same height
is a real cross-check; funding, fills and liquidations are recomputed here
from the raw event stream.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.exchange_state import state_at
from tests.projections.conftest import SIM

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw(sim_chain: Path) -> list[Any]:
    with ChainStore.open(sim_chain) as store:
        return store.events()


@pytest.fixture
def au(sim_chain: Path) -> Any:
    with Auditor.open(sim_chain) as a:
        yield a


def test_queries_work_while_the_sequencer_appends_in_another_process(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    writer = subprocess.Popen([sys.executable, str(ROOT / "tests/projections/chains.py"),
                               "append", str(path), "40", str(SIM["seed"])], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    rounds = 0
    try:
        while True:
            done = writer.poll() is not None
            with Auditor.open(path) as au:
                ck = au.as_of
                assert ck.height >= 0
                engine = state_at(au.store, ck.height)
                for acct in ("u00002", "u00007", "LIQ_VAULT"):
                    assert au.balance_at(acct, ck.height) == engine.balance(acct)
                doc = au.account("u00002", at_height=ck.height)
                assert doc["statement_balance_qq"] == doc["balance_qq"]
            rounds += 1
            if done:
                break
            time.sleep(0.05)
    finally:
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    appended = [int(line.split()[1]) for line in out.splitlines() if line.startswith("A ")]
    assert appended and rounds >= 2
    with Auditor.open(path) as au:
        assert au.as_of.height == appended[-1] == au.store.head.height
