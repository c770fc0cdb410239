"""The exchange state: plain `__slots__` entities that `evolve` mutates.

Entities are hot, so they are slotted classes, not records. Derived data that
is not part of the canonical state (book indexes, the liquidation watch heaps,
per-block scratch) is marked as such: it is rebuilt on restore and never hashed.
"""

from __future__ import annotations

from typing import Any

from ledger.core.book import BookSide, TriggerBook
from ledger.core.fixedpoint import PPM, S, pow10_neg
from ledger.core.members import LOSS_ADL, OK
from ledger.events.enums import Mode, OrderType, SelfTrade, Side, TimeInForce
from ledger.events.payloads import MarketParams

#: System accounts (SPEC 2): ordinary accounts created at genesis.
FEES = "FEES"
LIQ_VAULT = "LIQ_VAULT"
SYSTEM_ACCOUNTS = (FEES, LIQ_VAULT)

#: The recovery band (SPEC 9, Paradex after 19 Jan 2026: 5 bps around the external fair
#: price): what a SetMode without a band means, and what a rollback's recovery sets.
DEFAULT_RECOVERY_BAND_PPM = 500


class Position:
    """One account's position in one market (SPEC 5): size bq, cost qq, funding idx, realized qq.

    `buy_open`/`sell_open` are the resting non-reduce-only order quantities
    (B and A of the SPEC 6 W formula), kept here so a margin check is O(positions).
    """

    __slots__ = ("size", "cost", "idx", "realized", "buy_open", "sell_open")

    def __init__(self, idx: int) -> None:
        self.size = 0
        self.cost = 0
        self.idx = idx
        self.realized = 0
        self.buy_open = 0
        self.sell_open = 0


class Account:
    __slots__ = ("id", "balance", "debt", "positions", "orders", "liq_ver")

    def __init__(self, acct: str) -> None:
        self.id = acct
        self.balance = 0
        #: the part of a negative balance recorded in bad_debt (SOCIALIZE); credits repay it.
        self.debt = 0
        #: mkt -> Position, in first-use order; iterate sorted(...) where results depend on order.
        self.positions: dict[str, Position] = {}
        #: open order ids (book and trigger list), insertion-ordered.
        self.orders: dict[int, None] = {}
        #: derived: version of the account's entries in the liquidation watch heaps.
        self.liq_ver = 0


class Order:
    """An open order. `prio` is its time priority: the accepting or triggering seq."""

    __slots__ = ("id", "acct", "mkt", "side", "qty", "rem", "price", "type", "tif",
                 "reduce_only", "trigger", "stp", "prio", "on_book", "armed")

    def __init__(self, oid: int, acct: str, mkt: str, side: Side, qty: int, price: int | None,
                 otype: OrderType, tif: TimeInForce, reduce_only: bool, trigger: int | None,
                 stp: SelfTrade) -> None:
        self.id = oid
        self.acct = acct
        self.mkt = mkt
        self.side = side
        self.qty = qty
        self.rem = qty
        self.price = price
        self.type = otype
        self.tif = tif
        self.reduce_only = reduce_only
        self.trigger = trigger
        self.stp = stp
        self.prio = oid
        self.on_book = False
        #: True while a TP/SL waits in the trigger list.
        self.armed = False


class Market:
    __slots__ = (
        "id", "params", "mode", "mode_band", "mode_reason", "oracle", "ext_basis", "basis",
        "mark", "index", "last_funding_time", "premium_acc", "premium_dt", "last_oracle_time",
        "last_trade", "pending_oracle", "funding_gap", "bids", "asks", "triggers", "holders",
        "move_counter", "liq_heap", "imf", "mmf", "qce", "qdiv", "fbase", "bands", "watch_scale",
        "oi_long",
    )

    def __init__(self, mkt: str, params: MarketParams, oracle: int, index: int,
                 time: int) -> None:
        self.id = mkt
        self.set_params(params)
        self.mode = OK
        self.mode_band = 0
        self.mode_reason = ""
        self.oracle = oracle
        self.ext_basis = 0
        self.basis = 0
        self.mark = oracle
        self.index = index
        self.last_funding_time = time
        self.premium_acc = 0
        self.premium_dt = 0
        self.last_oracle_time = time
        #: funding inputs as of the start of the block: (oracle, premium_acc, premium_dt,
        #: basis). Set by BeginBlock's evolve; a function of the state, so not hashed.
        self.fbase = (oracle, 0, 0, 0)
        #: price of the last fill (0: none yet).
        self.last_trade = 0
        #: G5: an oracle jump waiting for a confirming update (0: none).
        self.pending_oracle = 0
        #: G4: a funding gap was found; CANCEL_ONLY until FundingResume.
        self.funding_gap = False
        self.bids = BookSide(buy=True)
        self.asks = BookSide(buy=False)
        self.triggers = TriggerBook()
        #: accounts holding a Position entry here (derived index, insertion order).
        self.holders: dict[str, None] = {}
        #: derived: monotone measure of mark and index movement (liquidation watch).
        self.move_counter = 0
        #: derived: heap of (threshold, acct, liq_ver) for the liquidation watch.
        self.liq_heap: list[tuple[int, str, int]] = []
        #: derived: long open interest, the sum of the positive sizes (G7 reads it).
        self.oi_long = 0

    def set_params(self, params: MarketParams) -> None:
        """Take new params and refresh what is cached from them (derived, never hashed)."""
        self.params = params
        #: imf, mmf and qce, the constants of every margin formula.
        self.imf = params.imf_ppm
        self.mmf = mmf_ppm(params)
        self.qce: int = params.qce
        #: 10^-qce, the liquidation watch's scale (ledger.core.watch).
        self.qdiv: int = pow10_neg(params.qce)
        #: PPM * S * 10^-qce: the liquidation watch's counter units per qq per bq.
        self.watch_scale: int = PPM * S * self.qdiv
        #: (mark, lo, hi, lo2, hi2): the trading band and the x2 band at that mark
        #: (ledger.core.bands); recomputed when the mark differs (None: not yet).
        self.bands: tuple[int | None, int, int, int, int] = (None, 0, 0, 0, 0)


