"""No traceback reaches a user: the top-level handler of `ledgerctl` (tools/cli.py main)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A command that fails the way a bug would: registered on the real app, run through the
# real entry point in a real process.
_BUGGY = """
import sys
import typer
from tools import cli

@cli.app.command("explode")
def explode(json_out: bool = typer.Option(False, "--json")) -> None:
    {}

sys.argv = ["ledgerctl", "explode", *sys.argv[1:]]
cli.main()
"""


def _run(body: str, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _BUGGY.format(body), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_an_unexpected_exception_is_one_line_and_exit_1() -> None:
    r = _run("{}['BTC-PER6']")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "unexpected KeyError" in lines[0] and "BTC-PER6" in lines[0]
    assert "PERPLEDGER_LOG_LEVEL=debug" in lines[0]


def test_the_traceback_goes_to_the_debug_log() -> None:
    r = _run("raise RecursionError('maximum recursion depth exceeded')",
             env={"PERPLEDGER_LOG_LEVEL": "debug"})
    assert r.returncode == 1
    records = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    debug = [x for x in records if x.get("event") == "unexpected error"]
    assert debug and debug[0]["level"] == "debug"
    assert "Traceback" in debug[0]["exception"] and "RecursionError" in debug[0]["exception"]
    assert r.stderr.strip().splitlines()[-1].startswith("error: unexpected RecursionError")


def test_json_mode_gets_the_error_as_a_document() -> None:
    r = _run("raise UnicodeEncodeError('utf-8', 'a\\ud800', 1, 2, 'surrogates not allowed')",
             "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 1 and "unexpected UnicodeEncodeError" in doc["error"], doc


def test_ledger_errors_keep_their_exit_codes(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "tools.cli", "info", "--data",
                        str(tmp_path / "none"), "--json"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["exit_code"] == 1
    r = subprocess.run([sys.executable, "-m", "tools.cli", "blocks", "--from", "-3"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
