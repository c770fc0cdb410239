"""Restart protocol (G8): the sequencer verifies tail and state before it appends anything."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from ledger.errors import LedgerLocked, VerificationFailed
from ledger.sequencer import Sequencer
from ledger.store.blocks import decode_header, encode_header, make_header
from ledger.store.chain import ChainStore
from ledger.store.layout import u64
from tools.simulate import make_workload, open_or_create, run


@pytest.fixture()
def ledger(tmp_path: Path) -> Path:
    path = tmp_path / "ledger"
    with open_or_create(path, guards=True, snapshot_every=10) as seq:
        run(seq, make_workload(seed=3, accounts=40, inject=[]), 25)
    return path


def _forge_state_hash(path: Path, height: int) -> None:
    """Rewrite one header's state hash and re-link every later header, as a forger would."""
    with ChainStore.open(path, write=True) as store:  # tampering needs a writable env
        _rewrite(store, height)


def _rewrite(store: ChainStore, height: int) -> None:
    env, dbs = store.shared_env.env, store.dbs
    head = store.head.height
    with env.begin(write=True) as txn:
        prev = None
        for h in range(height, head + 1):
            hdr = decode_header(txn.get(u64(h), db=dbs.blocks))
            state = bytes(32) if h == height else hdr.state_hash
            new = make_header(h, hdr.time, hdr.first_seq, hdr.count,
                              prev if prev is not None else hdr.prev_hash, hdr.events_hash,
                              state)
            txn.put(u64(h), encode_header(new), db=dbs.blocks)
            prev = new.hash
        rec = msgpack.unpackb(txn.get(b"head", db=dbs.meta))
        rec[2] = prev
        txn.put(b"head", msgpack.packb(rec, use_bin_type=True), db=dbs.meta)


def test_restart_refuses_a_forged_state_hash_and_names_the_height(ledger: Path) -> None:
    _forge_state_hash(ledger, 23)
    with pytest.raises(VerificationFailed) as err:
        Sequencer.open(ledger)
    assert err.value.height == 23
    with ChainStore.open(ledger) as store:
        assert store.head.height == 25  # nothing was appended


def test_restart_refuses_a_broken_hash_chain_at_the_tail(ledger: Path) -> None:
    with ChainStore.open(ledger, write=True) as store, \
            store.shared_env.env.begin(write=True) as txn:
        raw = bytearray(txn.get(u64(24), db=store.dbs.blocks))
        raw[-1] ^= 0x01  # the header's own hash no longer matches its contents
        txn.put(u64(24), bytes(raw), db=store.dbs.blocks)
    with pytest.raises(VerificationFailed, match="height 24"):
        Sequencer.open(ledger)


def test_a_sound_ledger_restarts_and_a_second_writer_is_refused(ledger: Path) -> None:
    with Sequencer.open(ledger) as seq:
        assert seq.engine.state_hash() == seq.store.block(25).state_hash
        with pytest.raises(LedgerLocked, match="another writer"):
            Sequencer.open(ledger)
