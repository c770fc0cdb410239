"""Audit answers checked against independent computations over the raw events and the engine.

The statement read model is folded from OUT events alone (it never runs the
engine), so comparing its balances with the engine's state at the same height
is a real cross-check; funding, fills and liquidations are recomputed here
from the raw event stream.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import CommandInvalid, NotFound
from ledger.events import outcomes as o
from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.exchange_state import state_at
from tests.projections.conftest import INJECT_AT, SIM

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw(sim_chain: Path) -> list[Any]:
    with ChainStore.open(sim_chain) as store:
        return store.events()


@pytest.fixture
def au(sim_chain: Path) -> Any:
    with Auditor.open(sim_chain) as a:
        yield a


def test_statement_balances_equal_the_engine_state_at_each_height(au: Auditor) -> None:
    head = au.store.head.height
    assert au.as_of.height == head
    for h in (1, 40, 69, 70, INJECT_AT, head):
        engine = state_at(au.store, h)
        for acct in engine.accounts():
            assert au.balance_at(acct, h) == engine.balance(acct), (acct, h)


def test_statement_lines_sum_to_the_balance_change_over_a_range(au: Auditor) -> None:
    lo, hi = 60, 170
    before, after = state_at(au.store, lo - 1), state_at(au.store, hi)
    for acct in after.accounts():
        st = au.statement(acct, from_height=lo, to_height=hi)
        start = before.balance(acct) if acct in before.accounts() else 0
        assert st["opening_balance_qq"] == start
        assert st["closing_balance_qq"] == after.balance(acct)
        assert sum(ln["delta_qq"] for ln in st["lines"]) == after.balance(acct) - start
        assert all(lo <= ln["height"] <= hi for ln in st["lines"])


def test_funding_payments_per_account_sum_to_the_funding_moved(
        au: Auditor, raw: list[Any]) -> None:
    settled: dict[str, dict[str, int]] = {}
    ticks: dict[str, list[tuple[int, str]]] = {}
    for env in raw:
        ev = env.event
        if isinstance(ev, o.FundingSettled):
            per = settled.setdefault(ev.mkt, {})
            per[ev.acct] = per.get(ev.acct, 0) + ev.amount_qq
        elif isinstance(ev, o.FundingTicked | o.FundingTickRejected):
            ticks.setdefault(ev.mkt, []).append(
                (env.seq, "applied" if isinstance(ev, o.FundingTicked) else "rejected"))
    assert settled, "the chain should move some funding"
    for mkt in ("BTC-PERP", "ETH-PERP"):
        doc = au.funding(mkt)
        assert [(t["seq"], t["status"]) for t in doc["ticks"]] == ticks.get(mkt, [])
        assert doc["settlements"]["by_account"] == dict(sorted(settled.get(mkt, {}).items()))
        assert doc["settlements"]["total_qq"] == sum(settled.get(mkt, {}).values())
    # The zeroed index published at INJECT_AT was refused (G1/G3) and is on record.
    btc = au.funding("BTC-PERP")
    rejected = [t for t in btc["ticks"] if t["status"] == "rejected"]
    assert rejected and rejected[0]["height"] == INJECT_AT
    assert rejected[0]["published_index"] == 0
    # Per account, the funding lines of the statements add up to the same totals.
    everyone = {a for per in settled.values() for a in per}
    for acct in everyone:
        lines = au.statement(acct)["lines"]
        got = sum(ln["delta_qq"] for ln in lines if ln["kind"] == "funding")
        assert got == sum(per.get(acct, 0) for per in settled.values())


def test_the_tick_history_cumulates_the_settlements_between_ticks(au: Auditor,
                                                                  raw: list[Any]) -> None:
    doc = au.funding("ETH-PERP")
    applied = [t for t in doc["ticks"] if t["status"] == "applied"]
    assert len(applied) >= 2
    a, b = applied[0], applied[-1]
    between = sum(e.event.amount_qq for e in raw if isinstance(e.event, o.FundingSettled)
                  and e.event.mkt == "ETH-PERP" and a["seq"] < e.seq < b["seq"])
    assert b["settled_cum_qq"] - a["settled_cum_qq"] == between
    assert all(t["prev_index"] == p["new_index"] for p, t in zip(applied, applied[1:],
                                                                  strict=False))


def test_the_liquidation_register_holds_every_liquidation(au: Auditor, raw: list[Any]) -> None:
    liqs = [e for e in raw if isinstance(e.event, o.Liquidated)]
    assert liqs, "the simulated chain should liquidate someone"
    reg = au.liquidations()
    assert [(r["seq"], r["acct"], r["method"]) for r in reg] == [
        (e.seq, e.event.acct, e.event.method.name) for e in liqs]
    for rec, env in zip(reg, liqs, strict=True):
        ev = env.event
        line = next(ln for ln in au.statement(ev.acct, from_height=env.height,
                                              to_height=env.height)["lines"]
                    if ln["seq"] == env.seq)
        assert line["kind"] == "liquidation" and line["delta_qq"] == rec["acct_delta_qq"]
        assert ev.method.name == "VAULT"
        # Closed at the mark with funding settled: the account keeps AV - fee + deficit.
        assert line["balance_qq"] == ev.av_qq - ev.fee_qq + ev.deficit_qq
    one = reg[0]["acct"]
    assert all(r["acct"] == one for r in au.liquidations(account=one))


def test_deleveragings_complete_their_liquidation_in_register_and_statements(
        adl_chain: Path) -> None:
    with Auditor.open(adl_chain) as au, ChainStore.open(adl_chain) as store:
        raw = store.events()
        dels = [e for e in raw if isinstance(e.event, o.Deleveraged)]
        assert dels, "the chain should auto-deleverage"
        reg = au.liquidations()
        assert {r["method"] for r in reg} == {"ADL"}
        assert sorted(d["seq"] for r in reg for d in r["deleveraged"]) == [e.seq for e in dels]
        offset = dels[0].event.offset
        assert any(r["acct"] != offset for r in au.liquidations(account=offset))
        heights = sorted({e.height for e in dels})
        for h in (heights[0], heights[-1], store.head.height):
            engine = state_at(store, h)
            for acct in engine.accounts():
                assert au.balance_at(acct, h) == engine.balance(acct), (acct, h)


def test_fills_of_an_account_are_the_raw_fills_it_took_part_in(au: Auditor,
                                                               raw: list[Any]) -> None:
    acct = "u00003"
    mine = [e for e in raw if isinstance(e.event, o.Filled) and acct in (e.event.maker,
                                                                         e.event.taker)]
    rows = au.fills(account=acct)
    assert [r["seq"] for r in rows] == [e.seq for e in mine]
    lines = {ln["seq"]: ln for ln in au.statement(acct)["lines"] if ln["kind"] == "fill"}
    for r in rows:
        assert lines[r["seq"]]["delta_qq"] == r["delta_qq"]
        assert lines[r["seq"]]["fee_qq"] == r["fee_qq"]
    assert len(au.fills(account=acct, limit=3)) == min(3, len(rows))
    btc = au.fills(market="BTC-PERP", from_height=50, to_height=60)
    assert all(r["mkt"] == "BTC-PERP" and 50 <= r["height"] <= 60 for r in btc)


def test_state_at_a_height_sums_up_the_exchange(au: Auditor) -> None:
    doc = au.state(at_height=INJECT_AT)
    assert doc["state_hash"] == au.store.block(INJECT_AT).state_hash.hex()
    for m in doc["markets"]:
        assert m["open_interest_bq"] == m["short_interest_bq"]
    btc = next(m for m in doc["markets"] if m["mkt"] == "BTC-PERP")
    assert btc["mode"] == "HALTED"  # the zeroed tick halted it (G1)
    engine = state_at(au.store, INJECT_AT)
    assert doc["vault_balance_qq"] == engine.balance("LIQ_VAULT")
    assert doc["fees_balance_qq"] == au.balance_at("FEES", INJECT_AT)
    ticks = [t for t in au.funding("ETH-PERP", to_height=INJECT_AT)["ticks"]
             if t["status"] == "applied"]
    eth = next(m for m in doc["markets"] if m["mkt"] == "ETH-PERP")
    assert eth["funding_index"] == ticks[-1]["new_index"]


def test_the_account_query_puts_time_travel_and_statement_together(au: Auditor) -> None:
    doc = au.account("u00005", at_height=120, from_height=100)
    assert doc["height"] == 120 and doc["statement_balance_qq"] == doc["balance_qq"]
    assert doc["statement"]["closing_balance_qq"] == doc["balance_qq"]
    assert all(100 <= ln["height"] <= 120 for ln in doc["statement"]["lines"])
    assert doc["account_value_qq"] - doc["imr_qq"] == doc["free_qq"]
    with pytest.raises(NotFound):
        au.account("nobody", at_height=120)
    with pytest.raises(CommandInvalid):
        au.account("u00005", at_height=au.store.head.height + 1)
    with pytest.raises(CommandInvalid):
        au.statement("u00005", from_height=50, to_height=10)
    with pytest.raises(CommandInvalid, match="known branches"):
        au.events(branch=4)


def test_branch_queries_answer_for_the_archived_branch(branched_chain: Path) -> None:
    with Auditor.open(branched_chain) as au:
        rec = au.store.branch(1)
        last = rec["last_height"]
        engine = state_at(au.store, last, branch=1)
        for acct in ("u00001", "u00010", "LIQ_VAULT", "FEES"):
            doc = au.account(acct, branch=1)
            assert doc["height"] == last and doc["balance_qq"] == engine.balance(acct)
            assert doc["statement_balance_qq"] == doc["balance_qq"]
            st = au.statement(acct, from_height=101, branch=1)
            before = state_at(au.store, 100).balance(acct)
            assert st["opening_balance_qq"] == before
            assert st["closing_balance_qq"] - before == sum(ln["delta_qq"]
                                                           for ln in st["lines"])
        evs = au.events(from_height=101, branch=1, type_name="Filled", limit=50)
        assert evs and all(101 <= e["height"] <= last for e in evs)
        with ChainStore.open(branched_chain) as store:
            archived = {e.seq for e in store.events_by(type_code=o.Filled.TYPE_CODE,  # type: ignore[attr-defined]
                                                       branch=1, limit=50)}
        assert {e["seq"] for e in evs} == archived
        canonical = au.fills(from_height=101, limit=50)
        assert canonical and [r["seq"] for r in canonical] != [e["seq"] for e in evs]
        # The rollback carried the branch's external flows forward into the new chain:
        # they are statement lines of the canonical chain at the recovery block.
        flows = au.events(type_name="RolledBack")[0]["payload"]["flows"]
        assert flows
        for f in flows[:5]:
            lines = au.statement(f["acct"], from_height=101, to_height=101)["lines"]
            carried = [ln for ln in lines if ln["kind"] == "carried_forward"]
            assert [ln["orig_seq"] for ln in carried if ln["ext_ref"] == f["ext_ref"]] == [
                f["orig_seq"]]
        head = au.store.head.height
        engine = state_at(au.store, head)
        for acct in engine.accounts():
            assert au.balance_at(acct, head) == engine.balance(acct), acct


def test_export_writes_the_same_rows_as_jsonl_and_csv(au: Auditor) -> None:
    j, c = io.StringIO(), io.StringIO()
    n = au.export("statement", "jsonl", j, account="u00003")
    m = au.export("statement", "csv", c, account="u00003")
    rows = [json.loads(line) for line in j.getvalue().splitlines()]
    table = list(csv.DictReader(io.StringIO(c.getvalue())))
    assert n == m == len(rows) == len(table) > 0
    assert sum(r["delta_qq"] for r in rows) == sum(int(r["delta_qq"]) for r in table)
    everyone = io.StringIO()
    total = au.export("statement", "jsonl", everyone, from_height=100, to_height=110)
    per_acct = [json.loads(x) for x in everyone.getvalue().splitlines()]
    assert total == len(per_acct) and all(100 <= r["height"] <= 110 for r in per_acct)
    assert au.export("funding", "csv", io.StringIO(), market="BTC-PERP") > 0
    with pytest.raises(CommandInvalid):
        au.export("statement", "xml", io.StringIO())


def test_queries_work_while_the_sequencer_appends_in_another_process(
        sim_chain: Path, fresh_copy: Callable[[Path], Path]) -> None:
    path = fresh_copy(sim_chain)
    writer = subprocess.Popen([sys.executable, str(ROOT / "tests/projections/chains.py"),
                               "append", str(path), "40", str(SIM["seed"])], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    rounds = 0
    try:
        while True:
            done = writer.poll() is not None
            with Auditor.open(path) as au:
                ck = au.as_of
                assert ck.height >= 0
                engine = state_at(au.store, ck.height)
                for acct in ("u00002", "u00007", "LIQ_VAULT"):
                    assert au.balance_at(acct, ck.height) == engine.balance(acct)
                doc = au.account("u00002", at_height=ck.height)
                assert doc["statement_balance_qq"] == doc["balance_qq"]
            rounds += 1
            if done:
                break
            time.sleep(0.05)
    finally:
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    appended = [int(line.split()[1]) for line in out.splitlines() if line.startswith("A ")]
    assert appended and rounds >= 2
    with Auditor.open(path) as au:
        assert au.as_of.height == appended[-1] == au.store.head.height
