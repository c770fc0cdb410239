"""Counterfactual audit: what a rolled-back branch did, against what it should have done.

The branch's IN events (the inputs as received) are re-executed through the
state machine from the branch's base, with the data-check guards on (or with
named inputs dropped). Per account, the actual branch and the counterfactual
are compared: liquidated or not, equity at the branch's last height, funding
paid, fills. A liquidation that happened on the branch but not in the
counterfactual is *bogus*: that is the precise meaning of the word here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.core.engine import Engine
from ledger.errors import VerificationFailed
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.rollback import restore_exact
from ledger.store.chain import ChainStore

SYSTEM_ACCOUNTS = ("FEES", "LIQ_VAULT")


@dataclass
class Tally:
    """What one run (actual or counterfactual) did to each account."""

    liquidated: dict[str, int] = field(default_factory=dict)  # acct -> first height
    funding: dict[str, int] = field(default_factory=dict)  # acct -> sum of settlements
    fills: dict[str, int] = field(default_factory=dict)
    rejected_ticks: int = 0
    halts: int = 0

    def add(self, envs: Iterable[Envelope]) -> None:
        for env in envs:
            ev = env.event
            if isinstance(ev, o.Liquidated):
                self.liquidated.setdefault(ev.acct, env.height)
            elif isinstance(ev, o.FundingSettled):
                self.funding[ev.acct] = self.funding.get(ev.acct, 0) + ev.amount_qq
            elif isinstance(ev, o.Filled):
                for a in (ev.maker, ev.taker):
                    self.fills[a] = self.fills.get(a, 0) + 1
            elif isinstance(ev, o.FundingTickRejected):
                self.rejected_ticks += 1
            elif isinstance(ev, o.MarketHalted):
                self.halts += 1


@dataclass
class AccountDiff:
    acct: str
    liquidated_actual: bool
    liquidated_counterfactual: bool
    equity_actual_qq: int
    equity_counterfactual_qq: int
    funding_actual_qq: int
    funding_counterfactual_qq: int
    fills_actual: int
    fills_counterfactual: int

    @property
    def bogus_liquidation(self) -> bool:
        return self.liquidated_actual and not self.liquidated_counterfactual

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "bogus_liquidation": self.bogus_liquidation}


@dataclass
class WhatIf:
    branch: int
    base_height: int
    last_height: int
    guards_on: bool
    dropped: list[int]
    accounts: list[AccountDiff]
    actual: Tally
    counterfactual: Tally
    counterfactual_engine: Engine

    @property
    def liquidated_actual(self) -> list[str]:
        return [a.acct for a in self.accounts if a.liquidated_actual]

    @property
    def bogus(self) -> list[str]:
        return [a.acct for a in self.accounts if a.bogus_liquidation]

    def to_json(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "base_height": self.base_height,
            "last_height": self.last_height,
            "guards_on": self.guards_on,
            "dropped_seqs": self.dropped,
            "liquidated_on_branch": len(self.liquidated_actual),
            "liquidated_in_counterfactual": sum(
                1 for a in self.accounts if a.liquidated_counterfactual),
            "bogus_liquidations": len(self.bogus),
            "funding_ticks_rejected_in_counterfactual": self.counterfactual.rejected_ticks,
            "accounts": [a.to_json() for a in self.accounts],
        }


def whatif(store: ChainStore, branch: int, *, guards_on: bool = True,
           drop_seqs: Sequence[int] = ()) -> WhatIf:
    """Re-execute an archived branch's inputs and compare, account by account."""
    rec = store.branch(branch)
    base = int(rec["base_height"])
    if store.block(base).hash != bytes(rec["base_hash"]):
        raise VerificationFailed(base, f"the chain below branch {branch} was itself rolled "
                                 "back; its base block is no longer canonical")
    actual_engine = restore_exact(store, base)
    cf_engine = restore_exact(store, base)
    cf_engine.enforce_authority = False  # a counterfactual: its edited blocks carry no signature
    actual = Tally()
    cf = Tally()
    drop = set(drop_seqs)
    first = True
    last = base
    for header, envs in store.iter_blocks(branch=branch):
        got = actual_engine.apply_block(header.height, envs)
        if got != header.state_hash:
            raise VerificationFailed(header.height, f"branch {branch} does not replay to its "
                                     "own state hashes")
        actual.add(envs)
        ins = [e.event for e in envs if e.event.KIND == "IN" and e.seq not in drop]
        if first and guards_on:
            ins.insert(1, c.SetGuards(True, "counterfactual audit", "whatif"))
        first = False
        result = cf_engine.run_block(header.height, ins)
        cf.add(result.envelopes)
        last = header.height
    accounts = sorted(set(actual_engine.accounts()) | set(cf_engine.accounts()))
    diffs = []
    for acct in accounts:
        if acct in SYSTEM_ACCOUNTS:
            continue
        diffs.append(AccountDiff(
            acct,
            acct in actual.liquidated,
            acct in cf.liquidated,
            _equity(actual_engine, acct),
            _equity(cf_engine, acct),
            actual.funding.get(acct, 0),
            cf.funding.get(acct, 0),
            actual.fills.get(acct, 0),
            cf.fills.get(acct, 0),
        ))
    return WhatIf(branch, base, last, guards_on, sorted(drop), diffs, actual, cf, cf_engine)


def _equity(engine: Engine, acct: str) -> int:
    if not engine.has_account(acct):
        return 0
    return int(engine.account_value(acct))
