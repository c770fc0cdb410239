"""`report incident` and `audit plot`: every number on the page is the CLI's `--json`."""

from __future__ import annotations

import json
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from projections import units
from tests.demo_chain import BRANCH, cli_json, demo_ledger, logs_configured  # noqa: F401
from tools.cli import app

runner = CliRunner()
Demo = tuple[Path, dict[str, Any]]


class Numbers(HTMLParser):
    """Collects (data-path, data-raw, text) of every number span and every src."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[list[str]] = []
        self.srcs: list[str] = []
        self._open: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "src" in a or "href" in a:
            self.srcs.append(str(a.get("src") or a.get("href")))
        if tag == "span" and a.get("class") == "n":
            self._open = [str(a["data-path"]), str(a["data-raw"]), ""]

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._open is not None:
            self.spans.append(self._open)
            self._open = None


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


@pytest.fixture(scope="module")
def report(demo_ledger: Demo, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    doc = cli_json("report", "incident", "--branch", str(BRANCH), "--out", str(out), "--data",
                str(demo_ledger[0]))
    return doc["report"], out.read_text()


def test_every_number_on_the_page_is_in_the_json(report: tuple[dict[str, Any], str]) -> None:
    doc, page = report
    p = Numbers()
    p.feed(page)
    assert len(p.spans) > 150
    for path, raw, text in p.spans:
        value = _at(doc, path)
        assert value == int(raw), path
        if path.endswith("_qq"):
            assert text == units.usd(value), path
    # self-contained: no script, every image inline
    assert "<script" not in page
    assert p.srcs and all(s.startswith("data:image/png;base64,") for s in p.srcs)


def test_the_json_equals_the_cli_for_each_question(demo_ledger: Demo,  # noqa: F811
                                                   report: tuple[dict[str, Any], str]) -> None:
    doc, _ = report
    d = ["--data", str(demo_ledger[0])]
    b = str(BRANCH)
    assert doc["branch_record"] == next(r for r in cli_json("branches", *d)
                                        if r["branch"] == BRANCH)
    assert doc["hashes"]["verify"]["chain"] == cli_json("verify", *d)
    assert doc["hashes"]["verify"]["branch"] == cli_json("verify", "--branch", b, *d)
    assert doc["plan"] == cli_json("refunds", "plan", "--branch", b, *d)
    whatif = cli_json("audit", "whatif", "--branch", b, *d)
    assert doc["whatif"] == {k: v for k, v in whatif.items() if k != "accounts"}
    assert doc["liquidations"]["totals"]["counterfactual"] == \
        whatif["liquidated_in_counterfactual"]
    hs = doc["heights"]
    liqs = cli_json("audit", "liquidations", "--branch", b, "--from-height",
                 str(hs["first_suspect"]), *d)["liquidations"]
    per: dict[int, int] = {}
    for r in liqs:
        per[r["height"]] = per.get(r["height"], 0) + 1
    assert {r["height"]: r["count"] for r in doc["liquidations"]["branch"]} == per
    assert doc["liquidations"]["totals"]["branch"] == len(liqs) == 10
    snap = next(s for s in cli_json("snapshots", *d) if s["height"] == hs["snapshot"])
    assert doc["hashes"]["snapshot"] == snap
    assert doc["hashes"]["rollback"]["snapshot_state_hash"] == snap["state_hash"]
    lo = doc["window"]["from_height"]
    for m in doc["markets"]:
        fund = cli_json("audit", "funding", "--market", m["mkt"], "--branch", b, "--from-height",
                     str(lo), "--to-height", str(hs["last_suspect"]), *d)
        assert [(t["seq"], t.get("new_index")) for t in m["funding"]["branch"]] == \
            [(t["seq"], t.get("new_index")) for t in fund["ticks"]]
        ev = cli_json("audit", "events", "--type", "OraclePriceUpdated", "--market", m["mkt"],
                   "--from-height", str(lo), *d)["events"]
        assert [(r["seq"], r["mark_st"]) for r in m["mark"]["chain"]] == \
            [(e["seq"], e["payload"]["mark_st"]) for e in ev]
        state = cli_json("audit", "state", "--at-height", str(lo), *d)
        assert m["at_window_start"]["funding_index"] == next(
            x["funding_index"] for x in state["markets"] if x["mkt"] == m["mkt"])
    journal = cli_json("journal", *d)
    assert [r["journal_id"] for r in doc["timeline"] if r["where"] == "journal"] == \
        [j["id"] for j in journal]
    # the zeroed ticks are the bad ticks, on the incident markets only
    bad = {m["mkt"]: [t["height"] for t in m["bad_ticks"]] for m in doc["markets"]}
    assert bad == {"ETH-PERP": [101], "PAXG-PERP": [101], "BTC-PERP": [], "SOL-PERP": []}


def test_the_page_is_deterministic(demo_ledger: Demo, tmp_path: Path,  # noqa: F811
                                   report: tuple[dict[str, Any], str]) -> None:
    out = tmp_path / "again.html"
    cli_json("report", "incident", "--branch", str(BRANCH), "--out", str(out), "--data",
          str(demo_ledger[0]))
    assert out.read_text() == report[1]


def test_compensation_report_without_rollback(demo_ledger: Demo, tmp_path: Path  # noqa: F811
                                              ) -> None:
    out = tmp_path / "comp.html"
    doc = cli_json("report", "incident", "--from-height", "101", "--out", str(out), "--data",
                str(demo_ledger[0]))["report"]
    assert doc["kind"] == "compensation"
    assert doc["heights"]["snapshot"] == 100  # the newest snapshot below the suspect height
    # The plan is the library's compensation plan, as `compensate plan --json` prints it.
    plan = cli_json("compensate", "plan", "--from-height", "101", "--data",
                    str(demo_ledger[0]))
    assert doc["plan"] == plan
    assert "No compensation plan" not in out.read_text()


@pytest.mark.parametrize("args, message", [
    ([], "exactly one of --branch"),
    (["--branch", "1", "--from-height", "101"], "exactly one of --branch"),
    (["--branch", "9"], "--branch 9 is not an archived branch"),
    (["--from-height", "99999"], "--from-height must be between"),
])
def test_report_refuses_bad_arguments(demo_ledger: Demo, tmp_path: Path,  # noqa: F811
                                      args: list[str], message: str) -> None:
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["report", "incident", *args, "--out", str(out), "--data",
                            str(demo_ledger[0])])
    assert r.exit_code != 0
    assert message in str(r.exception)
    assert not out.exists()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    return w, h


@pytest.mark.parametrize("what, extra", [
    ("funding", ["--market", "PAXG-PERP"]),
    ("mark", ["--market", "ETH-PERP"]),
    ("liquidations", []),
    ("equity", ["--account", "u00183"]),
])
def test_audit_plot_writes_a_png_of_the_series_the_cli_shows(
        demo_ledger: Demo, tmp_path: Path, what: str, extra: list[str]) -> None:  # noqa: F811
    d = ["--data", str(demo_ledger[0])]
    out = tmp_path / f"{what}.png"
    doc = cli_json("audit", "plot", what, *extra, "--from-height", "90", "--to-height", "112",
                "--branch", str(BRANCH), "--out", str(out), *d)
    assert _png_size(out) == (800, 320)
    assert doc["series"]
    if what == "liquidations":
        liqs = cli_json("audit", "liquidations", "--branch", "1", "--from-height", "90", *d)
        assert sum(r["count"] for r in doc["series"]) == len(liqs["liquidations"]) == 10
    if what == "funding":
        fund = cli_json("audit", "funding", "--market", "PAXG-PERP", "--branch", "1",
                     "--from-height", "90", "--to-height", "112", *d)
        assert [t["new_index"] for t in doc["series"]] == [t["new_index"]
                                                          for t in fund["ticks"]] == [0]
    if what == "equity":
        # liquidated at 101 on the branch: nothing left after it
        by_h = {r["height"]: r["account_value_qq"] for r in doc["series"]}
        assert by_h[100] > 0 and by_h[112] == 0
        acct = cli_json("audit", "account", "u00183", "--at-height", "100", *d)
        assert by_h[100] == acct["account_value_qq"]


def test_audit_plot_refuses_what_it_cannot_draw(demo_ledger: Demo, tmp_path: Path  # noqa: F811
                                                ) -> None:
    d = ["--data", str(demo_ledger[0])]
    for args, message in ((["funding"], "needs --market"),
                          (["mark", "--market", "NOPE-PERP"], "unknown market"),
                          (["equity"], "needs --account"),
                          (["volume"], "plot must be one of")):
        r = runner.invoke(app, ["audit", "plot", *args, "--out", str(tmp_path / "x.png"), *d])
        assert r.exit_code != 0 and message in str(r.exception), (args, r.output)


def test_a_given_plan_is_rendered_generically_by_cause(demo_ledger: Demo,  # noqa: F811
                                                       tmp_path: Path) -> None:
    """A compensation plan shaped as SPEC section 13 describes (harm_by_cause, corrections,
    flagged_flows) renders its causes as columns and totals, whatever keys it has."""
    plan = {"rule": "comp = max(0, E_C - E_B)", "lines": [
        {"acct": "u00003", "delta_qq": 5_000_000, "harm_qq": 5_000_000, "amount_qq": 5_000_000,
         "harm_by_cause": {"liquidation": 4_000_000, "funding": 1_000_000, "trading": 0,
                           "flows": 0}},
        {"acct": "u00010", "delta_qq": 2_500_000, "harm_qq": 2_500_000, "amount_qq": 2_500_000,
         "harm_by_cause": {"liquidation": 0, "funding": 2_500_000, "trading": 0, "flows": 0}}],
        "corrections": [{"seq": 41_000, "type": "FundingTick", "mkt": "PAXG-PERP",
                         "published": 0, "used": 480_001_073_312}],
        "flagged_flows": [{"seq": 41_100, "acct": "u00010", "amount_qq": 7, "reason": "x"}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"plan": plan}))
    out = tmp_path / "comp.html"
    doc = cli_json("report", "incident", "--from-height", "101", "--plan", str(path), "--out",
                   str(out), "--data", str(demo_ledger[0]))["report"]
    causes = {c["cause"]: (c["total_qq"], c["accounts"]) for c in doc["plan_by_cause"]}
    assert causes == {"liquidation": (4_000_000, 1), "funding": (3_500_000, 2),
                      "trading": (0, 0), "flows": (0, 0)}
    page = out.read_text()
    assert "harm: liquidation" in page and "harm: funding" in page
    assert 'data-path="plan.lines.1.harm_by_cause.funding" data-raw="2500000"' in page
    assert "flagged flows" in page
    paxg = next(m for m in doc["markets"] if m["mkt"] == "PAXG-PERP")
    assert paxg["bad_ticks"][0]["used"] == 480_001_073_312
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    r = runner.invoke(app, ["report", "incident", "--from-height", "101", "--plan", str(bad),
                            "--out", str(out), "--data", str(demo_ledger[0])])
    assert r.exit_code != 0 and "holds no plan" in str(r.exception)
