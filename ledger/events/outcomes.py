"""OUT events: what `decide` made of the inputs (codes 64..127)."""

from __future__ import annotations

from typing import NamedTuple

from ledger.events.enums import (
    CancelReason,
    FundingResumeAction,
    KeyRole,
    LiquidationMethod,
    LossMode,
    Mode,
    OrderType,
    SelfTrade,
    Side,
    TimeInForce,
)
from ledger.events.payloads import CarriedFlow, LiquidatedPosition, MarketParams
from ledger.events.record import event


@event(64, accounts=("acct",))
class AccountCreated(NamedTuple):
    acct: str


@event(65, accounts=("acct",))
class Deposited(NamedTuple):
    acct: str
    amount_qq: int
    ext_ref: str


@event(66, accounts=("acct",))
class Withdrew(NamedTuple):
    acct: str
    amount_qq: int
    ext_ref: str


@event(67, accounts=("acct",))
class WithdrawRejected(NamedTuple):
    acct: str
    amount_qq: int
    ext_ref: str
    reason: str


@event(68, markets=("mkt",))
class MarketListed(NamedTuple):
    mkt: str
    params: MarketParams
    oracle_st: int
    funding_index: int


@event(69, markets=("mkt",))
class MarketParamsUpdated(NamedTuple):
    mkt: str
    params: MarketParams


@event(70, markets=("mkt",))
class OraclePriceUpdated(NamedTuple):
    mkt: str
    oracle_st: int
    ext_basis_ppm: int
    basis_ppm: int
    mark_st: int
    premium_acc: int
    premium_dt: int


@event(71, accounts=("acct",), markets=("mkt",))
class OrderPlaced(NamedTuple):
    order_id: int
    acct: str
    mkt: str
    side: Side
    qty_bq: int
    price_st: int | None
    type: OrderType
    tif: TimeInForce
    reduce_only: bool
    trigger_st: int | None
    stp: SelfTrade


@event(72, accounts=("acct",), markets=("mkt",))
class OrderRejected(NamedTuple):
    acct: str
    mkt: str
    reason: str


@event(73, accounts=("acct",), markets=("mkt",))
class OrderCancelled(NamedTuple):
    order_id: int
    acct: str
    mkt: str
    remaining_bq: int
    reason: CancelReason


@event(74, accounts=("acct",), markets=("mkt",))
class OrderTriggered(NamedTuple):
    """A TP/SL order left the trigger list; this event's seq is its new priority."""

    order_id: int
    acct: str
    mkt: str
    mark_st: int


@event(75, accounts=("maker", "taker"), markets=("mkt",))
class Filled(NamedTuple):
    mkt: str
    maker_order: int
    taker_order: int
    maker: str
    taker: str
    taker_side: Side
    qty_bq: int
    price_st: int
    value_qq: int
    maker_fee_qq: int
    taker_fee_qq: int
    maker_realized_qq: int
    taker_realized_qq: int


@event(76, markets=("mkt",))
class FundingTicked(NamedTuple):
    mkt: str
    time: int
    prev_index: int
    new_index: int
    rate_ppm: int
    premium_ppm: int
    dt: int
    oracle_st: int


@event(77, markets=("mkt",))
class FundingTickRejected(NamedTuple):
    mkt: str
    time: int
    reason: str
    published_index: int
    expected_index: int
    prev_index: int
    prev_time: int


@event(78, accounts=("acct",), markets=("mkt",))
class FundingSettled(NamedTuple):
    acct: str
    mkt: str
    amount_qq: int
    idx_from: int
    idx_to: int
    dust: int


@event(79, accounts=("acct",))
class Liquidated(NamedTuple):
    acct: str
    method: LiquidationMethod
    av_qq: int
    mmr_qq: int
    positions: tuple[LiquidatedPosition, ...]
    fee_qq: int
    deficit_qq: int


@event(80, accounts=("liquidated", "offset"), markets=("mkt",))
class Deleveraged(NamedTuple):
    mkt: str
    liquidated: str
    offset: str
    qty_bq: int
    value_qq: int
    offset_realized_qq: int


@event(81, accounts=("acct",))
class SocializedLossApplied(NamedTuple):
    acct: str
    amount_qq: int
    vault_paid_qq: int
    bad_debt_qq: int


@event(82, markets=("mkt",))
class MarketHalted(NamedTuple):
    mkt: str
    reason: str
    by: str


@event(83, markets=("mkt",))
class MarketResumed(NamedTuple):
    mkt: str
    reason: str
    by: str


@event(84)
class ModeChanged(NamedTuple):
    scope: str
    mode: Mode
    band_ppm: int
    reason: str
    by: str


@event(85)
class SnapshotTaken(NamedTuple):
    at_seq: int
    state_hash: bytes


@event(86)
class RolledBack(NamedTuple):
    target_height: int
    branch_id: int
    snapshot_hash: bytes
    flows: tuple[CarriedFlow, ...]
    reason: str
    operator: str


@event(87, accounts=("acct",))
class RefundIssued(NamedTuple):
    acct: str
    amount_qq: int
    source: str
    ref: str


@event(88)
class BlockCommitted(NamedTuple):
    height: int
    state_hash: bytes


@event(89)
class GuardsSet(NamedTuple):
    enabled: bool
    reason: str
    operator: str


@event(90, markets=("mkt",))
class FundingResumed(NamedTuple):
    mkt: str
    action: FundingResumeAction
    time: int


@event(91)
class LossModeSet(NamedTuple):
    mode: LossMode
    reason: str
    by: str


@event(92, markets=("mkt",))
class OracleUpdateRejected(NamedTuple):
    """G5 refused an oracle update; `pending_st` is a jump held for confirmation (0: none)."""

    mkt: str
    oracle_st: int
    ext_basis_ppm: int
    reason: str
    pending_st: int


@event(93, accounts=("acct", "source"))
class RefundRejected(NamedTuple):
    acct: str
    amount_qq: int
    source: str
    ref: str
    reason: str


#: OrderType values held off the book until their trigger fires.
TRIGGER_TYPES = (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)


@event(94)
class KeyRegistered(NamedTuple):
    """A key of the chain's authority was registered (or revoked: active False)."""

    chain_id: str
    key_id: str
    role: KeyRole
    name: str
    public_key: bytes
    active: bool


@event(95)
class CommandUnauthorized(NamedTuple):
    """A privileged command no valid operator signature covers: it did nothing."""

    type_code: int
    reason: str
