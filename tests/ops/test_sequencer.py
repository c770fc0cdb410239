"""The sequencer refuses bad blocks before the engine runs, and stays usable after."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import CommandInvalid
from ledger.events import commands as c
from ledger.markets import DEMO_MARKETS
from ledger.sequencer import Sequencer


def test_a_block_time_before_the_head_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    with Sequencer.create(tmp_path / "l", chain_id="t", listings=DEMO_MARKETS,
                          genesis_time=1_000) as seq:
        seq.submit([c.BeginBlock(1_010), c.CreateAccount("alice")])
        head = seq.store.head
        state = seq.engine.state_hash()
        with pytest.raises(CommandInvalid, match="before the head's block time 1010"):
            seq.submit([c.BeginBlock(1_005), c.CreateAccount("bob")])
        assert seq.store.head == head and seq.engine.state_hash() == state
        out = seq.submit([c.BeginBlock(1_011), c.CreateAccount("bob")])
        assert out.header.height == head.height + 1
        assert seq.engine.has_account("bob")


def test_commands_refused_at_the_door_get_no_seq_and_the_rest_go_on(tmp_path: Path) -> None:
    with Sequencer.create(tmp_path / "l", chain_id="t", listings=DEMO_MARKETS) as seq:
        out = seq.submit([c.CreateAccount("alice"),
                          c.Deposit("nobody", 5, "x"),
                          c.Deposit("alice", 7, "bank-1")])
        assert [i for i, _ in out.refused] == [2]  # index 0 is the inserted BeginBlock
        assert "nobody" in str(out.refused[0][1])
        names = [type(e.event).__name__ for e in out.envelopes]
        assert names.count("Deposited") == 1 and "nobody" not in repr(out.envelopes)
        seqs = [e.seq for e in out.envelopes]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
