"""Harm, by cause: two worlds valued at common marks, and who is owed what (SPEC 13).

E_W(a) = balance + sum over markets of (value(size, mark_m) - cost + pending_W)
(`ledger.core.margin.equity_at`), with the SAME marks in both worlds and each
world's own funding index in `pending_W`. A position that is the same in both
worlds therefore contributes nothing through its mark.

delta(a) = E_C(a) - E_other(a), where other is R (the chain right after a
rollback's recovery block) or B (the chain at its head, for compensation
without a rollback). Both worlds start from the same state S0 at the stretch's
base, so delta is the difference of what happened in them. Each world's change
from S0 is attributed event by event: an event's effect on an account is the
change of E(a) at the common marks across the event, and goes to the event's
cause. The effects telescope, so per account and world they sum exactly to
E_W(a) - E_0(a) (checked: a miss raises), and the causes of delta sum exactly
to delta:

- trading: the account's own fills and fees (including the trades a rollback
  reversed), each valued at the common marks;
- liquidation: Liquidated (the takeover at the mark, the penalty fee, the
  deficit the vault pays), Deleveraged, SocializedLossApplied, on either side;
- funding: index moves on the account's positions (settled or pending);
- flows: deposits, withdrawals and carried flows: the same facts in both
  worlds, so always 0;
- refunds: refunds paid or received (those a rollback undid);
- other: anything else that moves equity (expected 0).

The mark-to-market part of each cause (the change of position value at the
common marks, as opposed to cash) is reported beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.core.engine import Engine
from ledger.core.evolve import apply_envelope
from ledger.core.fixedpoint import value
from ledger.core.margin import equity_at
from ledger.core.state import FEES, LIQ_VAULT, SYSTEM_ACCOUNTS, Account, ExchangeState
from ledger.errors import LedgerError
from ledger.events import outcomes as o
from ledger.events.codec import Envelope

TRADING = "trading"
LIQUIDATION = "liquidation"
FUNDING = "funding"
FLOWS = "flows"
REFUNDS = "refunds"
OTHER = "other"
CAUSES = (TRADING, LIQUIDATION, FUNDING, FLOWS, REFUNDS, OTHER)

CAUSE_OF: dict[type[Any], str] = {
    o.Filled: TRADING,
    o.Liquidated: LIQUIDATION,
    o.Deleveraged: LIQUIDATION,
    o.SocializedLossApplied: LIQUIDATION,
    o.FundingTicked: FUNDING,
    o.FundingSettled: FUNDING,
    o.Deposited: FLOWS,
    o.Withdrew: FLOWS,
    o.RolledBack: FLOWS,
    o.RefundIssued: REFUNDS,
}


def marks_of(engine: Engine) -> dict[str, int]:
    """Every market's mark (st) in an engine's state."""
    return {mkt: m.mark for mkt, m in sorted(engine.state.markets.items())}


@dataclass
class Attribution:
    """One world's change from S0, per account: equity at the common marks, by cause."""

    start: dict[str, int]
    end: dict[str, int] = field(default_factory=dict)
    by_cause: dict[str, dict[str, int]] = field(default_factory=dict)
    mark_to_market: dict[str, dict[str, int]] = field(default_factory=dict)
    #: payouts of the remedy being planned (left out of the world: see `attribute`)
    remedy: dict[str, int] = field(default_factory=dict)
    liquidated: dict[str, int] = field(default_factory=dict)

    def cause(self, acct: str, name: str) -> int:
        return self.by_cause.get(acct, {}).get(name, 0)


def _position_value(st: ExchangeState, a: Account, marks: Mapping[str, int]) -> int:
    markets = st.markets
    return sum(value(p.size, marks[mkt], markets[mkt].params.qce)
               for mkt, p in a.positions.items() if p.size)


def _affected(st: ExchangeState, ev: Any) -> list[str]:
    """Accounts whose equity at fixed marks an event can change."""
    t = type(ev)
    if t is o.Filled:
        return [ev.maker, ev.taker, FEES]
    if t is o.FundingTicked:
        m = st.markets.get(ev.mkt)
        return list(m.holders) if m is not None else []
    if t is o.RolledBack:
        return [f.acct for f in ev.flows]
    if t is o.RefundIssued:
        return [ev.acct, ev.source]
    if t is o.Liquidated or t is o.SocializedLossApplied:
        return [ev.acct, LIQ_VAULT]
    if t is o.Deleveraged:
        return [ev.liquidated, ev.offset]
    if t in CAUSE_OF:
        return [getattr(ev, f) for f in t.ACCOUNT_FIELDS]
    return []


