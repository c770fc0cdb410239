"""A remedy's plan: refunds after a rollback, or compensation without one (SPEC 13).

Both are built the same way (`build_plan`): the counterfactual C of the stretch,
the other world (R after the recovery block, or B at the head), both valued at
the other world's marks, per-account harm by cause (projections.harm), then
the payout rule: user accounts only (LIQ_VAULT and FEES are never plan lines),
no clawback (an account better off owes nothing), paid from LIQ_VAULT, pro rata
(floor) when the vault can pay less than the total, and idempotent per `ref`
(what a remedy already paid under its ref is subtracted, never paid twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.core.engine import Engine
from ledger.core.liquidation import vault_can_pay
from ledger.core.state import LIQ_VAULT
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.record import type_code
from ledger.store.reader import ChainReader
from projections.counterfactual import Counterfactual
from projections.harm import HarmLine, attribute, compare, marks_of, pay_pro_rata

VAULT = LIQ_VAULT
RULE = ("harm = max(0, E_C - E_other): the corrected counterfactual at the stretch's last "
        "height against the other world, both at the same marks")


@dataclass
class RemedyPlan:
    """Who is owed what, and why (see module docstring). Changes nothing."""

    kind: str  # "refunds" | "compensation"
    ref: str
    cf: Counterfactual
    #: the world C is compared with: "R" (after the recovery block) or "B" (the head)
    other: str
    marks_height: int
    marks: dict[str, int]
    #: every user account compared, by id (delta may be 0 or negative)
    accounts: list[HarmLine]
    vault_available_qq: int
    pro_rata: bool
    notes: list[str] = field(default_factory=list)
    funding_resume: str | None = None
    #: the canonical head the plan was computed at (a payout re-plans if it moved)
    head_hash: bytes = b""

    @property
    def lines(self) -> list[HarmLine]:
        """The accounts owed something (harm > 0), by id: the plan's lines."""
        return [ln for ln in self.accounts if ln.harm_qq > 0]

    @property
    def better_off(self) -> int:
        """Accounts better off than in C: paid nothing, owing nothing (no clawback)."""
        return sum(1 for ln in self.accounts if ln.delta_qq < 0)

    def line(self, acct: str) -> HarmLine | None:
        return next((ln for ln in self.accounts if ln.acct == acct), None)

    @property
    def total_harm_qq(self) -> int:
        return sum(ln.harm_qq for ln in self.lines)

    @property
    def total_qq(self) -> int:
        return sum(ln.amount_qq for ln in self.lines)

    @property
    def already_paid_qq(self) -> int:
        return sum(ln.already_paid_qq for ln in self.lines)

    @property
    def outstanding_qq(self) -> int:
        return sum(ln.owed_qq for ln in self.lines)

    def by_cause(self) -> dict[str, int]:
        """Total harm by cause over the plan's lines."""
        out: dict[str, int] = {}
        for ln in self.lines:
            for k, v in ln.harm_by_cause.items():
                out[k] = out.get(k, 0) + v
        return out

    def to_json(self) -> dict[str, Any]:
        st = self.cf.stretch
        return {
            "kind": self.kind,
            "ref": self.ref,
            "rule": RULE,
            "branch": st.branch,
            "base_height": st.base_height,
            "last_height": st.last_height,
            "first_suspect_height": self.cf.first_suspect_height,
            "compared_with": self.other,
            "marks": {"height": self.marks_height,
                      "basis": ("right after the recovery block" if self.other == "R"
                                else "at the head"),
                      "mark_st": self.marks},
            "funding_resume": self.funding_resume,
            "corrections": [x.to_json() for x in self.cf.corrections],
            "flagged_flows": [x.to_json() for x in self.cf.flagged_flows],
            "accounts_compared": len(self.accounts),
            "accounts_owed": len(self.lines),
            "accounts_better_off": self.better_off,
            "bogus_liquidations": sum(1 for ln in self.lines if ln.bogus_liquidation),
            "total_harm_qq": self.total_harm_qq,
            "harm_by_cause": self.by_cause(),
            "total_qq": self.total_qq,
            "already_paid_qq": self.already_paid_qq,
            "outstanding_qq": self.outstanding_qq,
            "vault_available_qq": self.vault_available_qq,
            "pro_rata": self.pro_rata,
            "notes": self.notes,
            "lines": [ln.to_json() for ln in self.lines],
        }


def paid_under(store: ChainReader, ref: str) -> dict[str, int]:
    """What the canonical chain has paid per account under a remedy's ref."""
    done: dict[str, int] = {}
    for env in store.events_by(type_code=type_code(o.RefundIssued)):
        ev = env.event
        if ev.ref == ref:
            done[ev.acct] = done.get(ev.acct, 0) + ev.amount_qq
    return done


def vault_available(engine: Engine) -> int:
    """What LIQ_VAULT can pay out now: no more than its balance or its AV - IMR."""
    st = engine.state
    vault = st.accounts.get(VAULT)
    return 0 if vault is None else vault_can_pay(st, vault, 1 << 62)


def liquidated_in(blocks: Iterable[Sequence[Envelope]]) -> dict[str, int]:
    """Account -> first height it was liquidated at, over a world's blocks."""
    out: dict[str, int] = {}
    for envs in blocks:
        for e in envs:
            if type(e.event) is o.Liquidated:
                out.setdefault(e.event.acct, e.height)
    return out


def build_plan(kind: str, ref: str, cf: Counterfactual, *, other: str,
               other_blocks: Iterable[Sequence[Envelope]], marks_engine: Engine,
               marks_height: int, already_paid: dict[str, int], vault_qq: int,
               remedy_ref: str | None = None,
               funding_resume: str | None = None) -> RemedyPlan:
    """The plan of a remedy from a counterfactual and the other world's blocks.

    `marks_engine` is the other world's state whose marks both are valued at;
    `vault_qq` what LIQ_VAULT can pay where the remedy will be paid.
    """
    marks = marks_of(marks_engine)
    c_attr = attribute(cf.start_engine(), cf.corrected_blocks, marks)
    o_attr = attribute(cf.start_engine(), other_blocks, marks, remedy_ref=remedy_ref)
    accounts = compare(c_attr, o_attr, actual_liquidated=liquidated_in(cf.actual_blocks),
                       already_paid=already_paid)
    lines = [ln for ln in accounts if ln.harm_qq > 0]
    pro_rata = pay_pro_rata(lines, vault_qq + sum(already_paid.values()))
    notes = []
    if pro_rata:
        notes.append(f"LIQ_VAULT can pay {vault_qq} qq against "
                     f"{sum(ln.harm_qq for ln in lines)} qq of harm: every payout is cut "
                     "pro rata (floor); the shortfall is not paid")
    if already_paid:
        notes.append(f"{len(already_paid)} accounts were already paid "
                     f"{sum(already_paid.values())} qq under {ref}; issuing pays only what is "
                     "outstanding")
    if cf.flagged_flows:
        notes.append(f"{len(cf.flagged_flows)} flows were applied in the counterfactual as on "
                     "the chain although its rules would have decided otherwise (flows are "
                     "facts; a flow is never harm)")
    return RemedyPlan(kind, ref, cf, other, marks_height, marks, accounts, vault_qq, pro_rata,
                      notes, funding_resume)
