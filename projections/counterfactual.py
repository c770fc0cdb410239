"""The counterfactual C of SPEC 13, run over a stretch of the chain.

A stretch is the blocks above a snapshot height: an archived branch (after a
rollback), or the canonical chain from a snapshot to its head (to assess or
compensate without rolling back). Both worlds start from the same verified
state at the stretch's base:

- the *actual* world replays the stored blocks (each block's state hash checked);
- C re-executes the stretch's IN events, in their order, with the bad inputs
  corrected (ledger.core.counterfactual: recomputed funding ticks, G5-refused
  prices replaced by the last good one, operator overrides by seq) and the
  external flows applied as the facts they were.

Nothing is written. What C did (its envelopes, block by block) is kept for the
harm attribution (projections.harm), which values both worlds at common marks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ledger.core.counterfactual import (
    KEEP,
    SKIP,
    Correction,
    FlaggedFlow,
    InputCorrector,
    Override,
)
from ledger.core.engine import Engine
from ledger.errors import CommandInvalid, NotFound, VerificationFailed
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.replay import restore_exact
from ledger.store.reader import ChainReader

#: the input types an operator may correct by seq
CORRECTABLE = (c.FundingTick, c.UpdateOracle)


@dataclass(frozen=True)
class Stretch:
    """Blocks base_height+1 .. last_height, of an archived branch or (None) the chain."""

    branch: int | None
    base_height: int
    last_height: int

    def describe(self) -> str:
        where = f"branch {self.branch}" if self.branch is not None else "the canonical chain"
        return f"{where}, heights {self.base_height + 1}..{self.last_height}"


@dataclass
class Counterfactual:
    """The two worlds over one stretch, and what C corrected."""

    stretch: Stretch
    first_suspect_height: int
    #: the state at the base, as canonical snapshot bytes (each world starts from it)
    base_state: bytes
    actual: Engine
    corrected: Engine
    actual_blocks: list[list[Envelope]] = field(default_factory=list)
    corrected_blocks: list[list[Envelope]] = field(default_factory=list)
    #: C's state hash after each block (equal to the chain's where nothing was corrected)
    corrected_hashes: list[bytes] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)
    flagged_flows: list[FlaggedFlow] = field(default_factory=list)
    #: markets whose price the stretch's inputs moved (what a recovery carries forward)
    oracle_markets: list[str] = field(default_factory=list)

    def start_engine(self) -> Engine:
        """A fresh engine at the stretch's base state."""
        return Engine.from_snapshot(self.base_state)


def branch_stretch(store: ChainReader, branch: int) -> Stretch:
    """The stretch an archived branch covers (refused if its base is no longer canonical)."""
    rec = store.branch(branch)
    base = int(rec["base_height"])
    if store.block(base).hash != bytes(rec["base_hash"]):
        raise VerificationFailed(base, f"the chain below branch {branch} was itself rolled "
                                 "back; its base block is no longer canonical")
    return Stretch(branch, base, int(rec["last_height"]))


def chain_stretch(store: ChainReader, base: int) -> Stretch:
    """The canonical chain from snapshot height `base` to the head."""
    head = store.head.height
    if not 0 <= base < head:
        raise CommandInvalid(f"a stretch starts below the head ({head}); was {base}")
    return Stretch(None, base, head)


def parse_override(text: str) -> tuple[int, Override]:
    """`SEQ=VALUE` (VALUE an integer, `keep` or `skip`) into (seq, override)."""
    seq_s, sep, value = text.partition("=")
    seq_s, value = seq_s.strip(), value.strip().lower()
    if not sep or not seq_s.isascii() or not seq_s.isdigit():
        raise CommandInvalid(f"--correct {text!r}: expected SEQ=VALUE, VALUE an integer, "
                             "'keep' or 'skip'")
    if value in (KEEP, SKIP):
        return int(seq_s), value
    digits = value[1:] if value.startswith("-") else value
    if not digits.isascii() or not digits.isdigit() or len(digits) > 30:
        raise CommandInvalid(f"--correct {text!r}: VALUE must be an integer, 'keep' or "
                             f"'skip', was {value!r}")
    return int(seq_s), int(value)


