"""`ledgerctl assess | compensate | rollback | refunds` end to end, as real subprocesses.

The CLI's `--json` must be the library's answer to the same question, bad
corrections are refused with exit 2 and a message naming the flag, and every
payout is idempotent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.events import commands as c
from ledger.store.chain import ChainStore
from projections.compensation import plan_compensation
from tools.simulate import make_workload, open_or_create, run

ROOT = Path(__file__).resolve().parents[2]
TARGET = 20
ZERO_AT = 21


def ledgerctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _json(*args: str) -> Any:
    r = ledgerctl(*args, "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-incident") / "ledger"
    wl = make_workload(seed=3, accounts=120, inject=[(ZERO_AT, "ETH-PERP")])
    with open_or_create(path, guards=False, snapshot_every=10) as seq:
        run(seq, wl, TARGET + 6)
    return path


@pytest.fixture
def ledger(incident: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ledger"
    shutil.copytree(incident, dst)
    return dst


def test_assess_and_compensate_plan_answer_as_the_library_does(ledger: Path) -> None:
    data = ["--data", str(ledger)]
    doc = _json("assess", "--from-height", str(ZERO_AT), *data)
    assert (doc["from_height"], doc["snapshot_height"]) == (ZERO_AT, TARGET)
    assert [x["why"] for x in doc["corrections"]] == ["G3_ZEROED"]
    for side in ("rollback", "compensation"):
        part = doc[side]
        assert sum(part["harm_by_cause"].values()) == part["total_harm_qq"]
        assert part["harm_by_cause"]["flows"] == 0
        for line in part["lines"]:
            assert sum(line["harm_by_cause"].values()) == line["delta_qq"]
    assert doc["rollback"]["blocks_undone"] == 6
    plan = _json("compensate", "plan", "--from-height", str(ZERO_AT), *data)
    with ChainStore.open(ledger) as store:
        lib = plan_compensation(store, ZERO_AT).to_json()
    assert plan == json.loads(json.dumps(lib))
    assert plan["total_harm_qq"] == doc["compensation"]["total_harm_qq"]
    human = ledgerctl("assess", "--from-height", str(ZERO_AT), *data)
    assert human.returncode == 0 and "compensate" in human.stdout and "refund" in human.stdout


@pytest.mark.parametrize("args,needle", [
    (["--correct", "abc"], "expected SEQ=VALUE"),
    (["--correct", "5=1.5"], "must be an integer"),
    (["--correct", "99999999=5"], "is not in the canonical chain"),
    (["--correct", "BEGIN=5"], "only FundingTick and UpdateOracle"),
    (["--from-height", "0"], "--from-height must be a height"),
])
def test_bad_corrections_and_heights_are_refused_with_exit_2(ledger: Path, args: list[str],
                                                             needle: str) -> None:
    base = ["compensate", "plan", "--data", str(ledger)]
    if args[-1] == "BEGIN=5":  # the BeginBlock input opening the first suspect block
        with ChainStore.open(ledger) as store:
            args = ["--correct", f"{store.block(ZERO_AT).first_seq}=5"]
    if "--from-height" not in args:
        base += ["--from-height", str(ZERO_AT)]
    r = ledgerctl(*base, *args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_a_corrections_file_is_read_and_checked(ledger: Path, tmp_path: Path) -> None:
    with ChainStore.open(ledger) as store:
        (tick,) = [e for e in store.events(ZERO_AT, ZERO_AT)
                   if isinstance(e.event, c.FundingTick) and e.event.new_index == 0]
    good = tmp_path / "fix.json"
    good.write_text(json.dumps([{"seq": tick.seq, "used": "keep"}]))
    plan = _json("compensate", "plan", "--from-height", str(ZERO_AT), "--data", str(ledger),
                 "--corrections", str(good))
    assert plan["corrections"] == []
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"seq": tick.seq, "used": 1.5}]))
    r = ledgerctl("compensate", "plan", "--from-height", str(ZERO_AT), "--data", str(ledger),
                  "--corrections", str(bad))
    assert r.returncode == 2 and "item 1" in r.stderr


def test_payouts_need_an_operator_and_are_idempotent(ledger: Path) -> None:
    data = ["--data", str(ledger)]
    r = ledgerctl("compensate", "issue", "--from-height", str(ZERO_AT), "--execute", *data)
    assert r.returncode == 2 and "--operator" in r.stderr
    first = _json("compensate", "issue", "--from-height", str(ZERO_AT), "--execute",
                  "--operator", "alice", "--reason", "INC-1", *data)
    assert first["issued"] > 0 and first["total_qq"] > 0
    assert first["vault_before_qq"] - first["vault_after_qq"] == first["total_qq"]
    again = _json("compensate", "issue", "--from-height", str(ZERO_AT), "--execute",
                  "--operator", "alice", "--reason", "INC-1", *data)
    assert again["issued"] == 0 and again["height"] is None


def test_rollback_then_refunds_through_the_cli(ledger: Path) -> None:
    data = ["--data", str(ledger)]
    dry = _json("rollback", "--to-height", str(TARGET), *data)
    assert dry["executed"] is False
    assert [u["mkt"] for u in dry["plan"]["oracles_carried_forward"]]
    assert dry["plan"]["funding_resume"] == "SKIP"
    done = _json("rollback", "--to-height", str(TARGET), "--execute", "--reason", "INC-2",
                 "--operator", "bob", *data)
    branch = done["result"]["branch"]
    plan = _json("refunds", "plan", "--branch", str(branch), *data)
    assert plan["kind"] == "refunds" and plan["compared_with"] == "R"
    assert plan["marks"]["height"] == TARGET + 1
    paid = _json("refunds", "issue", "--branch", str(branch), "--execute", "--operator", "bob",
                 *data)
    assert paid["total_qq"] == plan["total_qq"]
    again = _json("refunds", "issue", "--branch", str(branch), "--execute", "--operator", "bob",
                  *data)
    assert again["issued"] == 0
    journal = _json("journal", *data)
    actions = [j["action"] for j in (journal if isinstance(journal, list)
                                     else journal.get("journal", []))]
    assert actions.count("truncate") == 1 and actions.count("refunds") == 1
