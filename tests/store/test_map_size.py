"""The LMDB map size: configurable at init and by environment, grown before it runs out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.errors import CommandInvalid
from ledger.store.chain import ChainStore
from ledger.store.env import parse_size
from tools.simulate import make_workload, open_or_create, run

ROOT = Path(__file__).resolve().parents[2]


def test_sizes_parse_and_bad_ones_are_refused() -> None:
    assert parse_size("4096K") == 4 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("64MiB") == 64 << 20
    for bad in ("", "-1G", "1.5G", "12Q", "100", "\u0665G"):
        with pytest.raises(CommandInvalid):
            parse_size(bad)


def test_a_small_map_grows_before_it_fills(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "init", "--data", str(path),
                        "--map-size", "1M", "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with ChainStore.open(path) as store:
        assert store.config["map_size"] == 1 << 20
    with open_or_create(path, guards=True) as seq:
        wl = make_workload(seed=1, accounts=60, inject=[])
        env = seq.store.shared_env.env
        used = 0
        for _ in range(40):  # bounded: about 1.5 MiB of log
            run(seq, wl, 10)
            info = env.info()
            used = (info["last_pgno"] + 1) * env.stat()["psize"]
            if used > 3 << 19:
                break
        assert used > 1 << 20  # the data outgrew the initial map...
        assert info["map_size"] > used  # ...which grew ahead of it


def test_the_environment_variable_sets_the_initial_map(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    env = {**os.environ, "PERPLEDGER_MAP_SIZE": "3M"}
    r = subprocess.run([sys.executable, "-c", (
        "import sys; sys.argv=['ledgerctl', 'init', '--data', sys.argv[1]];"
        "from tools import cli; cli.main()"), str(path)], cwd=ROOT, capture_output=True,
        text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", (
        "import sys, json; from ledger.store.chain import ChainStore;"
        "s = ChainStore.open(sys.argv[1], write=True);"
        "print(json.dumps(s.shared_env.env.info()['map_size']))"), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert json.loads(r.stdout) == 3 << 20
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "info", "--data", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PERPLEDGER_MAP_SIZE": "lots"})
    assert bad.returncode == 2 and "PERPLEDGER_MAP_SIZE" in bad.stderr
