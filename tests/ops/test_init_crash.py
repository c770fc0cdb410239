"""A SIGKILLed `init` leaves no ledger or a complete one, never an unusable directory.

Four kills in the default run; `test_killed_inits_long` (marked slow) runs forty.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.store.chain import ledger_exists

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _kill_init_loop(tmp_path: Path, kills: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    seen = {"complete": 0, "nothing": 0}
    for i in range(kills):
        data = tmp_path / f"d{i}"
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "init", "--data", str(data),
                                 "--json"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if ledger_exists(data):
            seen["complete"] += 1
            r = _cli("verify", "--data", str(data), "--json")
            assert r.returncode == 0, (i, r.stdout, r.stderr)
            assert json.loads(_cli("info", "--data", str(data), "--json").stdout)[
                "head_height"] == 0
        else:
            seen["nothing"] += 1
            # What the killed init left is no obstacle: init runs and completes.
            r = _cli("init", "--data", str(data))
            assert r.returncode == 0, (i, r.stderr)
            assert [p.name for p in data.iterdir() if p.name.startswith(".init-")] == []
            assert _cli("verify", "--data", str(data)).returncode == 0
    return seen


def test_killed_inits_leave_nothing_or_a_complete_ledger(tmp_path: Path) -> None:
    seen = _kill_init_loop(tmp_path, kills=4, seed=11)
    assert sum(seen.values()) == 4


@pytest.mark.slow
def test_killed_inits_long(tmp_path: Path) -> None:
    seen = _kill_init_loop(tmp_path, kills=40, seed=12)
    assert seen["complete"] > 0 and seen["nothing"] > 0
