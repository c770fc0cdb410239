"""A rollback SIGKILLed at random moments leaves the old chain or the new one, and verifies."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.events import outcomes as o
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from tools.simulate import make_workload, open_or_create, run

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, bytes, int]:
    path = tmp_path_factory.mktemp("rb") / "base"
    wl = make_workload(seed=5, accounts=60, inject=[])
    with open_or_create(path, guards=True, snapshot_every=10) as seq:
        run(seq, wl, 45)
        head = seq.store.head
    return path, 30, head.hash, head.height


def _state(path: Path) -> tuple[int, bytes, int]:
    with ChainStore.open(path) as store:
        head = store.head
        return head.height, head.hash, len(store.branches())


def test_killed_rollbacks_leave_old_or_new_chain(chain: tuple[Path, int, bytes, int],
                                                 tmp_path: Path) -> None:
    base, target, old_hash, old_height = chain
    rng = random.Random(20260119)
    outcomes = {"old": 0, "new": 0}
    for i in range(KILLS):
        work = tmp_path / f"try{i}"
        shutil.copytree(base, work)
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests/ops/rollback_worker.py"),
                                 str(work), str(target)], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0.0, 0.12))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        with ChainStore.open(work) as store:
            report = verify_store(store)
            assert report.ok, f"kill {i}: {report}"
            head = store.head
            branches = store.branches()
            if head.hash == old_hash:
                assert head.height == old_height and branches == []
                outcomes["old"] += 1
            else:
                # The new chain: target + its recovery block, one archived branch.
                assert head.height == target + 1, f"kill {i}: head {head.height}"
                assert len(branches) == 1
                assert verify_store(store, branch=branches[0]["branch"]).ok
                first = store.events(target + 1, target + 1)
                assert any(isinstance(e.event, o.RolledBack) for e in first)
                outcomes["new"] += 1
        # Either way the sequencer's restart protocol accepts the store.
        with Sequencer.open(work):
            pass
        shutil.rmtree(work)
    assert sum(outcomes.values()) == KILLS
