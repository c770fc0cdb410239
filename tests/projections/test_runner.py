"""The projection runner: batches, checkpoints, resume after SIGKILL, rewind after rollback.

Real LMDB throughout: chains built by the real engine (or hand-built catalogue
events for store-level mechanics), read models in their own environment, the
killed jobs are real `ledgerctl rebuild` subprocesses.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import StoreError, VerificationFailed
from ledger.store.chain import ChainStore
from projections.audit_models import AuditProjection, decode_line
from projections.checkpoints import NOTHING, RunnerLock, get_checkpoint, saved_heights
from projections.exchange_state import ExchangeStateProjection
from projections.jobs import JOB_KEY, rebuild
from projections.readmodels import ReadModels, image
from projections.runner import Runner
from projections.worker import AuditWorker
from tests.projections.chains import ChainWriter, store_chain
from tests.projections.conftest import SIM, SIM_BLOCKS

ROOT = Path(__file__).resolve().parents[2]


def _run(path: Path, proj: Any, **kw: Any) -> Any:
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        return Runner(store, rm, **kw).run(proj)


def _image(path: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    with ReadModels.open(path) as rm:
        return image(rm)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


# -- store-level mechanics ------------------------------------------------------------------


def test_batch_size_does_not_change_what_a_run_writes(tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 60).close()
    store_chain(tmp_path / "b", 60).close()
    one = _run(tmp_path / "a", AuditProjection(), batch_events=10**6)
    many = _run(tmp_path / "b", AuditProjection(), batch_events=37)
    assert one.height == many.height == 60
    assert many.blocks == 61
    assert _image(tmp_path / "a") == _image(tmp_path / "b")


def test_a_run_stopped_at_a_height_resumes_to_the_same_read_models(tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 50).close()
    store_chain(tmp_path / "b", 50).close()
    _run(tmp_path / "a", AuditProjection())
    with ChainStore.open(tmp_path / "b") as store, ReadModels.open(tmp_path / "b") as rm:
        runner = Runner(store, rm, batch_events=100)
        first = runner.run(AuditProjection(), to_height=17)
        assert first.height == 17
        assert get_checkpoint(rm, "audit").hash == store.block(17).hash
        second = runner.run(AuditProjection())
        assert (second.start_height, second.height) == (17, 50)
        again = runner.run(AuditProjection())
        assert again.events == 0 and again.blocks == 0
    assert _image(tmp_path / "a") == _image(tmp_path / "b")


def test_statement_lines_sum_to_the_folded_balances(tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 40).close()
    proj = AuditProjection()
    _run(tmp_path / "a", proj)
    lines = [decode_line(k, v) for k, v in _image(tmp_path / "a")["stmt"]]
    by_acct: dict[str, list[Any]] = {}
    for ln in lines:
        by_acct.setdefault(ln.acct, []).append(ln)
    assert set(by_acct) == {a for a, b in proj.balances().items() if b or a in by_acct}
    for acct, acct_lines in by_acct.items():
        acct_lines.sort(key=lambda ln: (ln.height, ln.seq))
        running = 0
        for ln in acct_lines:
            running += ln.delta_qq
            assert ln.balance_qq == running, (acct, ln)
        assert running == proj.balances()[acct]


def test_a_corrupted_event_stops_the_run_at_its_height(tmp_path: Path) -> None:
    store = store_chain(tmp_path / "a", 20)
    hdr = store.block(12)
    key = (hdr.first_seq + 3).to_bytes(8, "big")
    env = store.shared_env.env
    with env.begin(write=True) as txn:
        data = bytearray(txn.get(key, db=store.dbs.events))
        data[-1] ^= 1
        txn.put(key, bytes(data), db=store.dbs.events)
    store.close()
    with pytest.raises(VerificationFailed) as err:
        _run(tmp_path / "a", AuditProjection())
    assert err.value.height == 12
    with ReadModels.open(tmp_path / "a") as rm:
        assert get_checkpoint(rm, "audit").height < 12


def test_second_runner_cannot_take_the_lock_while_one_runs(tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 5).close()
    with ReadModels.open(tmp_path / "a") as rm:
        held = RunnerLock(rm)
        assert held.acquire(wait=False)
        try:
            with ChainStore.open(tmp_path / "a") as store:
                assert not Runner(store, rm).lock(wait=False)
        finally:
            held.release()


def test_read_models_of_another_chain_are_dropped(tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 10).close()
    _run(tmp_path / "a", AuditProjection())
    os.rename(tmp_path / "a" / "readmodels", tmp_path / "rm-a")
    store_chain(tmp_path / "b", 10, seed=99).close()
    os.rename(tmp_path / "rm-a", tmp_path / "b" / "readmodels")
    res = _run(tmp_path / "b", AuditProjection())
    assert res.start_height == -1 and res.height == 10
    fresh = tmp_path / "c"
    store_chain(fresh, 10, seed=99).close()
    _run(fresh, AuditProjection())
    assert _image(tmp_path / "b") == _image(fresh)


# -- engine chains: rebuild jobs, SIGKILL, rollback -------------------------------------------


def test_rebuild_from_genesis_and_from_snapshot_reach_the_head_state_hash(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        head = store.head
        g = rebuild(store, rm, from_="genesis")
        assert g["match"] and g["height"] == head.height
        assert g["state_hash"] == store.block(head.height).state_hash.hex()
        assert g["exchange"]["start_height"] == -1
        s = rebuild(store, rm, from_="snapshot")
        assert s["match"] and s["state_hash"] == g["state_hash"]
        lower = rebuild(store, rm, from_="snapshot", to_height=55)
        assert lower["match"] and lower["height"] == 55
        assert lower["exchange"]["in_memory"]
        assert get_checkpoint(rm, "exchange").height == head.height


def _job_pending(path: Path) -> bool:
    with ReadModels.open(path) as rm:
        return rm.read(lambda txn: rm.get_meta(txn, JOB_KEY)) is not None


def _checkpoints(path: Path) -> tuple[int, int]:
    with ReadModels.open(path) as rm:
        return get_checkpoint(rm, "exchange").height, get_checkpoint(rm, "audit").height


def test_a_rebuild_with_a_worker_process_writes_what_one_process_writes(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    one = fresh_copy(sim_chain)
    two = fresh_copy(sim_chain)
    docs = []
    for path, parallel in ((one, False), (two, True)):
        with ChainStore.open(path) as store, ReadModels.open(path) as rm:
            docs.append(rebuild(store, rm, from_="genesis", batch_events=400,
                                parallel=parallel))
    assert [d["audit"]["worker_process"] for d in docs] == [False, True]
    assert docs[0]["match"] and docs[1]["match"]
    assert docs[0]["state_hash"] == docs[1]["state_hash"]
    assert docs[0]["audit"]["height"] == docs[1]["audit"]["height"]
    assert docs[0]["audit"]["events"] == docs[1]["audit"]["events"] > 0
    assert _image(one) == _image(two)


def test_a_rebuild_with_a_worker_stops_at_a_corrupted_event_and_so_does_the_worker(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    with ChainStore.open(path, write=True) as store:  # tampering needs a writable env
        hdr = store.block(30)
        key = (hdr.first_seq + 1).to_bytes(8, "big")
        with store.shared_env.env.begin(write=True) as txn:
            data = bytearray(txn.get(key, db=store.dbs.events))
            data[-1] ^= 1
            txn.put(key, bytes(data), db=store.dbs.events)
    with (ChainStore.open(path) as store, ReadModels.open(path) as rm,
          pytest.raises(VerificationFailed) as err):
        rebuild(store, rm, from_="genesis", parallel=True)
    assert err.value.height == 30
    # The worker on its own: its VerificationFailed crosses the process boundary.
    with pytest.raises(VerificationFailed) as werr:
        AuditWorker(path, 40, 100).result()
    assert werr.value.height == 30
    with ReadModels.open(path) as rm:
        assert get_checkpoint(rm, "audit").height < 30


def test_a_worker_whose_job_process_is_gone_stops_before_folding(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    # pid 1 is never this worker's parent: as if the job that started it had died.
    out = subprocess.run([sys.executable, "-m", "projections.worker", str(path), "40", "100",
                          "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["outcome"] == "error" and "is gone" in doc["message"]
    with ReadModels.open(path) as rm:
        assert get_checkpoint(rm, "audit").height == -1


@pytest.mark.parametrize("parallel", ["off", "on"])
def test_a_rebuild_killed_at_random_moments_ends_as_an_uninterrupted_one(
        sim_chain: Path, fresh_copy: Callable[[Path], Path], parallel: str) -> None:
    clean = fresh_copy(sim_chain)
    killed = fresh_copy(sim_chain)
    # Small batches: many commits to land between, so two kills land on a fast machine too.
    args = ["rebuild", "--from", "genesis", "--json", "--batch-events", "100",
            "--parallel", parallel]
    ref = _cli(*args, "--data", str(clean))
    assert ref.returncode == 0, ref.stderr
    ref_doc = json.loads(ref.stdout)
    rng = random.Random(5)
    seen: list[tuple[int, int]] = []
    # A fast machine may finish the rebuild before two kills land: then start again on a
    # fresh copy (a bounded few times), with the next random moments.
    for _attempt in range(4):
        if _attempt:
            killed = fresh_copy(sim_chain)
        seen = _kill_rebuild(killed, args, rng)
        if len(seen) >= 2:
            break
    assert len(seen) >= 2, f"the rebuild finished before it could be killed twice: {seen}"
    assert seen == sorted(seen), f"a resumed job went backwards: {seen}"
    pending = _job_pending(killed)
    final = _cli(*args, "--data", str(killed))
    assert final.returncode == 0, final.stderr
    doc = json.loads(final.stdout)
    if pending:  # the last run was killed mid-job: this one resumed it
        assert doc["resumed"]
        assert doc["exchange"]["start_height"] == seen[-1][0]
    assert doc["match"] and doc["state_hash"] == ref_doc["state_hash"]
    assert _image(killed) == _image(clean)
    assert not _job_pending(killed)


def _kill_rebuild(killed: Path, args: list[str], rng: random.Random) -> list[tuple[int, int]]:
    """SIGKILL `rebuild` up to 4 times, each at a random moment after it committed
    something new; the checkpoints after each kill."""
    seen: list[tuple[int, int]] = []
    for _ in range(4):
        before = _checkpoints(killed) if seen else (-1, -1)
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", *args, "--data",
                                 str(killed)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # Kill at a random moment after the job committed something new: sometimes
        # between commits, sometimes in the middle of folding or writing a batch.
        deadline = time.monotonic() + 30
        while proc.poll() is None and _checkpoints(killed) <= before:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.04))
        if proc.poll() is not None:
            proc.communicate()
            break  # it finished first: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        seen.append(_checkpoints(killed))
        if not _job_pending(killed):
            break  # the kill came after the job had completed
    return seen


def test_a_projection_rewinds_by_itself_after_a_rollback(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    _run(path, AuditProjection())
    _run(path, ExchangeStateProjection())
    with ChainWriter.open(path, **SIM) as w:
        old_head = w.store.head.height
        w.rollback(150)
        w.append(30)
        new_head = w.store.head.height
    assert new_head < old_head
    audit = _run(path, AuditProjection())
    exch = _run(path, ExchangeStateProjection())
    assert audit.rewound_to == 150 and audit.height == new_head
    assert exch.rewound_to is not None and exch.height == new_head
    with ChainStore.open(path) as store, ReadModels.open(path) as rm:
        assert get_checkpoint(rm, "audit").hash == store.head.hash
    # The same read models as a fresh build over the new chain.
    fresh = fresh_copy(path)
    _run(fresh, AuditProjection())
    assert _image(path) == _image(fresh)


def test_two_rollbacks_in_a_row_leave_the_read_models_of_a_fresh_build(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    _run(path, AuditProjection(), batch_events=700)
    with ChainWriter.open(path, **SIM) as w:
        w.rollback(180)
        w.append(15)
    assert _run(path, AuditProjection(), batch_events=700).rewound_to == 180
    with ChainWriter.open(path, **SIM) as w:
        w.rollback(110, ref_prefix="c")
        w.append(25)
    second = _run(path, AuditProjection(), batch_events=700)
    assert second.rewound_to == 110
    fresh = fresh_copy(path)
    _run(fresh, AuditProjection())
    assert _image(path) == _image(fresh)


def test_saved_states_are_thinned_and_a_deep_rollback_rewinds_to_the_one_below(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    _run(path, AuditProjection(), batch_events=2000)
    with ReadModels.open(path) as rm:
        kept = rm.read(lambda txn: saved_heights(txn, rm, "audit", 0))
    head = SIM_BLOCKS + 1
    # Snapshots every 10: the newest ten, every hundredth, and the checkpoint itself.
    assert kept == [0, 100, *range(110, 201, 10), head]
    with ChainWriter.open(path, **SIM) as w:
        w.rollback(50)
        w.append(5)
    res = _run(path, AuditProjection())
    assert res.rewound_to == 0 and res.height == 50 + 2 + 5  # recovery, SetMode OK, 5 more
    fresh = fresh_copy(path)
    _run(fresh, AuditProjection())
    assert _image(path) == _image(fresh)


def test_a_checkpoint_above_the_head_rewinds_to_the_truncation_height(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    _run(path, AuditProjection(), batch_events=500)
    with ChainStore.open(path, write=True) as store:
        store.truncate_to(120, reason="test", operator="tests")
    res = _run(path, AuditProjection())
    assert res.rewound_to == 120 and res.height == 120
    fresh = fresh_copy(path)
    _run(fresh, AuditProjection())
    assert _image(path) == _image(fresh)


def test_without_a_saved_state_below_the_fork_the_projection_starts_over(
        tmp_path: Path) -> None:
    store = store_chain(tmp_path / "a", 30, snapshot_every=0)
    store.close()
    _run(tmp_path / "a", AuditProjection(), batch_events=10**6)
    with ChainStore.open(tmp_path / "a", write=True) as store:
        store.truncate_to(12, reason="test", operator="tests")
    res = _run(tmp_path / "a", AuditProjection())
    assert res.rewound_to == -1 and res.start_height == -1 and res.height == 12


def test_commit_refuses_a_checkpoint_moved_by_someone_else(
        tmp_path: Path) -> None:
    store_chain(tmp_path / "a", 10).close()
    with ChainStore.open(tmp_path / "a") as store, ReadModels.open(tmp_path / "a") as rm:
        runner = Runner(store, rm)
        runner.run(AuditProjection(), to_height=4)
        proj = AuditProjection()
        ck = get_checkpoint(rm, "audit")
        with pytest.raises(StoreError, match="another runner"):
            runner._commit(proj, 0, NOTHING, ck, retained=set())
