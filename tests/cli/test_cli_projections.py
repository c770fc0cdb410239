"""`ledgerctl rebuild` and `ledgerctl audit ...` end to end on a real chain.

Happy paths run in-process through typer's CliRunner (fast); exit codes and
one-line errors run as real `python -m tools.cli` subprocesses, because the
mapping of errors to exit codes lives in `tools.cli.main`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.record import replace
from ledger.store.chain import ChainStore
from tests.projections.chains import ChainWriter
from tests.projections.tamper import forge_event
from tools.cli import app
from tools.logs import configure

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _logs_to_the_real_stderr() -> None:
    """Configure structlog before CliRunner swaps sys.stderr: the app configures it once
    per process, and a logger bound to CliRunner's (later closed) stream would break
    every later test that logs."""
    configure()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shocks (liquidations), a rollback from 90 to 60 (branch 1), 30 new blocks."""
    path = tmp_path_factory.mktemp("cli") / "ledger"
    with ChainWriter.create(path, seed=5, accounts=30, snapshot_every=10,
                            shock_rate_ppm=150_000, shock_warmup=20) as w:
        w.append(89)
        w.rollback(60)
        w.append(30)
    return path


def _ok(*args: str) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return json.loads(result.stdout)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_rebuild_reports_the_state_hash_and_the_match(chain: Path) -> None:
    d = str(chain)
    g = _ok("rebuild", "--data", d, "--from", "genesis")
    with ChainStore.open(chain) as store:
        head = store.head.height
        assert g["match"] and g["height"] == head
        assert g["state_hash"] == store.block(head).state_hash.hex()
    s = _ok("rebuild", "--data", d, "--to-height", "42")
    assert s["match"] and s["height"] == 42
    status = _ok("audit", "status", "--data", d)
    assert {p["projection"]: p["lag_blocks"] for p in status["projections"]} == {
        "exchange": 0, "audit": 0}


def test_every_audit_command_answers_in_json(chain: Path) -> None:
    d = str(chain)
    acct = _ok("audit", "account", "u00004", "--data", d)
    assert acct["balance_qq"] == acct["statement_balance_qq"]
    assert isinstance(acct["balance_qq"], int) and isinstance(acct["positions"], list)
    past = _ok("audit", "account", "u00004", "--data", d, "--at-height", "30",
               "--from-height", "20", "--to-height", "30")
    assert past["height"] == 30 and all(20 <= ln["height"] <= 30
                                        for ln in past["statement"]["lines"])
    on_branch = _ok("audit", "account", "u00004", "--data", d, "--branch", "1")
    assert on_branch["height"] == 90 and on_branch["branch"] == 1
    fills = _ok("audit", "fills", "--data", d, "--account", "u00004", "--limit", "5")["fills"]
    assert len(fills) <= 5 and all(f["role"] in ("maker", "taker") for f in fills)
    funding = _ok("audit", "funding", "--data", d, "--market", "ETH-PERP")
    assert funding["applied"] >= 1 and all(isinstance(t["new_index"], int)
                                           for t in funding["ticks"])
    liqs = _ok("audit", "liquidations", "--data", d)["liquidations"]
    assert all(isinstance(r["fee_qq"], int) for r in liqs if r["method"])
    evs = _ok("audit", "events", "--data", d, "--type", "Deposited", "--to-height", "1")
    assert evs["events"] and all(e["type"] == "Deposited" for e in evs["events"])
    br = _ok("audit", "events", "--data", d, "--branch", "1", "--from-height", "61",
             "--limit", "3")["events"]
    assert len(br) == 3 and all(e["height"] >= 61 for e in br)
    state = _ok("audit", "state", "--data", d, "--at-height", "50")
    assert state["height"] == 50 and {m["mkt"] for m in state["markets"]} >= {"BTC-PERP"}
    assert _ok("audit", "state", "--data", d, "--branch", "1")["height"] == 90


