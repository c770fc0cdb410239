"""`ledgerctl` end to end, as a real subprocess: commands, JSON output, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ledgerctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "data"
    r = ledgerctl("init", "--data", str(path), "--json", "--snapshot-every", "5")
    assert r.returncode == 0, r.stderr
    r = ledgerctl("simulate", "--data", str(path), "--blocks", "12", "--accounts", "30",
                  "--seed", "4", "--json", "--check-invariants")
    assert r.returncode == 0, r.stderr
    return path


def test_init_refuses_to_overwrite(ledger: Path) -> None:
    r = ledgerctl("init", "--data", str(ledger))
    assert r.returncode == 1
    assert "already exists" in r.stderr


def test_info_json_has_the_documented_keys(ledger: Path) -> None:
    r = ledgerctl("info", "--data", str(ledger), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ("head_height", "head_seq", "head_hash", "genesis_hash", "snapshots",
                "branches"):
        assert key in doc
    assert doc["head_height"] == 12
    assert doc["snapshots"][:3] == [0, 5, 10]
    assert doc["branches"] == []


def test_data_dir_from_environment(ledger: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tools.cli", "info", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "PERPLEDGER_DATA": str(ledger)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["head_height"] == 12


def test_events_json_lines_are_integers_in_fixed_point(ledger: Path) -> None:
    r = ledgerctl("events", "--data", str(ledger), "--type", "Filled", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows, "the simulation should have produced fills"
    for row in rows:
        assert row["type"] == "Filled"
        assert set(row) >= {"seq", "height", "type", "payload"}
        for key in ("qty_bq", "price_st", "value_qq", "maker_fee_qq", "taker_fee_qq"):
            assert type(row["payload"][key]) is int
    heights = [row["height"] for row in rows]
    assert heights == sorted(heights)


def test_events_by_account_and_height_range_are_inclusive(ledger: Path) -> None:
    r = ledgerctl("events", "--data", str(ledger), "--account", "u00001", "--from-height",
                  "3", "--to-height", "6", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(3 <= row["height"] <= 6 for row in rows)
    assert all("u00001" in json.dumps(row["payload"]) for row in rows)


def test_blocks_and_verify(ledger: Path) -> None:
    r = ledgerctl("blocks", "--data", str(ledger), "--from", "2", "--to", "4", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["height"] for x in r.stdout.splitlines()] == [2, 3, 4]
    r = ledgerctl("verify", "--data", str(ledger), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True


@pytest.mark.parametrize("args,code,needle", [
    (["info", "--data", "/nonexistent/ledger"], 1, "no ledger at"),
    (["blocks", "--from", "-3"], 2, "--from must be a height"),
    (["events", "--branch", "9"], 1, "no archived branch 9"),
    (["events", "--type", "NoSuchEvent"], 2, "unknown event type"),
    (["rollback", "--to-height", "7"], 1, "not a snapshot height"),
    (["rollback", "--to-height", "99"], 1, "at or above the head"),
])
def test_bad_input_gives_one_line_and_the_right_exit_code(ledger: Path, args: list[str],
                                                         code: int, needle: str) -> None:
    if "--data" not in args:
        args = [*args, "--data", str(ledger)]
    r = ledgerctl(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_malformed_markets_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "markets.toml"
    bad.write_text("[[market]]\nid = 'X-PERP'\noracle_st = 1.5\n")
    r = ledgerctl("init", "--data", str(tmp_path / "d"), "--markets", str(bad))
    assert r.returncode == 2
    assert "oracle_st" in r.stderr and "markets file" in r.stderr
    assert not (tmp_path / "d" / "data.mdb").exists()


def test_submit_malformed_line_names_it_and_appends_nothing(ledger: Path) -> None:
    head = json.loads(ledgerctl("info", "--data", str(ledger), "--json").stdout)["head_hash"]
    lines = ['{"type": "BeginBlock", "time": 2000000000}',
             '{"type": "Deposit", "acct": "u00001", "amount_qq": 5, "ext_ref": "x"}',
             '{"type": "PlaceOrder", "acct": "u00001", "mkt": "BTC-PERP", "side": "BUY", '
             '"qty_bq": 1.5, "price_st": 5000000000}']
    r = ledgerctl("submit", "-", "--data", str(ledger), stdin="\n".join(lines))
    assert r.returncode == 2
    assert "line 3" in r.stderr and "float" in r.stderr
    after = json.loads(ledgerctl("info", "--data", str(ledger), "--json").stdout)["head_hash"]
    assert after == head


def test_submit_appends_blocks_and_reports_rejections(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert ledgerctl("init", "--data", str(data)).returncode == 0
    r = ledgerctl("submit", str(ROOT / "examples" / "commands.jsonl"), "--data", str(data),
                  "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [b["height"] for b in doc["blocks"]] == [1, 2, 3]
    fills = ledgerctl("events", "--data", str(data), "--type", "Filled", "--json")
    rows = [json.loads(x) for x in fills.stdout.splitlines()]
    assert len(rows) == 1
    assert rows[0]["payload"]["maker"] == "alice" and rows[0]["payload"]["taker"] == "bob"
    assert rows[0]["payload"]["qty_bq"] == 50_000_000


def test_submit_refuses_unknown_account_at_the_door(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert ledgerctl("init", "--data", str(data)).returncode == 0
    lines = ['{"type": "BeginBlock", "time": 5}',
             '{"type": "Deposit", "acct": "nobody", "amount_qq": 5, "ext_ref": "x"}']
    r = ledgerctl("submit", "-", "--data", str(data), "--json", stdin="\n".join(lines))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["refused"][0]["line"] == 2
    assert "nobody" in doc["refused"][0]["error"]
    events = ledgerctl("events", "--data", str(data), "--account", "nobody", "--json")
    assert events.stdout.strip() == ""


def test_guards_set_is_logged_and_journaled(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert ledgerctl("init", "--data", str(data), "--guards", "on").returncode == 0
    r = ledgerctl("guards", "set", "off", "--reason", "test", "--operator", "ops",
                  "--data", str(data), "--json")
    assert r.returncode == 0, r.stderr
    ev = ledgerctl("events", "--data", str(data), "--type", "GuardsSet", "--json")
    rows = [json.loads(x) for x in ev.stdout.splitlines()]
    assert rows[-1]["payload"]["enabled"] is False
    j = json.loads(ledgerctl("journal", "--data", str(data), "--json").stdout)
    assert j[-1]["action"] == "guards" and j[-1]["operator"] == "ops"


def test_submit_with_block_time_going_backwards_names_the_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    assert ledgerctl("init", "--data", str(data)).returncode == 0
    lines = ['{"type": "BeginBlock", "time": 50}', '{"type": "CreateAccount", "acct": "a"}',
             '{"type": "BeginBlock", "time": 40}', '{"type": "CreateAccount", "acct": "b"}']
    r = ledgerctl("submit", "-", "--data", str(data), stdin="\n".join(lines))
    assert r.returncode == 2
    assert "line 3" in r.stderr and "BeginBlock.time 40" in r.stderr
    info = json.loads(ledgerctl("info", "--data", str(data), "--json").stdout)
    assert info["head_height"] == 0
