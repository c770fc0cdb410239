"""The incident demo's ledger (seed 7, 200 users) for the report, export and API tests.

`demo_ledger` is a module-scoped fixture: import it into a test module
(`from tests.demo_chain import demo_ledger  # noqa: F401`). The demo takes
about a second and leaves an archived branch 1 (the zeroed-index blocks
101..112), the recovery block at 101, refunds at 102 and OK at 103.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.demo import run_demo

BRANCH = 1


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(data directory, demo summary) of a fresh incident demo."""
    path = tmp_path_factory.mktemp("demo") / "ledger-data"
    summary = run_demo(path, guards=False, accounts=200, seed=7)
    assert summary["branch"] == BRANCH
    return path, summary
