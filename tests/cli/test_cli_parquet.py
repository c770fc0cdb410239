"""`audit export --format parquet`: exact integer columns, read back by DuckDB, totals
equal to the CLI's JSON for the same question."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from projections.parquet import column_type
from tests.demo_chain import BRANCH, cli_json, demo_ledger, logs_configured  # noqa: F401
from tools.cli import app

runner = CliRunner()
WHATS = ("statement", "fills", "funding", "liquidations", "events")


@pytest.fixture(scope="module")
def exported(demo_ledger: tuple[Path, dict[str, Any]],  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data = str(demo_ledger[0])
    out = tmp_path_factory.mktemp("parquet")
    files = {}
    for what in WHATS:
        files[what] = out / f"{what}.parquet"
        doc = cli_json("audit", "export", what, "--format", "parquet", "--output",
                    str(files[what]), "--branch", str(BRANCH), "--data", data)
        assert doc["rows"] > 0 and doc["format"] == "parquet"
    return files


def test_no_float_column_and_height_and_branch_everywhere(exported: dict[str, Path]) -> None:
    for what, path in exported.items():
        schema = pq.read_schema(path)
        assert schema.names[:2] == ["branch", "height"], what
        for field in schema:
            assert not pa.types.is_floating(field.type), (what, field)
        con = duckdb.connect()
        branches = con.execute(f"select distinct branch from '{path}'").fetchall()
        assert branches == [(BRANCH,)], what
    fills = pq.read_schema(exported["fills"])
    assert fills.field("value_qq").type == pa.int64()
    funding = pq.read_schema(exported["funding"])
    assert funding.field("new_index").type == pa.decimal128(38, 0)


def test_duckdb_totals_equal_the_cli_json(demo_ledger: tuple[Path, dict[str, Any]],  # noqa: F811
                                          exported: dict[str, Path]) -> None:
    data = str(demo_ledger[0])
    con = duckdb.connect()
    b = str(BRANCH)

    fills = cli_json("audit", "fills", "--branch", b, "--data", data)["fills"]
    n, value, fees = con.execute(
        f"select count(*), sum(value_qq), sum(maker_fee_qq + taker_fee_qq) "
        f"from '{exported['fills']}'").fetchone()
    assert n == len(fills)
    assert int(value) == sum(r["value_qq"] for r in fills)
    assert int(fees) == sum(r["maker_fee_qq"] + r["taker_fee_qq"] for r in fills)

    liqs = cli_json("audit", "liquidations", "--branch", b, "--data", data)["liquidations"]
    n, deficit, accts = con.execute(
        f"select count(*), sum(deficit_qq), list(acct order by seq) "
        f"from '{exported['liquidations']}'").fetchone()
    assert n == len(liqs) == 10
    assert int(deficit) == sum(r["deficit_qq"] for r in liqs)
    assert accts == [r["acct"] for r in liqs]

    for mkt in ("PAXG-PERP", "BTC-PERP"):
        doc = cli_json("audit", "funding", "--market", mkt, "--branch", b, "--data", data)
        n, last = con.execute(
            f"select count(*), arg_max(new_index, seq) from '{exported['funding']}' "
            f"where market = ? and status = 'applied'", [mkt]).fetchone()
        assert n == doc["applied"]
        assert int(last) == doc["last_index"]  # PAXG: the zeroed index, exactly 0

    acct = "u00012"
    doc = cli_json("audit", "account", acct, "--branch", b, "--data", data)
    st = doc["statement"]
    n, delta = con.execute(f"select count(*), sum(delta_qq) from '{exported['statement']}' "
                           f"where acct = ?", [acct]).fetchone()
    assert n == len(st["lines"])
    assert int(delta) == st["total_delta_qq"]

    evs = cli_json("audit", "events", "--type", "Liquidated", "--branch", b, "--data", data)
    n, deficit = con.execute(
        f"select count(*), sum(cast(json_extract(payload, '$.deficit_qq') as hugeint)) "
        f"from '{exported['events']}' where type = 'Liquidated'").fetchone()
    assert n == len(evs["events"])
    assert int(deficit) == sum(e["payload"]["deficit_qq"] for e in evs["events"])


def test_column_types_follow_names_and_refuse_floats() -> None:
    assert column_type("value_qq", [1, None, -5]) == pa.int64()
    assert column_type("dust_cum", [1]) == pa.decimal128(38, 0)
    assert column_type("balance_qq", [2**63]) == pa.decimal128(38, 0)
    from ledger.errors import CommandInvalid

    with pytest.raises(CommandInvalid, match="float"):
        column_type("price", [1.5])
    with pytest.raises(CommandInvalid, match="'x' mixes"):
        column_type("x", [1, "a"])


def test_parquet_without_output_is_refused(demo_ledger: tuple[Path, dict[str, Any]]  # noqa: F811
                                           ) -> None:
    r = runner.invoke(app, ["audit", "export", "fills", "--format", "parquet", "--data",
                            str(demo_ledger[0])])
    assert r.exit_code != 0
    assert "--output" in str(r.exception)