def test_export_streams_jsonl_and_csv(chain: Path, tmp_path: Path) -> None:
    d = str(chain)
    jl = runner.invoke(app, ["audit", "export", "statement", "--data", d, "--account",
                             "u00004", "--format", "jsonl"])
    assert jl.exit_code == 0, jl.output
    rows = [json.loads(x) for x in jl.stdout.splitlines()]
    cs = runner.invoke(app, ["audit", "export", "fills", "--data", d, "--format", "csv",
                             "--to-height", "30"])
    assert cs.exit_code == 0, cs.output
    table = list(csv.DictReader(io.StringIO(cs.stdout)))
    assert rows and table and {"seq", "maker", "taker", "price_st"} <= set(table[0])
    out = tmp_path / "liq.csv"
    doc = _ok("audit", "export", "liquidations", "--data", d, "--format", "csv", "-o",
              str(out))
    assert doc["rows"] == len(list(csv.DictReader(out.open())))


def test_people_get_tables(chain: Path) -> None:
    result = runner.invoke(app, ["audit", "account", "u00004", "--data", str(chain),
                                 "--no-catch-up", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "statement" in result.stdout and "account u00004" in result.stdout


@pytest.mark.parametrize(("args", "code", "says"), [
    (["audit", "account", "u00004", "--branch", "9"], 2, "no archived branch 9"),
    (["audit", "fills", "--from-height", "-1"], 2, "--from-height"),
    (["audit", "state", "--at-height", "999"], 2, "--at-height must be between 0"),
    (["audit", "events", "--type", "Nonsense"], 2, "unknown event type"),
    (["audit", "funding", "--market", "DOGE-PERP"], 2, "unknown market"),
    (["audit", "export", "fills", "--format", "xml"], 2, "--format"),
    (["audit", "account", "nobody"], 1, "does not exist"),
    (["rebuild", "--from", "yesterday"], 2, "--from must be genesis or snapshot"),
])
def test_bad_input_gives_one_line_and_the_exit_code(chain: Path, args: list[str], code: int,
                                                    says: str) -> None:
    proc = _cli(*args, "--data", str(chain))
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    as_json = _cli(*args, "--data", str(chain), "--json")
    assert json.loads(as_json.stdout)["exit_code"] == code


def test_no_ledger_is_an_error(tmp_path: Path) -> None:
    proc = _cli("audit", "state", "--data", str(tmp_path / "none"))
    assert proc.returncode == 1 and "no ledger" in proc.stderr


def test_verify_reexecute_and_rebuild_fail_with_exit_code_3(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    with ChainWriter.create(path, seed=3, accounts=20, snapshot_every=5) as w:
        w.append(20)
        h = w.store.head.height + 1
        result = w.engine.run_block(h, [c.BeginBlock(w.workload.block_time(h))])
        w.store.append_block(result.envelopes, height=h, time=w.workload.block_time(h),
                             state_hash=bytes(32))
    rebuilt = _cli("rebuild", "--data", str(path), "--from", "genesis", "--json")
    assert rebuilt.returncode == 3
    doc = json.loads(rebuilt.stdout)
    assert doc["match"] is False and doc["height"] == h
    ok = _cli("verify", "--data", str(path), "--reexecute", "--to-height", str(h - 1),
              "--json", "--jobs", "2")
    assert ok.returncode == 0 and json.loads(ok.stdout)["reexecute"]["ok"]
    with ChainStore.open(path) as store:
        fill = next(e for e in store.events(8, None) if isinstance(e.event, o.Filled))
    forge_event(path, fill.seq, replace(fill.event, maker_fee_qq=fill.event.maker_fee_qq - 1))
    bad = _cli("verify", "--data", str(path), "--reexecute", "--json")
    assert bad.returncode == 3
    rep = json.loads(bad.stdout)
    # The forger re-chained every header but holds no writer key: the block signatures
    # find the forged block first, at its height.
    assert rep["height"] == fill.height and "signature" in rep["reason"]
    # Re-execution alone (what an unsigned chain has) finds it too, at the forged event.
    with ChainStore.open(path) as store:
        from projections.reexecute import reexecute

        rx = reexecute(store)
    assert not rx["ok"] and rx["divergence"]["seq"] == fill.seq
