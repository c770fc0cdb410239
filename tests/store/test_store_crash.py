"""Crash safety: writers SIGKILLed at random moments leave a store that verifies.

A worker process (`crash_worker.py`) appends blocks, or appends and truncates,
printing every acknowledged operation after the store call returned. The test
kills it with SIGKILL at seeded random moments, some timed from start, some a
few milliseconds after an acknowledgement (so the kill lands in the next write
transaction), then reopens the store for writing (the lock must be free) and
checks: `verify_store` passes on the chain and every branch, every acknowledged
block is present with its hash, at most the one operation in flight landed,
and a truncation in flight left either the old chain or the new one.

Set PERPLEDGER_CRASH_SEED to replay another schedule.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ledger.store.chain import ChainStore, verify_store
from tests.store.crash_worker import (
    CHAIN_ID,
    append_random,
    fake_state_hash,
    iter_lines,
    worker_args,
    worker_env,
)

SEED = int(os.environ.get("PERPLEDGER_CRASH_SEED", "20260119"))
APPEND_KILLS = 14
TRUNCATE_KILLS = 10
#: Workers open with a small map, so some kills land while the map grows.
MAP_SIZE = 256 * 1024
TIMEOUT = 30.0


class Killed(NamedTuple):
    lines: list[str]
    how: str


def run_and_kill(path: Path, mode: str, seed: int, rng: random.Random, trigger: str,
                 triggered: float) -> Killed:
    """Start a worker, SIGKILL it at a seeded random moment, return its complete lines.

    A share `triggered` of the kills come a random 0..6 ms after the k-th line
    tagged `trigger` (so they land in the operation that line announced or the
    next one); the others at a random delay after READY.
    """
    proc = subprocess.Popen(worker_args(mode, path, seed, MAP_SIZE), env=worker_env(),
                            stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    changed = threading.Condition()

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter_lines(proc.stdout):
            with changed:
                lines.append(line)
                changed.notify_all()
        with changed:
            lines.append("<eof>")
            changed.notify_all()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def wait_for(pred: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        with changed:
            while not pred():
                assert "<eof>" not in lines, f"worker exited early: {lines[-5:]}"
                assert time.monotonic() < deadline, f"worker stalled: {lines[-5:]}"
                changed.wait(0.5)

    try:
        wait_for(lambda: any(line.startswith("READY") for line in lines))
        if rng.random() >= triggered:
            delay = rng.uniform(0.01, 0.35)
            how = f"{delay * 1000:.0f} ms after start"
            time.sleep(delay)
        else:
            k = rng.randint(1, 6)
            delay = rng.uniform(0.0, 0.006)
            how = f"{delay * 1000:.1f} ms after {trigger} line #{k}"
            wait_for(lambda: sum(line.startswith(trigger + " ") for line in lines) >= k)
            time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL, "the worker died on its own"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=TIMEOUT)
    return Killed([line for line in lines if line != "<eof>"], how)


class Model:
    """What the acknowledgements promise about the canonical chain."""

    def __init__(self, blocks: dict[int, bytes], branches: int) -> None:
        self.blocks = dict(blocks)  # height -> hash, acknowledged and still canonical
        self.snapshots: set[int] = set()
        self.branches = branches

    def drop_above(self, height: int) -> None:
        self.blocks = {h: v for h, v in self.blocks.items() if h <= height}
        self.snapshots = {h for h in self.snapshots if h <= height}


class Pending(NamedTuple):
    head_height: int
    head_hash: bytes
    target: int
    branches: int
    with_first: bool  # the new branch's first block is appended in the same transaction


def replay_lines(model: Model, lines: list[str]) -> Pending | None:
    """Apply a worker's acknowledgements; return the truncation in flight, if any."""
    pending: Pending | None = None
    for line in lines:
        tag, *f = line.split()
        if tag == "A":
            model.blocks[int(f[0])] = bytes.fromhex(f[1])
            pending = None
        elif tag == "S":
            model.snapshots.add(int(f[0]))
        elif tag == "P":
            pending = Pending(int(f[0]), bytes.fromhex(f[1]), int(f[2]), int(f[3]),
                              f[4] == "1")
            assert pending.branches == model.branches, line
            assert model.blocks[pending.head_height] == pending.head_hash, line
        elif tag == "T":
            assert pending is not None and int(f[1]) == pending.target, line
            assert int(f[0]) == model.branches + 1, line
            model.branches += 1
            model.drop_above(pending.target)
            assert int(f[2]) == pending.target + pending.with_first, line
            if pending.with_first:
                model.blocks[int(f[2])] = bytes.fromhex(f[3])
            pending = None
    return pending


