"""Restart soak, the incident's own failure class: SIGKILL the writer anywhere, restart it.

Each round kills, at a random moment, a real `ledgerctl` process running
`simulate`, `snapshot`, `rollback --execute`, `refunds issue --execute` and
`rebuild`. While it runs, a reader polls the head; what it saw committed is
"acknowledged". After each kill: the chain verifies; every acknowledged block
is still there (on the canonical chain, or in the branch a completed rollback
archived it to); no refund was paid twice; the restart protocol resumes on a
match (and refuses a forged copy, naming the height); the killed job, run
again, completes. One round runs by default; `test_restart_soak_long` (marked
slow: `pytest -m slow tests/ops/test_restart_soak.py`) runs twelve.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger.errors import VerificationFailed
from ledger.events import outcomes as o
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from ledger.store.reader import where_is_block
from tests.ops.test_restart import _rewrite

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


class Soak:
    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.acked: dict[int, bytes] = {}
        self.kills = 0

    def _poll(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with ChainStore.open(self.path) as store:
                head = store.head
            self.acked[head.height] = head.hash
            time.sleep(0.02)

    def kill_during(self, *args: str, lo: float, hi: float) -> None:
        """Run `ledgerctl ARGS`, SIGKILL it after a random delay, then check everything."""
        stop = threading.Event()
        poller = threading.Thread(target=self._poll, args=(stop,))
        poller.start()
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", *args, "--data",
                                 str(self.path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(self.rng.uniform(lo, hi))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        stop.set()
        poller.join()
        assert b"Traceback" not in err
        self.kills += 1
        self.check()

    def check(self) -> None:
        with ChainStore.open(self.path) as store:
            report = verify_store(store)
            assert report.ok, report
            for b in store.branches():
                assert verify_store(store, branch=b["branch"]).ok
            for height, block_hash in self.acked.items():
                assert self._holds(store, height, block_hash), (height, block_hash.hex())
            self._refunds_paid_once(store)
        # The restart protocol resumes on a match (and the writer lock is free).
        Sequencer.open(self.path).close()

    @staticmethod
    def _holds(store: ChainStore, height: int, block_hash: bytes) -> bool:
        return where_is_block(store, height, block_hash) is not False

    @staticmethod
    def _refunds_paid_once(store: ChainStore) -> None:
        from projections.refunds import plan_refunds, refund_ref

        for b in store.branches():
            paid: dict[str, int] = {}
            for env in store.events_by(type_code=o.RefundIssued.TYPE_CODE):
                if env.event.ref == refund_ref(int(b["branch"])):
                    paid[env.event.acct] = paid.get(env.event.acct, 0) + env.event.amount_qq
            if not paid:
                continue
            owed = {ln.acct: ln.amount_qq for ln in plan_refunds(store, int(b["branch"])).lines}
            for acct, amount in paid.items():
                assert amount <= owed.get(acct, 0), (acct, amount, owed.get(acct))

    def refuses_a_forged_copy(self, tmp: Path) -> None:
        copy = tmp / f"forged{self.kills}"
        shutil.copytree(self.path, copy)
        with ChainStore.open(copy, write=True) as store:
            height = store.head.height
            _rewrite(store, height)
        with pytest.raises(VerificationFailed) as err:
            Sequencer.open(copy)
        assert err.value.height == height
        shutil.rmtree(copy)


def _round(s: Soak, tmp: Path, seed: int) -> None:
    s.kill_during("simulate", "--blocks", "40", "--accounts", "80", "--seed", str(seed),
                  lo=0.5, hi=2.5)
    assert _cli("simulate", "--data", str(s.path), "--blocks", "25", "--accounts", "80",
                "--seed", str(seed + 100)).returncode == 0
    s.kill_during("snapshot", lo=0.2, hi=1.0)
    with ChainStore.open(s.path) as store:
        head = store.head.height
        targets = [x.height for x in store.snapshots() if x.height < head]
    with ChainStore.open(s.path) as store:
        before = len(store.branches())
    rollback = ("rollback", "--to-height", str(targets[-1]), "--execute", "--reason", "soak",
                "--operator", "soak")
    s.kill_during(*rollback, lo=0.4, hi=1.8)
    with ChainStore.open(s.path) as store:
        branches = [int(b["branch"]) for b in store.branches()]
    if len(branches) == before:  # killed before it committed: run it again, to the end
        r = _cli(*rollback, "--data", str(s.path))
        assert r.returncode == 0, r.stderr
        s.check()
        with ChainStore.open(s.path) as store:
            branches = [int(b["branch"]) for b in store.branches()]
    if branches:
        s.kill_during("refunds", "issue", "--branch", str(branches[-1]), "--execute",
                      "--operator", "soak", lo=0.5, hi=2.5)
        r = _cli("refunds", "issue", "--branch", str(branches[-1]), "--execute", "--operator",
                 "soak", "--data", str(s.path))
        assert r.returncode == 0, r.stderr
        s.check()
    s.kill_during("rebuild", "--from", "genesis", lo=0.4, hi=2.0)
    r = _cli("rebuild", "--from", "genesis", "--data", str(s.path), "--json")
    assert r.returncode == 0, r.stderr
    s.refuses_a_forged_copy(tmp)


def _soak(tmp_path: Path, rounds: int, seed: int) -> Soak:
    path = tmp_path / "ledger"
    assert _cli("init", "--data", str(path), "--guards", "off",
                "--snapshot-every", "10").returncode == 0
    s = Soak(path, random.Random(seed))
    for i in range(rounds):
        _round(s, tmp_path, seed * 1000 + i)
    return s


def test_restart_soak(tmp_path: Path) -> None:
    s = _soak(tmp_path, rounds=1, seed=3)
    assert s.kills == 5 and s.acked


@pytest.mark.slow
def test_restart_soak_long(tmp_path: Path) -> None:
    s = _soak(tmp_path, rounds=12, seed=4)
    assert s.kills == 60
