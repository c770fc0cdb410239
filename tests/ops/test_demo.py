"""The incident demo, both ways, with exact figures for a fixed seed (seed 7, 200 users)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ledger.events import outcomes as o
from ledger.sequencer import Sequencer
from ledger.store.chain import ChainStore
from projections import recovery
from tools.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]
LIQUIDATED = ["u00003", "u00010", "u00016", "u00053", "u00054", "u00065", "u00122", "u00183",
              "u00193", "u00199"]


def test_guards_off_bogus_liquidations_rollback_and_refunds(tmp_path: Path) -> None:
    s = run_demo(tmp_path / "demo", guards=False, accounts=200, seed=7)
    assert s["funding_ticks_rejected"] == 0
    assert s["liquidated_on_bad_branch"] == 10
    assert s["bogus_liquidations"] == 10
    assert s["positions_restored"] == 10
    assert s["events_archived"] == 2287
    assert s["flows_carried_forward"] == 54
    assert s["prices_carried_forward"] == 4
    assert s["corrections"] == 2  # the two zeroed ticks, recomputed in the counterfactual
    # Before acting: roll back and refund 72 accounts, or compensate 96 on the chain as it
    # stands (there the 10 bogus liquidations and the zeroed funding are losses to pay).
    a = s["assess"]
    assert (a["rollback_refund_accounts"], a["rollback_refund_total_qq"]) == (72, 1_928_400_891)
    assert (a["compensation_accounts"], a["compensation_total_qq"]) == (96, 593_651_830_864)
    assert a["compensation_by_cause_qq"] == {
        "trading": -197_856_844, "liquidation": 17_207_947_744, "funding": 576_641_739_964,
        "flows": 0, "refunds": 0, "other": 0}
    # The rollback restored the positions; the refunds pay what it could not restore:
    # the P&L of the trades it reversed and the funding it undid. No flow is harm.
    assert s["refunded_accounts"] == 72
    assert s["refunded_total"] == 1_928_400_891 == a["rollback_refund_total_qq"]
    assert s["refund_by_cause_qq"] == {"trading": 1_927_827_120, "liquidation": 0,
                                       "funding": 573_771, "flows": 0, "refunds": 0,
                                       "other": 0}
    assert s["vault_before"] == 20_000_000_000_000
    assert s["vault_after"] == s["vault_before"] - s["refunded_total"] == 19_998_071_599_109
    assert s["refunds_pro_rata"] is False
    assert s["state_hash_after_rollback"] == s["snapshot_state_hash"]
    assert s["verified"] is True
    with ChainStore.open(tmp_path / "demo") as store:
        # Every liquidation happened in the block with the zeroed index, and the
        # archived branch still answers for each of them.
        liqs = store.events_by(type_code=o.Liquidated.TYPE_CODE, branch=s["branch"])
        assert sorted(e.event.acct for e in liqs) == LIQUIDATED
        assert {e.height for e in liqs} == {s["zero_index_height"]}
        assert store.events_by(type_code=o.Liquidated.TYPE_CODE,
                               from_height=s["zero_index_height"]) == []
        refunds = store.events_by(type_code=o.RefundIssued.TYPE_CODE)
        assert len(refunds) == 72
        assert sum(e.event.amount_qq for e in refunds) == s["refunded_total"]
        assert {e.event.source for e in refunds} == {"LIQ_VAULT"}
    # `refunds issue` after the demo pays nothing more: the demo paid exactly what it pays.
    with Sequencer.open(tmp_path / "demo") as seq:
        again = recovery.issue_refunds(seq, s["branch"], reason="again", operator="tests")
        assert again.paid == [] and again.header is None


def test_guards_on_refuse_the_zeroed_index_and_nobody_is_liquidated(tmp_path: Path) -> None:
    s = run_demo(tmp_path / "demo", guards=True, accounts=200, seed=7)
    assert s["funding_ticks_rejected"] == 2
    assert s["markets_left_ok"] == ["PAXG-PERP", "ETH-PERP"]
    assert s["liquidated_on_bad_branch"] == 0
    assert s["rolled_back"] is False
    assert s["refunded_total"] == 0 and s["vault_after"] == s["vault_before"]
    assert s["verified"] is True
    with ChainStore.open(tmp_path / "demo") as store:
        rejected = store.events_by(type_code=o.FundingTickRejected.TYPE_CODE)
        assert sorted(e.event.mkt for e in rejected) == ["ETH-PERP", "PAXG-PERP"]
        assert all(e.event.published_index == 0 for e in rejected)
        assert {e.height for e in rejected} == {s["zero_index_height"]}


def test_ledgerctl_demo_incident_json_summary(tmp_path: Path) -> None:
    data = tmp_path / "ledger-data"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "demo", "incident", "--data",
                        str(data), "--accounts", "200", "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    for key in ("liquidated_on_bad_branch", "bogus_liquidations", "refunded_accounts",
                "refunded_total", "vault_before", "vault_after", "snapshot_state_hash",
                "state_hash_after_rollback", "funding_ticks_rejected", "verified"):
        assert key in doc
    assert doc["bogus_liquidations"] == 10 and doc["verified"] is True
    # Running it again in the same directory starts fresh (it only wipes its own ledger).
    again = subprocess.run([sys.executable, "-m", "tools.cli", "demo", "incident", "--data",
                            str(data), "--accounts", "200", "--json"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["refunded_total"] == doc["refunded_total"]


def test_demo_refuses_to_wipe_a_ledger_it_did_not_create(tmp_path: Path) -> None:
    data = tmp_path / "precious"
    assert subprocess.run([sys.executable, "-m", "tools.cli", "init", "--data", str(data)],
                          cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    r = subprocess.run([sys.executable, "-m", "tools.cli", "demo", "incident", "--data",
                        str(data)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "not the demo's" in r.stderr
    assert (data / "data.mdb").exists()
