"""The incident demo's ledger (seed 7, 200 users) for the report, export and API tests.

`demo_ledger` is a module-scoped fixture: import it into a test module
(`from tests.demo_chain import demo_ledger, logs_configured  # noqa: F401`), with
`cli_json` to ask the CLI the same question. The demo takes
about a second and leaves an archived branch 1 (the zeroed-index blocks
101..112), the recovery block at 101, refunds at 102 and OK at 103.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tools.cli import app
from tools.demo import run_demo
from tools.logs import configure

BRANCH = 1
_runner = CliRunner()


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """(data directory, demo summary) of a fresh incident demo."""
    path = tmp_path_factory.mktemp("demo") / "ledger-data"
    summary = run_demo(path, guards=False, accounts=200, seed=7)
    assert summary["branch"] == BRANCH
    return path, summary


@pytest.fixture(autouse=True, scope="module")
def logs_configured() -> None:
    """Configure structlog before CliRunner swaps sys.stderr (see test_cli_projections)."""
    configure()


def cli_json(*args: str) -> Any:
    """Run `ledgerctl ARGS --json` in-process and return the parsed document."""
    r = _runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, (args, r.output, r.exception)
    return json.loads(r.stdout)