class ExchangeState:
    """Everything decide reads and evolve writes."""

    __slots__ = (
        "seq", "height", "time", "accounts", "markets", "orders", "mode", "mode_band",
        "mode_reason", "guards", "loss_mode", "funding_dust", "ext_in", "ext_out", "bad_debt",
        "dirty_a", "dirty_o", "dirty_m", "liq_dirty", "block", "audit_fills", "hasher",
        "chain_id", "keys",
    )

    def __init__(self) -> None:
        self.seq = 0
        self.height = -1
        self.time = 0
        self.accounts: dict[str, Account] = {}
        self.markets: dict[str, Market] = {}
        self.orders: dict[int, Order] = {}
        self.mode = OK
        self.mode_band = 0
        self.mode_reason = ""
        self.guards = False
        self.loss_mode = LOSS_ADL
        self.funding_dust = 0
        self.ext_in = 0
        self.ext_out = 0
        self.bad_debt = 0
        #: the chain's authority (ledger.core.authority): the chain id its keys were
        #: registered for, and key id -> (role, name, public key, active). Empty on a
        #: chain created without keys (legacy, unsigned): then nothing is enforced.
        self.chain_id = ""
        self.keys: dict[str, tuple[int, str, bytes, bool]] = {}
        #: ids of the accounts, orders and markets touched since the last hash update
        #: (insertion-ordered sets); the globals are re-digested at every update.
        self.dirty_a: dict[str, None] = {}
        self.dirty_o: dict[int, None] = {}
        self.dirty_m: dict[str, None] = {}
        #: accounts whose own numbers changed since the last sweep.
        self.liq_dirty: dict[str, None] = {}
        #: per-block scratch for the invariant checks (not state).
        self.block = BlockScratch()
        #: record per-fill margin facts for invariant 7 when folding Filled events (costs
        #: one AV evaluation per fill side that grows). The live engine turns it off while
        #: it decides a block: matching has just checked the same AV' >= IMR' of every
        #: fill it emits (margin_after_fill), so the audit could only re-derive it.
        #: The fold of stored blocks turns it off too (refold.apply_block_bytes: a block
        #: whose state hash matches its header needs no re-audit); it stays on for
        #: engines that evolve single events outside those paths (harm.py's worlds).
        self.audit_fills = True
        #: the incremental state hash (ledger.core.hashing.StateHasher), attached by Engine.
        self.hasher: Any = None


class BlockScratch:
    """Facts the block's events left for check_invariants (cleared at BeginBlock)."""

    __slots__ = ("fills", "ticks", "margin_breaches", "index_changes", "swept")

    def __init__(self) -> None:
        #: (Filled, maker prio, taker prio, taker tif, effective mode, mark, maker price).
        self.fills: list[tuple[Any, int, int, int, int, int, int]] = []
        #: (FundingTicked, guards on) per applied tick.
        self.ticks: list[tuple[Any, bool]] = []
        #: (acct, mkt, av, imr) for fills that grew |size| and left AV < IMR.
        self.margin_breaches: list[tuple[str, str, int, int]] = []
        #: markets whose index changed other than by FundingTicked/RolledBack (never expected).
        self.index_changes: list[str] = []
        #: the accounts the block's liquidation sweep checked exactly (ledger.core.watch).
        self.swept: list[str] = []


def effective_mode(state: ExchangeState, m: Market) -> Mode:
    """The stricter of the global mode and the market's own (SPEC 9)."""
    return m.mode if m.mode >= state.mode else state.mode


def recovery_band_ppm(state: ExchangeState, m: Market) -> int:
    """The band of whichever scope sets the effective mode (market wins a tie)."""
    band = m.mode_band if m.mode >= state.mode else state.mode_band
    return band if band > 0 else DEFAULT_RECOVERY_BAND_PPM


def mmf_ppm(p: MarketParams) -> int:
    """Maintenance fraction mmf = fl(imf * maint_fraction, PPM) (SPEC 6)."""
    return (p.imf_ppm * p.maint_fraction_ppm) // PPM