def attribute(start: Engine, blocks: Iterable[Sequence[Envelope]],
              marks: Mapping[str, int], *, remedy_ref: str | None = None) -> Attribution:
    """Fold a world's envelopes onto `start` (consumed), attributing every change (module doc).

    A RefundIssued carrying `remedy_ref` is the remedy itself (a compensation
    already paid for this very plan): its effect is kept apart in `remedy`.
    """
    st = start.state
    eq = {acct: equity_at(st, a, marks) for acct, a in st.accounts.items()}
    out = Attribution(start=dict(eq))
    for envs in blocks:
        for env in envs:
            ev = env.event
            accts = _affected(st, ev) if env.cause else []
            if not accts:
                apply_envelope(st, env)
                continue
            before = {a: _position_value(st, st.accounts[a], marks)
                      for a in accts if a in st.accounts}
            apply_envelope(st, env)
            cause = CAUSE_OF.get(type(ev), OTHER)
            if type(ev) is o.RefundIssued and ev.ref == remedy_ref:
                cause = ""
            if type(ev) is o.Liquidated:
                out.liquidated.setdefault(ev.acct, env.height)
            for acct in dict.fromkeys(accts):
                a = st.accounts.get(acct)
                if a is None:
                    continue
                new = equity_at(st, a, marks)
                d = new - eq.get(acct, 0)
                eq[acct] = new
                if not d:
                    continue
                if not cause:
                    out.remedy[acct] = out.remedy.get(acct, 0) + d
                    continue
                causes = out.by_cause.setdefault(acct, {})
                causes[cause] = causes.get(cause, 0) + d
                mtm = _position_value(st, a, marks) - before.get(acct, 0)
                if mtm:
                    mm = out.mark_to_market.setdefault(acct, {})
                    mm[cause] = mm.get(cause, 0) + mtm
    # Every change must have been attributed: the sums telescope to the final equity.
    for acct, a in st.accounts.items():
        final = equity_at(st, a, marks)
        out.end[acct] = final
        moved = sum(out.by_cause.get(acct, {}).values()) + out.remedy.get(acct, 0)
        if final - out.start.get(acct, 0) != moved:
            raise LedgerError(f"harm attribution missed a change of {acct}'s equity "
                              f"({final - out.start.get(acct, 0)} vs {moved} attributed); "
                              "this is a bug, please report it")
    return out


@dataclass
class HarmLine:
    """One user account: what C says it should have, against the other world."""

    acct: str
    delta_qq: int
    harm_qq: int
    harm_by_cause: dict[str, int]
    mark_to_market_by_cause: dict[str, int]
    equity_counterfactual_qq: int
    equity_other_qq: int
    liquidated_actual: bool
    liquidated_counterfactual: bool
    amount_qq: int = 0
    already_paid_qq: int = 0

    @property
    def bogus_liquidation(self) -> bool:
        return self.liquidated_actual and not self.liquidated_counterfactual

    @property
    def owed_qq(self) -> int:
        return max(0, self.amount_qq - self.already_paid_qq)

    def to_json(self) -> dict[str, Any]:
        return {"acct": self.acct, "delta_qq": self.delta_qq, "harm_qq": self.harm_qq,
                "harm_by_cause": self.harm_by_cause,
                "mark_to_market_by_cause": self.mark_to_market_by_cause,
                "equity_counterfactual_qq": self.equity_counterfactual_qq,
                "equity_other_qq": self.equity_other_qq,
                "liquidated_actual": self.liquidated_actual,
                "liquidated_counterfactual": self.liquidated_counterfactual,
                "bogus_liquidation": self.bogus_liquidation,
                "amount_qq": self.amount_qq, "already_paid_qq": self.already_paid_qq,
                "owed_qq": self.owed_qq}


def compare(cf: Attribution, other: Attribution, *, actual_liquidated: Mapping[str, int],
            already_paid: Mapping[str, int]) -> list[HarmLine]:
    """Every user account's line, by account id (harm 0 for those not worse off in C).

    delta = E_C - E_other, split by cause; the remedy's own payouts in `other`
    are excluded (they are what is being planned, see `attribute`).
    """
    lines = []
    for acct in sorted(set(cf.end) | set(other.end)):
        if acct in SYSTEM_ACCOUNTS:
            continue
        e_c = cf.end.get(acct, 0)
        e_o = other.end.get(acct, 0) - other.remedy.get(acct, 0)
        if cf.start.get(acct, 0) != other.start.get(acct, 0):
            raise LedgerError(f"the two worlds do not start from the same state ({acct})")
        delta = e_c - e_o
        causes = {k: cf.cause(acct, k) - other.cause(acct, k) for k in CAUSES}
        mtm = {k: cf.mark_to_market.get(acct, {}).get(k, 0)
               - other.mark_to_market.get(acct, {}).get(k, 0) for k in CAUSES}
        if sum(causes.values()) != delta:
            raise LedgerError(f"harm by cause does not sum to delta for {acct}; this is a bug")
        harm = max(0, delta)
        lines.append(HarmLine(acct, delta, harm, causes, {k: v for k, v in mtm.items() if v},
                              e_c, e_o, acct in actual_liquidated, acct in cf.liquidated,
                              harm, already_paid.get(acct, 0)))
    return lines


def pay_pro_rata(lines: Sequence[HarmLine], available_qq: int) -> bool:
    """Set each line's amount: its harm, or harm * available / total (floor) when short."""
    total = sum(ln.harm_qq for ln in lines)
    short = total > available_qq
    for ln in lines:
        ln.amount_qq = ln.harm_qq * max(available_qq, 0) // total if short else ln.harm_qq
    return short
