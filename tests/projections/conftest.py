"""Fixtures: real engine-built chains in temporary directories, built once per session.

Tests that change a chain or need fresh read models copy one (`fresh_copy`);
the read models live under the chain's own data directory, as in production.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.projections.chains import ChainWriter

#: The main simulated chain: guards on, a zeroed funding tick injected at 130 (G1/G3
#: reject it and halt BTC), price shocks that liquidate over-leveraged users into the vault.
SIM_BLOCKS = 200
INJECT_AT = 130
SHOCKS = {"shock_rate_ppm": 150_000, "shock_warmup": 20}
SIM = {"seed": 5, "accounts": 40, **SHOCKS}


@pytest.fixture(scope="session")
def sim_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "ledger"
    with ChainWriter.create(path, snapshot_every=10,
                            inject_zero_funding=[(INJECT_AT, "BTC-PERP")], **SIM) as w:
        w.append(SIM_BLOCKS)
    return path


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """A fresh 60-block chain with price shocks, for tests that append to it or replicate it."""
    path = tmp_path / "ledger"
    with ChainWriter.create(path, seed=21, accounts=40, snapshot_every=10,
                            shock_rate_ppm=150_000, shock_warmup=15) as w:
        w.append(60)
    return path


@pytest.fixture(scope="session")
def adl_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shocks with an almost empty vault: liquidations go to auto-deleveraging."""
    path = tmp_path_factory.mktemp("adl") / "ledger"
    with ChainWriter.create(path, snapshot_every=10, vault_deposit_qq=10**6, **SIM) as w:
        w.append(SIM_BLOCKS)
    return path


@pytest.fixture(scope="session")
def branched_chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chain rolled back from 150 to 100 (branch 1 holds 101..150), then 40 new blocks."""
    path = tmp_path_factory.mktemp("branched") / "ledger"
    with ChainWriter.create(path, seed=11, accounts=40, snapshot_every=10) as w:
        w.append(149)
        assert w.store.head.height == 150
        branch = w.rollback(100)
        assert branch == 1
        w.append(40)
    return path


@pytest.fixture
def fresh_copy(tmp_path: Path) -> Callable[[Path], Path]:
    """Copy a chain's data directory, without its read models, into this test's tmp dir."""

    def copy(src: Path) -> Path:
        dst = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("readmodels", "writer.lock"))
        return dst

    return copy
