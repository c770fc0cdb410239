"""An auditor with only the PostgreSQL replica asks what the operator asks of the ledger.

Every read command that takes `--store` answers byte for byte as it does on the
data directory: the catalog (blocks, events, snapshots, branches, journal, the
registered keys), the
remedies that re-execute the chain from a replicated snapshot (refund and
compensation plans, assess, the what-if), the plots and the incident report.
The report differs in its verification rows only, by design: the
replica's own (hash chain, events hashes, header and index rows, signatures
and journal), and the page says which store it verified.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.demo_chain import BRANCH, demo_ledger, logs_configured  # noqa: F401
from tests.pg import replica_of
from tools.cli import app
from tools.pgcluster import PgCluster

pytestmark = pytest.mark.needs_postgres
runner = CliRunner()
Demo = tuple[Path, dict[str, Any]]
ROOT = Path(__file__).resolve().parents[2]

#: The demo's head is 103 (recovery block 101, refunds 102, trading resumes 103).
QUESTIONS = [
    ["blocks", "--from", "95", "--to", "103"],
    ["events", "--height", "101"],
    ["events", "--branch", str(BRANCH), "--type", "FundingTicked", "--limit", "5"],
    ["events", "--account", "LIQ_VAULT"],
    ["snapshots"],
    ["branches"],
    ["journal"],
    ["keys", "list"],
    ["refunds", "plan", "--branch", str(BRANCH)],
    ["compensate", "plan", "--from-height", "102"],
    ["assess", "--from-height", "102"],
    ["audit", "whatif", "--branch", str(BRANCH)],
]


@pytest.fixture(scope="module")
def replica(demo_ledger: Demo, pg_cluster: PgCluster) -> str:  # noqa: F811
    return replica_of(pg_cluster, demo_ledger[0])


def _ask(*args: str) -> str:
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, (args, r.output, r.exception)
    assert r.stdout.strip(), args
    return r.stdout


@pytest.mark.parametrize("question", QUESTIONS, ids=[" ".join(q[:2]) for q in QUESTIONS])
def test_the_replica_answers_as_the_ledger(demo_ledger: Demo, replica: str,  # noqa: F811
                                           question: list[str]) -> None:
    on_ledger = _ask(*question, "--data", str(demo_ledger[0]))
    on_replica = _ask(*question, "--store", replica)
    assert on_replica == on_ledger


PLOTS = [["funding", "--market", "BTC-PERP"], ["equity", "--account", "u00001"]]


@pytest.mark.parametrize("what", PLOTS, ids=[p[0] for p in PLOTS])
def test_a_plot_from_the_replica_draws_the_same_series(demo_ledger: Demo, replica: str,  # noqa: F811
                                                      tmp_path: Path, what: list[str]) -> None:
    docs = []
    for where in (["--data", str(demo_ledger[0])], ["--store", replica]):
        out = tmp_path / f"plot{len(docs)}.png"
        doc = json.loads(_ask("audit", "plot", *what, "--out", str(out), *where))
        assert out.read_bytes().startswith(b"\x89PNG")
        docs.append({k: v for k, v in doc.items() if k != "out"})
    assert docs[0] == docs[1] and docs[0]["series"]


def _reports(demo: Demo, replica: str, tmp_path: Path, *kind: str
             ) -> tuple[list[dict[str, Any]], list[str]]:
    docs, pages = [], []
    for where in (["--data", str(demo[0])], ["--store", replica]):
        out = tmp_path / f"report{len(docs)}.html"
        docs.append(json.loads(_ask("report", "incident", *kind, "--out", str(out),
                                    *where))["report"])
        pages.append(out.read_text())
    return docs, pages


def test_the_incident_report_from_the_replica(demo_ledger: Demo, replica: str,  # noqa: F811
                                              tmp_path: Path) -> None:
    docs, pages = _reports(demo_ledger, replica, tmp_path, "--branch", str(BRANCH))
    lmdb, pg = (d["hashes"].pop("verify") for d in docs)
    # The refund plan re-executed from the replica's snapshot is the ledger's, to the quantum.
    assert docs[1] == docs[0]
    assert docs[1]["plan"]["lines"] and docs[1]["liquidations"]["totals"]["counterfactual"] == 0
    for name in ("chain", "branch"):
        assert pg[name]["ok"] and pg[name]["store"] == "postgresql"
        assert pg[name]["signatures"] == lmdb[name]["signatures"]
        assert pg[name]["signatures"]["signed"]
        assert (pg[name]["blocks"], pg[name]["events"]) == \
            (lmdb[name]["blocks"], lmdb[name]["events"])
    assert "verify chain (PostgreSQL replica)" in pages[1]
    assert "verify chain (LMDB ledger)" in pages[0]


def test_the_compensation_report_from_the_replica(demo_ledger: Demo,  # noqa: F811
                                                   replica: str, tmp_path: Path) -> None:
    docs, _ = _reports(demo_ledger, replica, tmp_path, "--from-height", "101")
    lmdb, pg = (d["hashes"].pop("verify") for d in docs)
    assert docs[0]["kind"] == "compensation" and docs[1] == docs[0]
    assert pg["chain"]["ok"] and pg["chain"]["signatures"] == lmdb["chain"]["signatures"]


def test_data_and_store_together_are_refused(demo_ledger: Demo,  # noqa: F811
                                             replica: str) -> None:
    for question in (["snapshots"], ["refunds", "plan", "--branch", "1"], ["audit", "state"]):
        r = subprocess.run([sys.executable, "-m", "tools.cli", *question, "--data",
                            str(demo_ledger[0]), "--store", replica], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "not both" in r.stderr, (question, r.stderr)
        assert "Traceback" not in r.stderr


def test_a_replica_that_is_not_there_is_one_clear_error(pg_dsn: str) -> None:
    empty = pg_dsn  # a fresh database with no replica schema
    for question in (["refunds", "plan", "--branch", "1"], ["snapshots"]):
        r = subprocess.run([sys.executable, "-m", "tools.cli", *question, "--store", empty],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert "Traceback" not in r.stderr, r.stderr
        assert "holds no perpledger replica" in r.stderr and "ledgerctl replicate" in r.stderr
