"""SPEC 13's counterfactual inputs: the chain's own inputs, with the bad ones corrected.

An `InputCorrector` is the `inputs` policy of `Engine.run_block` for an audit's
re-execution of a stretch of chain (an archived branch, or the canonical chain
from a snapshot to its head). It sees every input at its turn, against the
counterfactual state C as it stands then, and:

- **FundingTick**: C applies the index C itself recomputes (`expected_tick`,
  G2's formula on the market's inputs as of the block start) with C's own
  previous index and time, so one bad tick never makes the later ones fail G1.
  A tick whose published values differ is a correction, named by the guard that
  would refuse it as published (G1 previous index or time, G3 zeroed, G2
  otherwise) and applied whatever the guards say (a corrected input never
  halts a market in C). A tick whose time is impossible (dt <= 0 or in the
  future, G4) is left out when the guards are off; with them on the guard
  refuses it harmlessly, as it did on the chain. A gap (G4) is timing, not a
  value: it runs as configured.
- **UpdateOracle**: G5 (`g5_failure`) judges it against C's last good price and
  a jump awaiting confirmation, guards on or off; a refused update is replaced
  by the last good price (oracle and external basis), so the market's clock
  keeps running and a corrected input never moves it out of OK. Approved
  updates are applied without a second G5 check (this screen is G5 in C), and
  with everything else as configured (G6's mark rule included).
- **Withdraw**: flows are facts. A withdrawal the chain paid out is paid in C,
  one it refused is refused in C, whatever C's mode or margin say; when C's
  rules would have decided otherwise the flow is flagged (`FlaggedFlow`).
  Deposits need nothing: they depend on no state but the account.
- **Operator overrides** by seq: an int is the value to use (the index of a
  FundingTick, the oracle of an UpdateOracle), `SKIP` leaves the input out,
  `KEEP` runs it as published, whatever the default correction says.
- **IssueRefund** carrying one of `drop_refs` (a remedy's own payouts) is left
  out: the remedy is not part of what should have happened.

Only inputs with seq >= `first_suspect_seq` are corrected; earlier ones run
exactly as on the chain. Everything else (orders, cancels, operator commands,
guards as configured) runs unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core import accounts
from ledger.core.context import Ctx
from ledger.core.funding import apply_tick, expected_tick
from ledger.core.members import HALTED
from ledger.core.oracle import apply_oracle, g5_failure
from ledger.core.state import ExchangeState, effective_mode
from ledger.events import commands as c

#: operator override: run the input as published
KEEP = "keep"
#: operator override: leave the input out of the counterfactual
SKIP = "skip"
#: an operator's correction of one input: the value to use, KEEP or SKIP
Override = int | str


@dataclass(frozen=True)
class Correction:
    """One input whose value in C differs from what the chain published."""

    seq: int
    type: str
    mkt: str
    published: int
    #: the value C used; None when C left the input out
    used: int | None
    #: the guard that refuses the input as published, or "operator"
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type, "mkt": self.mkt,
                "published": self.published, "used": self.used, "why": self.why}


@dataclass(frozen=True)
class FlaggedFlow:
    """A flow applied in C as on the chain although C's rules would have decided otherwise."""

    seq: int
    acct: str
    amount_qq: int
    #: what C's rules say: the refusal reason, or ACCEPTED for one the chain refused
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "acct": self.acct, "amount_qq": self.amount_qq,
                "reason": self.reason}


#: FlaggedFlow.reason of a withdrawal the chain refused and C's rules would pay
ACCEPTED = "ACCEPTED"


