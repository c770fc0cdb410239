"""People read dollars and coins in tables; `--raw` shows quanta; `--json` keeps integers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.demo_chain import demo_ledger, logs_configured  # noqa: F401
from tools.cli import app

runner = CliRunner()


def _run(*args: str) -> str:
    r = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert r.exit_code == 0, (args, r.output, r.exception)
    return r.stdout


def test_account_table_shows_coins_and_dollars_raw_shows_quanta(
        demo_ledger: tuple[Path, dict[str, Any]]) -> None:  # noqa: F811
    data = str(demo_ledger[0])
    doc = json.loads(_run("audit", "account", "u00012", "--data", data, "--json"))
    pos = {p["mkt"]: p for p in doc["positions"]}
    btc = pos["BTC-PERP"]
    human = _run("audit", "account", "u00012", "--data", data)
    raw = _run("audit", "account", "u00012", "--data", data, "--raw")
    # BTC: 1 bq = 1e-10 BTC; 1 st = 1e-9 qq/bq, so $ per BTC = st / 1e5
    coins = format(Decimal(btc["size_bq"]).scaleb(-10).normalize(), "f")
    assert f"{coins} BTC" in human
    assert f"{btc['size_bq']:,}" in raw and "size (bq)" in raw
    assert "BTC" not in raw.split("positions")[1].split("statement")[0].replace("BTC-PERP", "")
    whole, frac = divmod(doc["balance_qq"], 10**6)
    assert f"${whole:,}." in human
    assert f"{doc['balance_qq']:,}" in raw


def test_fills_and_state_tables_use_market_units(
        demo_ledger: tuple[Path, dict[str, Any]]) -> None:  # noqa: F811
    data = str(demo_ledger[0])
    fills = _run("audit", "fills", "--market", "PAXG-PERP", "--limit", "3", "--data", data)
    assert " PAXG" in fills and "$" in fills
    state = _run("audit", "state", "--data", data)
    assert " SOL" in state and "$" in state
    raw = _run("audit", "state", "--data", data, "--raw")
    assert "mark (st)" in raw and "$" not in raw.split("exchange")[0]
