"""The audit contract: one suite of audit answers, run against every store that holds them.

As eventsourcing runs one recorder test suite against POPO, SQLite and
PostgreSQL, `AuditContract` is run against the LMDB ledger with its read
models and against a PostgreSQL replica the block replicator fed from the
same chain (`test_audit_contract.py`). Each answer is checked against an
independent computation (the raw events of the LMDB system of record, the
engine's state at a height), and every query is also compared value for
value with LMDB's own answer, so the two stores are interchangeable.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import CommandInvalid, NotFound
from ledger.events import outcomes as o
from ledger.store.chain import ChainStore
from projections.audit import Auditor
from projections.exchange_state import state_at
from tests.projections.conftest import INJECT_AT


def same_error(exc: type[Exception], call: Callable[[Any], object], *targets: Any) -> None:
    """`call` raises `exc` on every target, with the same message."""
    messages = []
    for target in targets:
        with pytest.raises(exc) as info:
            call(target)
        messages.append(str(info.value))
    assert len(set(messages)) == 1, messages


class AuditContract:
    """Audit answers any store must give (subclasses say how to open the store)."""

    def open_au(self, chain: Path) -> AbstractContextManager[Auditor]:
        raise NotImplementedError

    @pytest.fixture
    def au(self, sim_chain: Path) -> Iterator[Auditor]:
        with self.open_au(sim_chain) as a:
            yield a

    @pytest.fixture(scope="class")
    @classmethod
    def raw(cls, sim_chain: Path) -> list[Any]:
        with ChainStore.open(sim_chain) as store:
            return store.events()

    # -- the chain through the read seam -----------------------------------------------------

    def test_chain_reads_equal_the_system_of_record(self, branched_chain: Path) -> None:
        with self.open_au(branched_chain) as au, ChainStore.open(branched_chain) as ref:
            st = au.store
            assert st.chain_id == ref.chain_id and st.genesis_hash == ref.genesis_hash
            assert st.head == ref.head and st.config == ref.config
            for branch in (None, 1):
                assert st.blocks(branch=branch) == ref.blocks(branch=branch)
                assert list(st.iter_block_bytes(branch=branch)) == list(
                    ref.iter_block_bytes(branch=branch))
                assert st.read_blocks(90, 120, branch=branch, max_events=500) == \
                    ref.read_blocks(90, 120, branch=branch, max_events=500)
                for kw in ({"account": "u00004"}, {"market": "ETH-PERP", "from_height": 95},
                           {"type_code": o.Filled.TYPE_CODE, "to_height": 130},  # type: ignore[attr-defined]
                           {"account": "u00002", "market": "BTC-PERP", "limit": 7},
                           {"from_height": 100, "to_height": 102}, {"account": ""}):
                    assert st.events_by(branch=branch, **kw) == ref.events_by(branch=branch,
                                                                             **kw), kw
            assert st.branches() == ref.branches() and st.journal() == ref.journal()
            assert st.snapshots() == ref.snapshots()
            assert st.snapshot(100) == ref.snapshot(100)
            assert st.nearest_snapshot(125) == ref.nearest_snapshot(125)
            seqs = [1, 5, ref.head.seq, ref.head.seq + 10]
            assert st.event_bytes(seqs) == ref.event_bytes(seqs)
            for call in (lambda s: s.block(10**6), lambda s: s.branch(9),
                         lambda s: s.snapshot(7), lambda s: s.block(3, branch=9)):
                same_error(NotFound, call, st, ref)

    def test_every_query_answers_as_the_lmdb_ledger_does(self, branched_chain: Path) -> None:
        queries: list[tuple[str, dict[str, Any]]] = [
            ("account", {"acct": "u00007"}),
            ("account", {"acct": "u00007", "at_height": 120, "from_height": 90}),
            ("account", {"acct": "u00007", "branch": 1}),
            ("statement", {"acct": "FEES", "from_height": 95, "to_height": 140}),
            ("statement", {"acct": "u00003", "from_height": 120, "branch": 1, "limit": 4}),
            ("fills", {"account": "u00009", "from_height": 50}),
            ("fills", {"market": "SOL-PERP", "branch": 1, "limit": 20}),
            ("funding", {"market": "ETH-PERP"}),
            ("funding", {"market": "BTC-PERP", "from_height": 101, "branch": 1}),
            ("liquidations", {}), ("liquidations", {"branch": 1}),
            ("events", {"type_name": "RolledBack"}),
            ("events", {"account": "u00011", "market": "ETH-PERP", "limit": 30}),
            ("events", {"from_height": 140, "branch": 1}),
            ("state", {"at_height": 77}), ("state", {"branch": 1}),
            ("balance_at", {"acct": "LIQ_VAULT", "height": 130, "branch": 1}),
        ]
        with self.open_au(branched_chain) as au, Auditor.open(branched_chain) as ref:
            for name, kw in queries:
                args = [kw.pop("acct")] if "acct" in kw else []
                if name == "balance_at":
                    args.append(kw.pop("height"))
                if name == "funding":
                    args.append(kw.pop("market"))
                got = getattr(au, name)(*args, **kw)
                want = getattr(ref, name)(*args, **kw)
                assert got == want, (name, args, kw)
            for what in ("statement", "fills", "liquidations", "events"):
                mine, theirs = io.StringIO(), io.StringIO()
                au.export(what, "csv", mine, from_height=100, to_height=110, branch=1)
                ref.export(what, "csv", theirs, from_height=100, to_height=110, branch=1)
                assert mine.getvalue() == theirs.getvalue(), what
            for bad in (lambda a: a.events(branch=4), lambda a: a.state(at_height=10**6),
                        lambda a: a.funding("NOPE-PERP"), lambda a: a.events(type_name="Nope")):
                same_error(CommandInvalid, bad, au, ref)
            same_error(NotFound, lambda a: a.account("nobody", at_height=50), au, ref)

    # -- answers checked against independent computations ------------------------------------

    def test_statement_balances_equal_the_engine_state_at_each_height(self, au: Auditor) -> None:
        head = au.store.head.height
        assert au.as_of.height == head
        for h in (1, 40, 69, 70, INJECT_AT, head):
            engine = state_at(au.store, h)
            for acct in engine.accounts():
                assert au.balance_at(acct, h) == engine.balance(acct), (acct, h)

    def test_statement_lines_sum_to_the_balance_change_over_a_range(self, au: Auditor) -> None:
        lo, hi = 60, 170
        before, after = state_at(au.store, lo - 1), state_at(au.store, hi)
        for acct in after.accounts():
            st = au.statement(acct, from_height=lo, to_height=hi)
            start = before.balance(acct) if acct in before.accounts() else 0
            assert st["opening_balance_qq"] == start
            assert st["closing_balance_qq"] == after.balance(acct)
            assert sum(ln["delta_qq"] for ln in st["lines"]) == after.balance(acct) - start
            assert all(lo <= ln["height"] <= hi for ln in st["lines"])

    def test_funding_payments_per_account_sum_to_the_funding_moved(self,
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

    def test_the_tick_history_cumulates_the_settlements_between_ticks(self, au: Auditor,
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

    def test_the_liquidation_register_holds_every_liquidation(self, au: Auditor,
                                                              raw: list[Any]) -> None:
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

    def test_deleveragings_complete_their_liquidation_in_register_and_statements(self,
            adl_chain: Path) -> None:
        with self.open_au(adl_chain) as au, ChainStore.open(adl_chain) as store:
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

    def test_fills_of_an_account_are_the_raw_fills_it_took_part_in(self, au: Auditor,
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

    def test_state_at_a_height_sums_up_the_exchange(self, au: Auditor) -> None:
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

    def test_the_account_query_puts_time_travel_and_statement_together(self, au: Auditor) -> None:
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

    def test_branch_queries_answer_for_the_archived_branch(self, branched_chain: Path) -> None:
        with self.open_au(branched_chain) as au:
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

    def test_export_writes_the_same_rows_as_jsonl_and_csv(self, au: Auditor) -> None:
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
