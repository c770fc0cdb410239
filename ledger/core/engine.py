"""The Engine facade: run blocks of IN commands, rebuild from envelopes, hash, snapshot.

This is the contract the sequencer, store, CLI and simulator code against
(ledger/core/CONTRACT.md records any change to it). Inside, a block is:
stable-sort the IN commands into the phases of SPEC 12 (BeginBlock, oracle
updates, funding ticks/resumes, everything else in the given order, EndBlock),
then for each IN event: assign the next seq, evolve it, and let `decide` emit
its OUT events (seqs follow, cause = the IN seq), each evolved as it is emitted.
`apply_block` folds stored envelopes with the same evolve. The state hash is
folded in at block end over the entities the block touched.

A funding tick is judged on the market's inputs as of the block start (see
ledger.core.funding), so `expected_funding_index`, called between blocks, is
the exact index to publish in the next block.

If `run_block` raises (only a bug or a command the door should have refused
can make it), the engine's state is partly applied and must be discarded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ledger.core import invariants, snapshot, views
from ledger.core.admit import admit as _admit
from ledger.core.authority import PRIVILEGED, check_block
from ledger.core.context import Ctx
from ledger.core.decide import HANDLERS
from ledger.core.evolve import EVOLVE, _noop, apply_envelope
from ledger.core.hashing import StateHasher, full_hash
from ledger.core.state import ExchangeState
from ledger.errors import CommandInvalid
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import Mode
from ledger.events.record import BY_CODE
from ledger.gcpause import gc_paused

_tnew = tuple.__new__

#: Processing phase of each IN type (SPEC 12 "Block order"); others are phase 3.
PHASE: dict[type[Any], int] = {
    c.BeginBlock: 0,
    # Configuration applies to the whole block it arrives in: a SetGuards in the
    # same block as a bad FundingTick must already guard that tick.
    c.SetGuards: 0,
    c.SetLossMode: 0,
    # The authority first: keys register, and a block's signature is seen, before the
    # commands they govern.
    c.RegisterKey: 0,
    c.OperatorAuth: 0,
    c.UpdateOracle: 1,
    c.FundingTick: 2,
    c.FundingResume: 2,
    c.EndBlock: 4,
}
REJECTION_TYPES = (o.OrderRejected, o.WithdrawRejected, o.FundingTickRejected,
                   o.RefundRejected, o.OracleUpdateRejected)
#: every IN record type (codes below 64)
IN_TYPES = frozenset(cls for code, cls in BY_CODE.items() if code < 64)


def processing_order(types: Sequence[type[Any]]) -> list[int]:
    """Indices of a block's commands in processing (and log) order: stable by phase."""
    phase = PHASE.get
    phases = [phase(t, 3) for t in types]
    return sorted(range(len(types)), key=phases.__getitem__)


class BlockResult(NamedTuple):
    envelopes: list[Envelope]
    state_hash: bytes
    rejections: list[Envelope]
    #: (index in the given command list, error) of commands refused at the door
    #: (only with `admit=True`); they were not logged and received no seq.
    refused: list[tuple[int, CommandInvalid]] = []