def check_after_kill(path: Path, model: Model, killed: Killed, outcomes: Counter[str],
                     where: str) -> None:
    """Reopen for writing and check the store against the acknowledged model."""
    pending = replay_lines(model, killed.lines)
    context = f"{where}, killed {killed.how}, last lines {killed.lines[-3:]}"
    with ChainStore.open(path, write=True) as store:  # the lock died with the worker
        report = verify_store(store)
        assert report.ok, f"{report} ({context})"
        head = store.head
        branches = store.branches()
        if pending is not None:
            old = (head.height, head.hash, len(branches)) == (
                pending.head_height, pending.head_hash, pending.branches)
            new_head = head.height == pending.target + pending.with_first
            if new_head and pending.with_first:
                new_head = store.block(head.height).prev_hash == model.blocks[pending.target]
            new_base = (new_head and len(branches) == pending.branches + 1
                        and branches[-1]["base_height"] == pending.target
                        and branches[-1]["last_height"] == pending.head_height
                        and branches[-1]["head_hash"] == pending.head_hash
                        and store.block(pending.target).hash == model.blocks[pending.target])
            assert old != new_base, (
                f"after a kill mid-truncate the store is neither the old chain nor the new "
                f"one: head {head.height}, {len(branches)} branches ({context})")
            outcomes["truncate in flight: old chain" if old else "truncate in flight: new"] += 1
            if new_base:
                model.branches += 1
                model.drop_above(pending.target)
        else:
            outcomes["append in flight"] += 1
        assert len(branches) == model.branches, context
        last = max(model.blocks)
        assert head.height in (last, last + 1), f"head {head.height}, acked {last} ({context})"
        if head.height == last + 1:
            outcomes["unacknowledged block landed"] += 1
        headers = {h.height: h for h in store.blocks()}
        for height, block_hash in model.blocks.items():
            assert headers[height].hash == block_hash, f"block {height} changed ({context})"
        for b in branches:
            branch_report = verify_store(store, branch=b["branch"])
            assert branch_report.ok, f"branch {b['branch']}: {branch_report} ({context})"
        snaps = store.snapshots()
        assert all(s.height <= head.height for s in snaps), context
        assert all(s.state_hash == headers[s.height].state_hash for s in snaps), context
        assert model.snapshots <= {s.height for s in snaps}, context
        stats = store.stats()
        assert (stats["events"], stats["blocks"]) == (head.seq, head.height + 1), context
        assert stats["archived_events"] == sum(b["events"] for b in branches), context
        truncations = [j for j in store.journal() if j["action"] == "truncate"]
        assert len(truncations) == len(branches), context
        # The model follows the store into the next round (an unacked landed block too).
        model.blocks[head.height] = head.hash


def test_appending_writer_killed_at_random_moments_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = random.Random(SEED)
    with ChainStore.create(path, chain_id=CHAIN_ID, map_size=MAP_SIZE) as store:
        header, _ = append_random(store, rng, 5)
    model = Model({0: header.hash}, branches=0)
    outcomes: Counter[str] = Counter()
    acked = 0
    for i in range(APPEND_KILLS):
        killed = run_and_kill(path, "append", SEED + i, rng, trigger="A", triggered=0.5)
        acked += sum(line.startswith("A ") for line in killed.lines)
        check_after_kill(path, model, killed, outcomes, f"append kill {i} (seed {SEED})")
    assert acked >= APPEND_KILLS, f"too few acknowledged blocks to mean anything ({acked})"
    print(f"append kills: {APPEND_KILLS}, blocks acknowledged: {acked}, {dict(outcomes)}")


def test_truncating_writer_killed_at_random_moments_leaves_old_or_new_chain(
        tmp_path: Path) -> None:
    path = tmp_path / "data"
    rng = random.Random(SEED + 1000)
    with ChainStore.create(path, chain_id=CHAIN_ID, map_size=MAP_SIZE) as store:
        for _ in range(30):
            header, _ = append_random(store, rng, rng.randrange(100, 400), str_len=24)
            if header.height % 5 == 0:
                store.put_snapshot(header.height, fake_state_hash(header.height), b"s" * 999)
        model = Model({h.height: h.hash for h in store.blocks()}, branches=0)
        model.snapshots = {s.height for s in store.snapshots()}
    outcomes: Counter[str] = Counter()
    truncations = 0
    for i in range(TRUNCATE_KILLS):
        killed = run_and_kill(path, "truncate", SEED + 1000 + i, rng, trigger="P",
                              triggered=0.75)
        truncations += sum(line.startswith("T ") for line in killed.lines)
        check_after_kill(path, model, killed, outcomes, f"truncate kill {i} (seed {SEED})")
    in_flight = outcomes["truncate in flight: old chain"] + outcomes["truncate in flight: new"]
    assert truncations + in_flight >= TRUNCATE_KILLS, (truncations, dict(outcomes))
    assert in_flight >= 1, f"no kill landed during a truncation: {dict(outcomes)}"
    print(f"truncate kills: {TRUNCATE_KILLS}, truncations acknowledged: {truncations}, "
          f"{dict(outcomes)}")
