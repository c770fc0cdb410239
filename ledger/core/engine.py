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

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from ledger.core import invariants, snapshot, views
from ledger.core.admit import admit as _admit
from ledger.core.authority import PRIVILEGED, check_block
from ledger.core.context import Ctx
from ledger.core.decide import HANDLERS
from ledger.core.evolve import apply_envelope
from ledger.core.hashing import StateHasher, full_hash
from ledger.core.state import ExchangeState
from ledger.errors import CommandInvalid
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import Envelope
from ledger.events.enums import Mode
from ledger.events.record import BY_CODE
from ledger.gcpause import gc_paused

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


class InputPolicy(Protocol):
    """How a counterfactual run treats each input (ledger.core.counterfactual).

    `before` sees each command at its turn (after the block's earlier commands
    took effect) and returns the command to run in its place, or None to leave
    it out; `decide` runs the rule for it (normally just `rule(ctx, cmd)`). A live
    chain never has one: inputs are only corrected in an audit's re-execution.
    """

    def before(self, st: ExchangeState, i: int, cmd: Any) -> Any | None: ...

    def decide(self, ctx: Ctx, i: int, cmd: Any, rule: Callable[[Ctx, Any], None]) -> None: ...


class Decided(NamedTuple):
    """A block decided and applied, its state hash not folded yet (`Engine.execute_block`)."""

    envelopes: list[Envelope]
    rejections: list[Envelope]
    refused: list[tuple[int, CommandInvalid]]


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
    #: A run with an `inputs` policy (an audit's re-execution) never enforces it.
    enforce_authority = True

    def __init__(self, state: ExchangeState | None = None) -> None:
        self.state = state if state is not None else ExchangeState()
        self.hasher = StateHasher()
        self.state.hasher = self.hasher
        self.hasher.rebuild(self.state)

    # -- writing ---------------------------------------------------------------

    def run_block(self, height: int, commands: Sequence[Any], *,
                  admit: bool = False, inputs: InputPolicy | None = None) -> BlockResult:
        """Decide and apply one block of IN records; return its envelopes and state hash.

        commands[0] must be BeginBlock; EndBlock is appended when missing.
        Raises CommandInvalid for a block of the wrong shape (nothing applied then).
        With `admit`, each command meets the door (`admit`) against the state as
        it stands when its turn comes (so an account created earlier in the block
        counts); a refused one is left out of the log and listed in `refused`.
        `inputs` (audits only) corrects inputs as they are processed; `i` is the
        command's index in `commands`.
        `execute_block` then `block_hash`, in one pause of the garbage collector.
        """
        with gc_paused(self.pause_gc):
            d = self.execute_block(height, commands, admit=admit, inputs=inputs)
            return BlockResult(d.envelopes, self.block_hash(), d.rejections, d.refused)

    def execute_block(self, height: int, commands: Sequence[Any], *,
                      admit: bool = False, inputs: InputPolicy | None = None) -> Decided:
        """`run_block` without the state hash: decide and apply the block's events.

        The entities it touched stay marked for `block_hash`, which must follow
        before the next block (a pipelined writer hashes while the store commits).
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
        st = self.state
        unauthorised: str | None = None
        if (self.enforce_authority and inputs is None and st.keys and height > 0
                and (PRIVILEGED.intersection(types) or c.OperatorAuth in types)):
            unauthorised = check_block(st.chain_id, st.keys, height, [cmds[i] for i in order])
        with gc_paused(self.pause_gc):
            # Matching checks the margins of every fill it emits; the fold's invariant-7
            # audit of the same fill would only re-derive them (ExchangeState.audit_fills).
            st.audit_fills = False
            try:
                return self._run(height, cmds, types, order, admit, inputs, unauthorised)
            finally:
                st.audit_fills = True

    def block_hash(self) -> bytes:
        """Fold the entities the block touched into the state hash; the hash after the block."""
        return self.hasher.current(self.state)

    def _run(self, height: int, cmds: list[Any], types: list[type[Any]], order: list[int],
             admit: bool, inputs: InputPolicy | None,
             unauthorised: str | None = None) -> Decided:
        st = self.state
        st.height = height
        refused: list[tuple[int, CommandInvalid]] = []
        ctx = Ctx(st, height, [])
        for i in order:
            cmd = cmds[i]
            t = types[i]
            if inputs is not None and t is not c.BeginBlock and t is not c.EndBlock:
                cmd = inputs.before(st, i, cmd)
                if cmd is None:
                    continue
                t = type(cmd)
            guarded = unauthorised is not None and (t in PRIVILEGED or t is c.OperatorAuth)
            if guarded and admit:
                refused.append((i, CommandInvalid(str(unauthorised))))
                continue
            if admit and t is not c.BeginBlock and t is not c.EndBlock:
                try:
                    _admit(st, cmd)
                except CommandInvalid as exc:
                    refused.append((i, exc))
                    continue
            # An IN event is logged (and evolved: only BeginBlock changes anything)
            # with cause 0; the OUT events its rule emits name its seq as their cause.
            ctx.cause = 0
            seq = ctx.emit(cmd).seq
            if guarded:
                # Re-executing a log whose privileged commands no valid signature
                # covers: they do nothing (so a forged log diverges here).
                ctx.cause = seq
                ctx.emit(o.CommandUnauthorized(t.TYPE_CODE, str(unauthorised)))
                continue
            h = HANDLERS.get(t)
            if h is not None:
                ctx.cause = seq
                if inputs is None:
                    h(ctx, cmd)
                else:
                    inputs.decide(ctx, i, cmd, h)
        return Decided(ctx.out, ctx.rejections, refused)

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