class Engine:
    """The pure exchange state machine behind one writer (or one rebuild)."""

    #: Pause Python's cyclic garbage collector while a block runs (restored on exit,
    #: then one generation-0 pass). A block allocates a few hundred thousand
    #: acyclic objects (envelopes, events, orders) that stay alive; the collector's
    #: automatic passes over them and over the whole state cost about a quarter of
    #: the engine's time. Set False to leave the collector alone.
    pause_gc = True
    #: Check operator signatures (ledger.core.authority). A counterfactual engine
    #: (what-if audits re-running a branch with corrected inputs) turns it off: it
    #: simulates, it writes nothing, and its edited blocks carry no valid signature.
    enforce_authority = True

    def __init__(self, state: ExchangeState | None = None) -> None:
        self.state = state if state is not None else ExchangeState()
        self.hasher = StateHasher()
        self.state.hasher = self.hasher
        self.hasher.rebuild(self.state)

    # -- writing ---------------------------------------------------------------

    def run_block(self, height: int, commands: Sequence[Any], *,
                  admit: bool = False) -> BlockResult:
        """Decide and apply one block of IN records; return its envelopes and state hash.

        commands[0] must be BeginBlock; EndBlock is appended when missing.
        Raises CommandInvalid for a block of the wrong shape (nothing applied then).
        With `admit`, each command meets the door (`admit`) against the state as
        it stands when its turn comes (so an account created earlier in the block
        counts); a refused one is left out of the log and listed in `refused`.
        """
        if not commands or type(commands[0]) is not c.BeginBlock:
            raise CommandInvalid("block: the first command must be BeginBlock(time)")
        cmds = list(commands)
        if type(cmds[-1]) is not c.EndBlock:
            cmds.append(c.EndBlock())
        types = [type(cmd) for cmd in cmds]
        n = len(cmds)
        if (types.count(c.BeginBlock) != 1 or types.count(c.EndBlock) != 1
                or not IN_TYPES.issuperset(types)):
            for i, t in enumerate(types):
                if (t is c.BeginBlock and i != 0) or (t is c.EndBlock and i != n - 1):
                    raise CommandInvalid(f"block: {t.__name__} may only open/close a block "
                                         f"(found at position {i})")
                if getattr(t, "KIND", None) != "IN":
                    raise CommandInvalid(f"block: {t.__name__} is not an IN event")
        order = processing_order(types)
        unauthorised: str | None = None
        st = self.state
        if self.enforce_authority and st.keys and height > 0 and (PRIVILEGED.intersection(types)
                                       or c.OperatorAuth in types):
            unauthorised = check_block(st.chain_id, st.keys, height, [cmds[i] for i in order])
        with gc_paused(self.pause_gc):
            return self._run(height, cmds, types, order, admit, unauthorised)

    def _run(self, height: int, cmds: list[Any], types: list[type[Any]], order: list[int],
             admit: bool, unauthorised: str | None = None) -> BlockResult:
        st = self.state
        st.height = height
        out: list[Envelope] = []
        append = out.append
        refused: list[tuple[int, CommandInvalid]] = []
        ctx = Ctx(st, height, out)
        handlers = HANDLERS
        evolve = EVOLVE
        door = _admit if admit else None
        for i in order:
            cmd = cmds[i]
            t = types[i]
            guarded = unauthorised is not None and (t in PRIVILEGED or t is c.OperatorAuth)
            if guarded and door is not None:
                refused.append((i, CommandInvalid(str(unauthorised))))
                continue
            if door is not None and t is not c.BeginBlock and t is not c.EndBlock:
                try:
                    door(st, cmd)
                except CommandInvalid as exc:
                    refused.append((i, exc))
                    continue
            seq = st.seq + 1
            st.seq = seq
            fold = evolve[t]
            if fold is not _noop:  # most IN events change nothing by themselves
                fold(st, cmd)
            append(_tnew(Envelope, (seq, height, 0, cmd)))
            if guarded:
                # Re-executing a log whose privileged commands no valid signature
                # covers: they do nothing (so a forged log diverges here).
                ctx.cause = seq
                ctx.emit(o.CommandUnauthorized(t.TYPE_CODE, str(unauthorised)))
                continue
            h = handlers.get(t)
            if h is not None:
                ctx.cause = seq
                h(ctx, cmd)
        state_hash = self.hasher.current(st)
        return BlockResult(out, state_hash, ctx.rejections, refused)

    def apply_block(self, height: int, envelopes: Sequence[Envelope]) -> bytes:
        """Rebuild path: evolve every stored envelope (IN and OUT) in order; return the hash."""
        st = self.state
        st.height = height
        with gc_paused(self.pause_gc):
            for env in envelopes:
                apply_envelope(st, env)
            return self.hasher.current(st)

    # -- hashing, snapshots, invariants ----------------------------------------

    def state_hash(self) -> bytes:
        """The incremental state hash (folds in whatever is dirty)."""
        return bytes(self.hasher.current(self.state))

    def full_state_hash(self) -> bytes:
        """The state hash recomputed from every entity; equals state_hash()."""
        return full_hash(self.state)

    def snapshot_bytes(self) -> bytes:
        """Canonical msgpack of the whole state (deterministic bytes)."""
        return snapshot.dump(self.state)

    @classmethod
    def from_snapshot(cls, data: bytes) -> Engine:
        """An engine whose state is restored from `snapshot_bytes` output."""
        return cls(snapshot.load(data))

    def check_invariants(self, height: int) -> None:
        """Check SPEC 11 for the state after a block; raises InvariantViolated."""
        invariants.check(self.state, height)

    # -- reads -----------------------------------------------------------------

    @property
    def guards_enabled(self) -> bool:
        return bool(self.state.guards)

    @property
    def seq(self) -> int:
        return int(self.state.seq)

    def account_value(self, acct: str) -> int:
        return views.margin(self.state, acct)[0]

    def margin(self, acct: str) -> tuple[int, int, int, int]:
        """(AV, IMR, MMR, free)."""
        return views.margin(self.state, acct)

    def position(self, acct: str, mkt: str) -> tuple[int, int, int, int]:
        """(size, cost, idx, realized)."""
        return views.position(self.state, acct, mkt)

    def positions(self, acct: str) -> dict[str, tuple[int, int, int, int]]:
        return views.positions(self.state, acct)

    def balance(self, acct: str) -> int:
        return views.balance(self.state, acct)

    def market(self, mkt: str) -> views.MarketView:
        return views.market(self.state, mkt)

    def markets(self) -> list[str]:
        return views.markets(self.state)

    def open_orders(self, acct: str) -> list[views.OrderView]:
        return views.open_orders(self.state, acct)

    def best_bid(self, mkt: str) -> int | None:
        return views.best_bid(self.state, mkt)

    def best_ask(self, mkt: str) -> int | None:
        return views.best_ask(self.state, mkt)

    def accounts(self) -> list[str]:
        return views.accounts(self.state)

    def has_account(self, acct: str) -> bool:
        return acct in self.state.accounts

    def has_market(self, mkt: str) -> bool:
        return mkt in self.state.markets

    def expected_funding_index(self, mkt: str, time: int) -> int:
        return views.expected_funding_index(self.state, mkt, time)

    def effective_mode(self, mkt: str) -> Mode:
        return views.market(self.state, mkt).effective_mode

    def globals(self) -> views.Globals:
        return views.globals_(self.state)