def run_counterfactual(store: ChainReader, stretch: Stretch, *,
                       first_suspect_height: int | None = None,
                       overrides: Mapping[int, Override] | None = None,
                       drop_refs: Sequence[str] = ()) -> Counterfactual:
    """Replay the stretch as stored and re-execute it as it should have been (see module doc).

    `first_suspect_height` (default: the whole stretch) is the first height whose
    inputs may be corrected. `overrides` are the operator's corrections by seq
    (refused with `CommandInvalid` if a seq is not a FundingTick or UpdateOracle
    input of the stretch). `drop_refs`: refunds with these refs (a remedy's own
    payouts) are left out of C.
    """
    lo, hi = stretch.base_height + 1, stretch.last_height
    suspect = lo if first_suspect_height is None else max(lo, first_suspect_height)
    if suspect > hi + 1:
        raise CommandInvalid(f"the first suspect height {suspect} is above the stretch's last "
                             f"height {hi}")
    actual = restore_exact(store, stretch.base_height)
    base_state = actual.snapshot_bytes()
    corrected = Engine.from_snapshot(base_state)
    overrides = dict(overrides or {})
    _check_overrides(store, stretch, overrides)
    first_seq = _first_seq_at(store, stretch, suspect)
    corrector = InputCorrector(first_suspect_seq=first_seq, overrides=overrides,
                               drop_refs=drop_refs)
    cf = Counterfactual(stretch, suspect, base_state, actual, corrected)
    oracle_markets: dict[str, None] = {}
    for header, envs in store.iter_blocks(lo, hi, branch=stretch.branch):
        got = actual.apply_block(header.height, envs)
        if got != header.state_hash:
            raise VerificationFailed(header.height, f"{stretch.describe()} does not replay to "
                                     "its own state hashes")
        ins = [e for e in envs if e.cause == 0]
        corrector.withdrawals = _withdrawal_outcomes(envs)
        corrector.begin_block([e.seq for e in ins])
        for e in ins:
            if type(e.event) is c.UpdateOracle:
                oracle_markets[e.event.mkt] = None
        result = corrected.run_block(header.height, [e.event for e in ins], inputs=corrector)
        cf.actual_blocks.append(envs)
        cf.corrected_blocks.append(result.envelopes)
        cf.corrected_hashes.append(result.state_hash)
    cf.corrections = corrector.corrections
    cf.flagged_flows = corrector.flagged
    cf.oracle_markets = sorted(oracle_markets)
    return cf


def _withdrawal_outcomes(envs: Sequence[Envelope]) -> dict[int, tuple[bool, str]]:
    """Withdraw seq -> (paid out, refusal reason) as the chain decided it."""
    out: dict[int, tuple[bool, str]] = {}
    for e in envs:
        ev = e.event
        if type(ev) is o.Withdrew:
            out[e.cause] = (True, "")
        elif type(ev) is o.WithdrawRejected:
            out[e.cause] = (False, ev.reason)
    return out


def _first_seq_at(store: ChainReader, stretch: Stretch, height: int) -> int:
    if height > stretch.last_height:
        return 1 << 63  # nothing is suspect
    return int(store.block(height, branch=stretch.branch).first_seq)


def _check_overrides(store: ChainReader, stretch: Stretch,
                     overrides: Mapping[int, Override]) -> None:
    """Every override names a correctable input of the stretch (else CommandInvalid)."""
    if not overrides:
        return
    first = store.block(stretch.base_height + 1, branch=stretch.branch).first_seq
    last = store.block(stretch.last_height, branch=stretch.branch).last_seq
    for seq, value in sorted(overrides.items()):
        if not first <= seq <= last:
            raise CommandInvalid(f"--correct {seq}=...: seq {seq} is not in "
                                 f"{stretch.describe()} (seqs {first}..{last})")
        try:
            height = store.height_of_seq(seq, branch=stretch.branch)
        except NotFound:
            raise CommandInvalid(f"--correct {seq}=...: no event with seq {seq}") from None
        (env,) = [e for e in store.events(height, height, branch=stretch.branch)
                  if e.seq == seq]
        if not isinstance(env.event, CORRECTABLE):
            raise CommandInvalid(f"--correct {seq}=...: seq {seq} is a {env.type_name}; only "
                                 "FundingTick and UpdateOracle inputs can be corrected")
        if isinstance(value, int) and value <= 0 and isinstance(env.event, c.UpdateOracle):
            raise CommandInvalid(f"--correct {seq}={value}: an oracle price must be positive")


def latest_good_prices(cf: Counterfactual) -> list[c.UpdateOracle]:
    """The latest guard-approved price of each market the stretch's inputs moved.

    C's price of a market is its last approved oracle input (a refused one was
    replaced by the last good price), so C's final oracle and external basis are
    exactly what a rollback's recovery block carries forward (SPEC 13).
    """
    markets = cf.corrected.state.markets
    return [c.UpdateOracle(mkt, markets[mkt].oracle, markets[mkt].ext_basis)
            for mkt in cf.oracle_markets if mkt in markets]
