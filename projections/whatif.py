"""What a stretch of chain did, against what it should have done: the per-account what-if.

The counterfactual C (projections.counterfactual: the stretch's inputs with the
bad ones corrected, SPEC 13) is set beside the actual chain, account by
account: liquidated or not, equity (both at the actual chain's marks at the
stretch's end, so prices do not count), funding settled, fills. A liquidation
that happened on the chain but not in C is *bogus*: that is the precise
meaning of the word here. The money owed is the business of the remedies
(projections.refunds, projections.compensation); this is the diagnosis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.core.counterfactual import Override
from ledger.core.engine import Engine
from ledger.core.margin import equity_at
from ledger.core.state import SYSTEM_ACCOUNTS
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.store.reader import ChainReader, one_view
from projections.counterfactual import Counterfactual, branch_stretch, run_counterfactual
from projections.harm import marks_of


@dataclass
class Tally:
    """What one world did to each account."""

    liquidated: dict[str, int] = field(default_factory=dict)  # acct -> first height
    funding: dict[str, int] = field(default_factory=dict)  # acct -> sum of settlements
    fills: dict[str, int] = field(default_factory=dict)
    rejected_ticks: int = 0
    halts: int = 0

    def add(self, blocks: Iterable[Sequence[Envelope]]) -> Tally:
        for envs in blocks:
            for env in envs:
                ev = env.event
                t = type(ev)
                if t is o.Liquidated:
                    self.liquidated.setdefault(ev.acct, env.height)
                elif t is o.FundingSettled:
                    self.funding[ev.acct] = self.funding.get(ev.acct, 0) + ev.amount_qq
                elif t is o.Filled:
                    for a in (ev.maker, ev.taker):
                        self.fills[a] = self.fills.get(a, 0) + 1
                elif t is o.FundingTickRejected:
                    self.rejected_ticks += 1
                elif t is o.MarketHalted:
                    self.halts += 1
        return self


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
    cf: Counterfactual
    accounts: list[AccountDiff]
    actual: Tally
    counterfactual: Tally

    @property
    def liquidated_actual(self) -> list[str]:
        return [a.acct for a in self.accounts if a.liquidated_actual]

    @property
    def bogus(self) -> list[str]:
        return [a.acct for a in self.accounts if a.bogus_liquidation]

    def to_json(self) -> dict[str, Any]:
        st = self.cf.stretch
        return {
            "branch": st.branch,
            "base_height": st.base_height,
            "last_height": st.last_height,
            "first_suspect_height": self.cf.first_suspect_height,
            "corrections": [x.to_json() for x in self.cf.corrections],
            "flagged_flows": [x.to_json() for x in self.cf.flagged_flows],
            "liquidated_on_branch": len(self.liquidated_actual),
            "liquidated_in_counterfactual": sum(
                1 for a in self.accounts if a.liquidated_counterfactual),
            "bogus_liquidations": len(self.bogus),
            "funding_ticks_rejected_on_branch": self.actual.rejected_ticks,
            "funding_ticks_rejected_in_counterfactual": self.counterfactual.rejected_ticks,
            "accounts": [a.to_json() for a in self.accounts],
        }


def compare_worlds(cf: Counterfactual) -> WhatIf:
    """Account by account, the actual chain against C, at the actual chain's final marks."""
    actual = Tally().add(cf.actual_blocks)
    counter = Tally().add(cf.corrected_blocks)
    marks = marks_of(cf.actual)
    diffs = []
    for acct in sorted(set(cf.actual.accounts()) | set(cf.corrected.accounts())):
        if acct in SYSTEM_ACCOUNTS:
            continue
        diffs.append(AccountDiff(
            acct, acct in actual.liquidated, acct in counter.liquidated,
            _equity(cf.actual, acct, marks), _equity(cf.corrected, acct, marks),
            actual.funding.get(acct, 0), counter.funding.get(acct, 0),
            actual.fills.get(acct, 0), counter.fills.get(acct, 0)))
    return WhatIf(cf, diffs, actual, counter)


@one_view
def whatif(store: ChainReader, branch: int, *,
           overrides: Mapping[int, Override] | None = None,
           first_suspect_height: int | None = None) -> WhatIf:
    """The what-if of an archived branch (reads only)."""
    cf = run_counterfactual(store, branch_stretch(store, branch),
                            first_suspect_height=first_suspect_height, overrides=overrides)
    return compare_worlds(cf)


def _equity(engine: Engine, acct: str, marks: Mapping[str, int]) -> int:
    a = engine.state.accounts.get(acct)
    return 0 if a is None else equity_at(engine.state, a, marks)
