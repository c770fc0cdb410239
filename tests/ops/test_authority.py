"""Authority: only operators change what operators own, and verify can tell.

A signed chain (every chain `init` makes) registers its writer and operator
keys in genesis. These tests write blocks the way an attacker or a bug would
(behind the operator paths, with or without the writer key) and check that
the sequencer refuses them and that `verify` finds each at its height: an
unsigned privileged event, a wrongly signed one, one without its journal
record, a journal record without its event, a block with no writer
signature, and a forged block whose header chain was re-hashed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger.core.authority import PRIVILEGED, covered_bytes, signed_message
from ledger.core.engine import Engine, processing_order
from ledger.errors import CommandInvalid, LedgerError
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import Mode
from ledger.events.record import replace
from ledger.intake import parse_command
from ledger.keys import OPERATOR_KEY_ENV, WRITER_KEY_ENV, KeyError_, create_key, load_key
from ledger.sequencer import Sequencer, recover
from ledger.store.chain import ChainStore
from ledger.store.journal import JournalEntry
from ledger.verification import verify_authority
from tests.projections.tamper import forge_event
from tests.store.crash_worker import image_diff, store_image
from tools.simulate import make_workload, open_or_create, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger"
    with open_or_create(path, guards=True, snapshot_every=5) as seq:
        run(seq, make_workload(seed=2, accounts=20, inject=[]), 8)
    return path


def _verify(path: Path) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "tools.cli", "verify", "--data", str(path),
                        "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    doc["exit"] = r.returncode
    return doc


def _append_behind_the_operator_paths(path: Path, cmds: list[Any], *, writer: bool = True,
                                      journal: JournalEntry | None = None) -> int:
    """Run a block on the chain's state with the authority off and append it directly:
    what a bug or an attacker with write access could do. Returns its height."""
    with ChainStore.open(path, write=True) as store:
        engine: Engine = recover(store)
        engine.enforce_authority = False
        if writer:
            store.signer = load_key(os.environ[WRITER_KEY_ENV])
        head = store.head
        height = head.height + 1
        result = engine.run_block(height, [c.BeginBlock(head.time), *cmds])
        store.append_block(result.envelopes, height=height, time=head.time,
                           state_hash=result.state_hash, journal=journal)
    return height


def _auth(path: Path, cmds: list[Any], key: Any, *, operator: str = "mallory",
          reason: str = "x", corrupt: bool = False) -> c.OperatorAuth:
    """An OperatorAuth signed by `key` over `cmds` at the next height."""
    with ChainStore.open(path) as store:
        chain_id, height = store.chain_id, store.head.height + 1
    block = [c.BeginBlock(0), c.OperatorAuth(key.key_id, operator, reason, b""), *cmds,
             c.EndBlock()]
    ordered = [block[i] for i in processing_order([type(x) for x in block])]
    covered = covered_bytes(height, [x for x in ordered if type(x) in PRIVILEGED])
    sig = key.sign(signed_message(chain_id, height, key.key_id, operator, reason, covered))
    if corrupt:
        sig = bytes([sig[0] ^ 1]) + sig[1:]
    return c.OperatorAuth(key.key_id, operator, reason, sig)


GIFT = c.IssueRefund("u00001", 10**15, "LIQ_VAULT", "rollback-branch-1")


def test_the_python_intake_refuses_every_privileged_type_by_name() -> None:
    for cls in PRIVILEGED | {c.OperatorAuth, c.EndBlock}:
        with pytest.raises(CommandInvalid, match=cls.__name__):
            parse_command({"type": cls.__name__}, "<test> line 1")


def test_the_sequencer_refuses_unsigned_or_unjournaled_operator_commands(
        ledger: Path, tmp_path: Path) -> None:
    stranger = create_key(tmp_path / "stranger.key")
    with Sequencer.open(ledger) as seq:
        before = store_image(seq.store)
        cmd = c.SetMode(c.ALL, Mode.HALTED, 0, "x", "mallory")
        with pytest.raises(CommandInvalid, match="journal"):
            seq.submit([cmd])
        with pytest.raises(CommandInvalid, match="operator key"):
            seq.submit([cmd], journal=JournalEntry("mode", "mallory", "x"))
        with pytest.raises(CommandInvalid, match="not an active operator key"):
            seq.submit([cmd], journal=JournalEntry("mode", "mallory", "x"),
                       operator_key=stranger)
        # A hand-made OperatorAuth by a key the chain does not know: refused whole.
        with pytest.raises(CommandInvalid, match="not registered"):
            seq.submit([c.BeginBlock(seq.store.head.time), _auth(ledger, [cmd], stranger), cmd],
                       journal=JournalEntry("mode", "mallory", "x"))
        assert image_diff(before, store_image(seq.store)) == []
        # The operator path, with the chain's operator key, goes in.
        out = seq.submit([cmd], journal=JournalEntry("mode", "ops", "drill"),
                         operator_key=seq.operator_key())
        assert any(isinstance(e.event, o.ModeChanged) for e in out.envelopes)
    assert _verify(ledger)["ok"]


def test_re_execution_of_an_unauthorised_privileged_command_does_nothing(ledger: Path) -> None:
    with ChainStore.open(ledger) as store:
        engine = recover(store)
        head = store.head
    vault = engine.balance("LIQ_VAULT")
    result = engine.run_block(head.height + 1, [c.BeginBlock(head.time), GIFT])
    kinds = [type(e.event) for e in result.envelopes]
    assert o.CommandUnauthorized in kinds and o.RefundIssued not in kinds
    assert engine.balance("LIQ_VAULT") == vault


def test_verify_finds_an_unsigned_privileged_event(ledger: Path) -> None:
    h = _append_behind_the_operator_paths(ledger, [GIFT],
                                          journal=JournalEntry("refunds", "mallory", "x"))
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == h
    assert "IssueRefund" in doc["reason"] and "no operator signature" in doc["reason"]


def test_verify_finds_a_wrongly_signed_privileged_event(ledger: Path, tmp_path: Path) -> None:
    stranger = create_key(tmp_path / "stranger.key")
    h = _append_behind_the_operator_paths(ledger, [_auth(ledger, [GIFT], stranger), GIFT],
                                          journal=JournalEntry("refunds", "mallory", "x"))
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == h and "not registered" in doc["reason"]


def test_verify_finds_a_signature_that_does_not_match(ledger: Path) -> None:
    operator = load_key(os.environ[OPERATOR_KEY_ENV])
    h = _append_behind_the_operator_paths(
        ledger, [_auth(ledger, [GIFT], operator, corrupt=True), GIFT],
        journal=JournalEntry("refunds", "mallory", "x"))
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == h and "does not verify" in doc["reason"]


def test_verify_finds_a_privileged_event_without_its_journal_record(ledger: Path) -> None:
    operator = load_key(os.environ[OPERATOR_KEY_ENV])
    h = _append_behind_the_operator_paths(ledger, [_auth(ledger, [GIFT], operator), GIFT])
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == h
    assert "without its journal record" in doc["reason"]


def test_verify_finds_a_journal_record_without_its_event(ledger: Path) -> None:
    with ChainStore.open(ledger, write=True) as store:
        height = store.head.height
        store.append_journal("refunds", operator="mallory", reason="paid (not really)")
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == height
    assert "journal record" in doc["reason"] and "without its event" in doc["reason"]


def test_verify_finds_a_block_without_the_writer_signature(ledger: Path) -> None:
    h = _append_behind_the_operator_paths(
        ledger, [c.Deposit("u00001", 10**12, "no-bank")], writer=False)
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == h and "no writer signature" in doc["reason"]


def test_verify_finds_a_rehashed_forged_block_at_its_first_forged_height(ledger: Path) -> None:
    with ChainStore.open(ledger) as store:
        target = next(e for e in store.events(4, 4) if isinstance(e.event, o.Deposited))
    # Rewrite one deposit and re-hash every header after it: the hash chain is whole
    # again (`verify` before signatures passed such a chain), but no block after the
    # forged one carries a writer signature of its new hash.
    height = forge_event(ledger, target.seq, replace(target.event, amount_qq=10**15))
    doc = _verify(ledger)
    assert doc["exit"] == 3 and doc["height"] == height == 4
    assert "signature does not verify" in doc["reason"]


def test_a_legacy_chain_without_keys_is_reported_unsigned(tmp_path: Path) -> None:
    from ledger.core.genesis import genesis_commands
    from ledger.markets import DEMO_MARKETS

    path = tmp_path / "legacy"
    store = ChainStore.create(path, chain_id="legacy")
    engine = Engine()
    result = engine.run_block(0, genesis_commands(DEMO_MARKETS, time=0, guards_enabled=True))
    store.append_block(result.envelopes, height=0, time=0, state_hash=result.state_hash)
    auth = verify_authority(store)
    store.close()
    assert auth["signed"] is False and auth["problems"] == []
    doc = _verify(path)
    assert doc["exit"] == 0 and doc["signatures"]["signed"] is False
    assert "UNSIGNED" in doc["signatures"]["status"]


def test_keys_are_never_stored_under_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "d"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "init", "--data", str(data),
                        "--key", str(data / "op.key")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "inside the data directory" in r.stderr
    with pytest.raises(KeyError_):
        create_key(data / "sub" / "k.key", data_dir=data)


def test_a_writer_with_another_key_is_refused(ledger: Path, tmp_path: Path) -> None:
    other = create_key(tmp_path / "other-writer.key")
    with pytest.raises(LedgerError, match="not this chain's writer key"):
        Sequencer.open(ledger, writer_key=str(other.path))


def test_operator_key_workflow_through_the_cli(ledger: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.cli", *args, "--data", str(ledger)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    bob = tmp_path / "bob.key"
    assert subprocess.run([sys.executable, "-m", "tools.cli", "keys", "create", "--out",
                           str(bob)], cwd=ROOT, capture_output=True).returncode == 0
    mode = ("mode", "set", "--mode", "ok", "--reason", "drill", "--operator", "bob",
            "--key", str(bob))
    assert cli(*mode).returncode == 2  # not registered yet
    r = cli("keys", "add", "--pub", f"{bob}.pub", "--name", "bob", "--reason", "on call",
            "--operator", "ops", "--json")
    assert r.returncode == 0, r.stderr
    kid = json.loads(r.stdout)["key_id"]
    assert cli(*mode).returncode == 0
    assert cli("keys", "revoke", kid, "--reason", "left", "--operator", "ops").returncode == 0
    r = cli(*mode)
    assert r.returncode == 2 and "not an active operator key" in r.stderr
    doc = _verify(ledger)
    assert doc["exit"] == 0 and any("bob, revoked" in k
                                    for k in doc["signatures"]["operator_keys"])


def test_verify_with_a_trusted_writer_key_catches_a_chain_rewritten_from_genesis(
        ledger: Path, tmp_path: Path) -> None:
    def verify(path: Path, key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tools.cli", "verify", "--data", str(path),
                               "--trust-key", key, "--json"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    assert verify(ledger, f"{os.environ[WRITER_KEY_ENV]}.pub").returncode == 0
    # A forger with write access builds a whole new chain with keys of their own: every
    # signature checks out, but not against the writer key the auditor holds.
    env = {**os.environ, WRITER_KEY_ENV: str(tmp_path / "f-w.key"),
           OPERATOR_KEY_ENV: str(tmp_path / "f-o.key")}
    r = subprocess.run([sys.executable, "-m", "tools.cli", "init", "--data",
                        str(tmp_path / "forged2")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert verify(tmp_path / "forged2", f"{tmp_path / 'f-w.key'}.pub").returncode == 0
    r = verify(tmp_path / "forged2", os.environ[WRITER_KEY_ENV])
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["height"] == 0 and "trusted" in doc["reason"]
