"""The pipelined writer: block N+1 is decided while block N commits; only durable blocks count.

- the pipeline writes exactly the bytes one-block-at-a-time appends write;
- it really overlaps: the next block is asked for before the previous one is
  acknowledged, and every acknowledged block is already readable by others;
- a commit that fails for real (the process may not grow data.mdb: LMDB's
  commit gets EFBIG, as on a full disk) stops the writer with CommitFailed,
  loses nothing acknowledged, rebuilds the engine at the last durable block,
  and a restarted writer carries on;
- SIGKILLs at random moments lose nothing acknowledged and leave at most the
  one block in flight beyond it.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.events.commands import BeginBlock
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore, verify_store
from tools.simulate import make_workload, open_or_create, run

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests/ops/pipeline_worker.py"
WORKLOAD: dict[str, Any] = {"seed": 11, "accounts": 80, "inject": []}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated ledger (the worker's workload), snapshots every 10 blocks."""
    path = tmp_path_factory.mktemp("pipe") / "base"
    with open_or_create(path, guards=True, snapshot_every=10) as seq:
        run(seq, make_workload(**WORKLOAD), 5)
    return path


def _copy(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


def test_pipelined_blocks_are_the_bytes_of_one_block_at_a_time(base: Path,
                                                               tmp_path: Path) -> None:
    piped = _copy(base, tmp_path / "piped")
    single = _copy(base, tmp_path / "single")
    with Sequencer.open(piped) as seq:
        run(seq, make_workload(**WORKLOAD), 25)  # submit_many
        piped_head, piped_state = seq.store.head, seq.engine.state_hash()
    with Sequencer.open(single) as seq:
        wl = make_workload(**WORKLOAD)
        for _ in range(25):
            seq.submit(wl.next_block(seq.store.head.height + 1, seq.engine))
        assert seq.store.head == piped_head
        assert seq.engine.state_hash() == piped_state
    with ChainStore.open(piped) as a, ChainStore.open(single) as b:
        assert [s.height for s in a.snapshots()] == [s.height for s in b.snapshots()]
        assert a.blocks() == b.blocks()
        assert list(a.iter_block_bytes()) == list(b.iter_block_bytes())
        assert [a.snapshot(s.height).data for s in a.snapshots()] == \
            [b.snapshot(s.height).data for s in b.snapshots()]


def test_the_next_block_is_decided_while_the_previous_one_commits(base: Path,
                                                                  tmp_path: Path) -> None:
    path = _copy(base, tmp_path / "overlap")
    acked: list[int] = []
    asked_after: list[int] = []  # acknowledgements received when each block was asked for
    in_flight: list[bool] = []  # whether a block was committing when each was asked for
    with Sequencer.open(path) as seq, ChainStore.open(path) as reader:
        wl = make_workload(**WORKLOAD)

        def blocks() -> Iterator[list[Any]]:
            for _ in range(12):
                asked_after.append(len(acked))
                in_flight.append(seq._pipe.busy)
                yield wl.next_block(seq.next_height, seq.engine)

        for out in seq.submit_many(blocks()):
            # Acknowledged means committed: another reader sees the block already.
            assert reader.block(out.header.height) == out.header
            assert seq.store.head.height >= out.header.height
            acked.append(out.header.height)
    # Block k+1 was asked for (and decided) before block k was acknowledged.
    assert asked_after == [0, 0, *range(1, 11)]
    assert in_flight == [False] + [True] * 11
    assert acked == list(range(acked[0], acked[0] + 12))


def test_a_caller_that_stops_early_leaves_the_engine_at_the_durable_head(
        base: Path, tmp_path: Path) -> None:
    """Breaking out of submit_many finishes the block in flight: the engine and the log
    agree, and the writer carries on."""
    path = _copy(base, tmp_path / "early")
    with Sequencer.open(path) as seq:
        wl = make_workload(**WORKLOAD)
        blocks = (wl.next_block(seq.next_height, seq.engine) for _ in range(10))
        for out in seq.submit_many(blocks):
            if out.header.height >= base_height(base) + 3:
                break
        head = seq.store.head
        assert seq.engine.state.height == head.height
        assert seq.engine.state_hash() == seq.store.block(head.height).state_hash
        after = seq.submit(wl.next_block(seq.next_height, seq.engine))
        assert after.header.height == head.height + 1
        assert verify_store(seq.store).ok


def base_height(path: Path) -> int:
    with ChainStore.open(path) as store:
        return store.head.height


def _worker(path: Path, blocks: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(WORKER), "run", str(path), str(blocks),
                             *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _acks(lines: list[str]) -> list[tuple[int, str]]:
    return [(int(p[1]), p[2]) for p in (ln.split() for ln in lines) if p[0] == "A"]


def _assert_acknowledged_blocks_are_durable(path: Path, acks: list[tuple[int, str]],
                                            in_flight: int) -> None:
    with ChainStore.open(path) as store:
        assert verify_store(store).ok
        for height, hash_hex in acks:
            assert store.block(height).hash.hex() == hash_hex, f"acknowledged {height} lost"
        last = acks[-1][0] if acks else 5
        assert last <= store.head.height <= last + in_flight


def test_a_failed_commit_stops_the_writer_and_loses_nothing_acknowledged(
        base: Path, tmp_path: Path) -> None:
    path = _copy(base, tmp_path / "full")
    # data.mdb may grow 200 KB more: a dozen blocks, then LMDB's commit fails (EFBIG).
    proc = _worker(path, 200, "200000")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    acks = _acks(lines)
    failed = [ln.split() for ln in lines if ln.startswith("F ")]
    assert acks and failed, out
    height, durable = int(failed[0][1]), int(failed[0][2])
    assert durable == acks[-1][0] and height == durable + 1
    assert [h for h, _ in acks] == list(range(6, durable + 1))
    refused = next(ln for ln in lines if ln.startswith("R "))
    assert "stopped" in refused and f"block {height}" in refused
    _assert_acknowledged_blocks_are_durable(path, acks, in_flight=0)
    with ChainStore.open(path) as store:
        head = store.head
        assert head.height == durable
        # The engine was rebuilt at the last durable block, not left at the failed one.
        engine_seq, engine_hash = next(ln.split()[1:] for ln in lines if ln.startswith("E "))
        assert int(engine_seq) == head.seq
        assert engine_hash == store.block(durable).state_hash.hex()
    # Restarted without the limit, the writer carries on from the durable head.
    with Sequencer.open(path) as seq:
        wl = make_workload(start_time=head.time - head.height, **WORKLOAD)
        run(seq, wl, 3)
        assert seq.store.head.height == durable + 3
        assert verify_store(seq.store).ok


@pytest.mark.parametrize("kills", [pytest.param(4, id="4 kills"),
                                   pytest.param(24, id="24 kills", marks=pytest.mark.slow)])
def test_sigkill_of_the_pipelined_writer_loses_nothing_acknowledged(base: Path, tmp_path: Path,
                                                                    kills: int) -> None:
    rng = random.Random(20260119 + kills)
    for i in range(kills):
        path = _copy(base, tmp_path / f"kill{i}")
        proc = _worker(path, 400)
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip()]
        assert lines[0] == "READY"
        # Kill after a random number of acknowledgements, a few ms after the last one
        # (in the next block's decide or commit).
        for _ in range(rng.randrange(1, 25)):
            lines.append(proc.stdout.readline().strip())
        time.sleep(rng.uniform(0.0, 0.02))
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        lines += [ln for ln in rest.splitlines() if ln.strip()]
        acks = _acks(lines)
        assert acks, f"kill {i}: no block acknowledged"
        _assert_acknowledged_blocks_are_durable(path, acks, in_flight=1)
        with Sequencer.open(path) as seq:  # the restart protocol accepts what is left
            seq.submit([BeginBlock(seq.store.head.time)])
        shutil.rmtree(path)