class InputCorrector:
    """The counterfactual's input policy (see module docstring)."""

    def __init__(self, *, first_suspect_seq: int = 0,
                 overrides: Mapping[int, Override] | None = None,
                 withdrawals: Mapping[int, tuple[bool, str]] | None = None,
                 drop_refs: Sequence[str] = ()) -> None:
        self.first_suspect_seq = first_suspect_seq
        self.overrides = dict(overrides or {})
        #: chain seq of a Withdraw -> (accepted, refusal reason) on the chain
        self.withdrawals = dict(withdrawals or {})
        self.drop_refs = frozenset(drop_refs)
        self.corrections: list[Correction] = []
        self.flagged: list[FlaggedFlow] = []
        #: mkt -> a G5 jump awaiting confirmation, as the screen sees it
        self._pending: dict[str, int] = {}
        self._seqs: Sequence[int] = ()
        #: command index -> how `decide` runs it (default: its own rule)
        self._how: dict[int, str] = {}

    def begin_block(self, seqs: Sequence[int]) -> None:
        """The chain seqs of the next block's commands, in the order they are given."""
        self._seqs = seqs
        self._how = {}

    # -- InputPolicy -------------------------------------------------------------

    def before(self, st: ExchangeState, i: int, cmd: Any) -> Any | None:
        seq = self._seqs[i]
        t = type(cmd)
        if t is c.IssueRefund and cmd.ref in self.drop_refs:
            return None
        if t is c.Withdraw and seq in self.withdrawals:
            self._how[i] = _WITHDRAW
            return cmd
        if (t is not c.FundingTick and t is not c.UpdateOracle) or cmd.mkt not in st.markets:
            return cmd
        if seq < self.first_suspect_seq or self.overrides.get(seq) == KEEP:
            if t is c.UpdateOracle:
                self._how[i] = _ORACLE_AS_CHAIN
            return cmd
        override = self.overrides.get(seq)
        if override == SKIP:
            self._correct(seq, cmd, None, "operator")
            return None
        if t is c.FundingTick:
            return self._tick(st, i, seq, cmd, override)
        return self._oracle(st, i, seq, cmd, override)

    def decide(self, ctx: Ctx, i: int, cmd: Any, rule: Callable[[Ctx, Any], None]) -> None:
        how = self._how.get(i)
        if how is None:
            rule(ctx, cmd)
            return
        m = ctx.st.markets.get(getattr(cmd, "mkt", ""))
        if how == _TICK and m is not None:
            prem, r, dt, _ = expected_tick(m, cmd.time)
            apply_tick(ctx, m, cmd, prem, r, dt)
        elif how == _SCREENED and m is not None:
            apply_oracle(ctx, m, cmd)
        elif how == _ORACLE_AS_CHAIN and m is not None:
            rule(ctx, cmd)
            self._pending[m.id] = m.pending_oracle  # the engine's G5 judged it: follow it
        elif how == _WITHDRAW:
            seq = self._seqs[i]
            accepted, reason = self.withdrawals[seq]
            verdict = accounts.withdraw_as_fact(ctx, cmd, accepted, reason)
            if (verdict is None) != accepted:
                self.flagged.append(FlaggedFlow(seq, cmd.acct, cmd.amount_qq,
                                                ACCEPTED if verdict is None else verdict))
        else:
            rule(ctx, cmd)

    # -- corrections -------------------------------------------------------------

    def _correct(self, seq: int, cmd: Any, used: int | None, why: str) -> None:
        published = cmd.new_index if type(cmd) is c.FundingTick else cmd.oracle_st
        self.corrections.append(Correction(seq, type(cmd).__name__, cmd.mkt, published, used,
                                           why))

    def _tick(self, st: ExchangeState, i: int, seq: int, cmd: c.FundingTick,
              override: Override | None) -> c.FundingTick | None:
        m = st.markets[cmd.mkt]
        if effective_mode(st, m) == HALTED:
            return cmd  # frozen funding: the rule refuses it, as on the chain
        _, _, dt, expected = expected_tick(m, cmd.time)
        if override is None and (dt <= 0 or cmd.time > st.time):
            if st.guards:
                return cmd  # G4 refuses it without consequence, as on the chain
            self._correct(seq, cmd, None, "G4_BAD_DT")
            return None
        used = expected if override is None else int(override)
        fixed = c.FundingTick(cmd.mkt, cmd.time, m.index, m.last_funding_time, used)
        if fixed == cmd:
            return cmd
        if override is not None:
            why = "operator"
        elif cmd.new_index == 0 and m.index != 0:
            why = "G3_ZEROED"
        elif cmd.prev_index != m.index or cmd.prev_time != m.last_funding_time:
            why = "G1_PREV_MISMATCH"
        else:
            why = "G2_MISMATCH"
        self._correct(seq, cmd, used, why)
        self._how[i] = _TICK
        return fixed

    def _oracle(self, st: ExchangeState, i: int, seq: int, cmd: c.UpdateOracle,
                override: Override | None) -> c.UpdateOracle:
        m = st.markets[cmd.mkt]
        self._how[i] = _SCREENED
        if override is not None:
            self._pending[m.id] = 0
            self._correct(seq, cmd, int(override), "operator")
            return c.UpdateOracle(cmd.mkt, int(override), cmd.ext_basis_ppm)
        reason, self._pending[m.id] = g5_failure(
            m.params, m.oracle, self._pending.get(m.id, m.pending_oracle), cmd.oracle_st,
            cmd.ext_basis_ppm)
        if not reason:
            return cmd
        self._correct(seq, cmd, m.oracle, reason)
        return c.UpdateOracle(cmd.mkt, m.oracle, m.ext_basis)


# How `decide` runs a command `before` singled out.
_TICK = "tick"  # a recomputed funding tick: applied without the guards' checks
_SCREENED = "screened"  # an oracle input G5 already judged here: applied without G5
_ORACLE_AS_CHAIN = "oracle"  # outside the suspect window or KEEP: the engine's own rule
_WITHDRAW = "withdraw"  # a flow whose outcome on the chain is a fact
