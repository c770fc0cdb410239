"""OUT events: what `decide` made of the inputs (codes 64..127)."""

from __future__ import annotations

from ledger.events.enums import (
    TP_SL,
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
from ledger.events.record import Record, event


@event(64, accounts=("acct",))
class AccountCreated(Record):
    acct: str


@event(65, accounts=("acct",))
class Deposited(Record):
    acct: str
    amount_qq: int
    ext_ref: str


@event(66, accounts=("acct",))
class Withdrew(Record):
    acct: str
    amount_qq: int
    ext_ref: str


@event(67, accounts=("acct",))
class WithdrawRejected(Record):
    acct: str
    amount_qq: int
    ext_ref: str
    reason: str


@event(68, markets=("mkt",))
class MarketListed(Record):
    mkt: str
    params: MarketParams
    oracle_st: int
    funding_index: int


@event(69, markets=("mkt",))
class MarketParamsUpdated(Record):
    mkt: str
    params: MarketParams


@event(70, markets=("mkt",))
class OraclePriceUpdated(Record):
    mkt: str
    oracle_st: int
    ext_basis_ppm: int
    basis_ppm: int
    mark_st: int
    premium_acc: int
    premium_dt: int


@event(71, accounts=("acct",), markets=("mkt",))
class OrderPlaced(Record):
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
class OrderRejected(Record):
    acct: str
    mkt: str
    reason: str


@event(73, accounts=("acct",), markets=("mkt",))
class OrderCancelled(Record):
    order_id: int
    acct: str
    mkt: str
    remaining_bq: int
    reason: CancelReason


@event(74, accounts=("acct",), markets=("mkt",))
class OrderTriggered(Record):
    """A TP/SL order left the trigger list; this event's seq is its new priority."""

    order_id: int
    acct: str
    mkt: str
    mark_st: int


@event(75, accounts=("maker", "taker"), markets=("mkt",))
class Filled(Record):
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
class FundingTicked(Record):
    mkt: str
    time: int
    prev_index: int
    new_index: int
    rate_ppm: int
    premium_ppm: int
    dt: int
    oracle_st: int


@event(77, markets=("mkt",))
class FundingTickRejected(Record):
    mkt: str
    time: int
    reason: str
    published_index: int
    expected_index: int
    prev_index: int
    prev_time: int


@event(78, accounts=("acct",), markets=("mkt",))
class FundingSettled(Record):
    acct: str
    mkt: str
    amount_qq: int
    idx_from: int
    idx_to: int
    dust: int


@event(79, accounts=("acct",))
class Liquidated(Record):
    acct: str
    method: LiquidationMethod
    av_qq: int
    mmr_qq: int
    positions: tuple[LiquidatedPosition, ...]
    fee_qq: int
    deficit_qq: int


@event(80, accounts=("liquidated", "offset"), markets=("mkt",))
class Deleveraged(Record):
    mkt: str
    liquidated: str
    offset: str
    qty_bq: int
    value_qq: int
    offset_realized_qq: int


@event(81, accounts=("acct",))
class SocializedLossApplied(Record):
    acct: str
    amount_qq: int
    vault_paid_qq: int
    bad_debt_qq: int


@event(82, markets=("mkt",))
class MarketHalted(Record):
    mkt: str
    reason: str
    by: str


@event(83, markets=("mkt",))
class MarketResumed(Record):
    mkt: str
    reason: str
    by: str


@event(84)
class ModeChanged(Record):
    scope: str
    mode: Mode
    band_ppm: int
    reason: str
    by: str


@event(85)
class SnapshotTaken(Record):
    at_seq: int
    state_hash: bytes


@event(86)
class RolledBack(Record):
    target_height: int
    branch_id: int
    snapshot_hash: bytes
    flows: tuple[CarriedFlow, ...]
    reason: str
    operator: str


@event(87, accounts=("acct",))
class RefundIssued(Record):
    acct: str
    amount_qq: int
    source: str
    ref: str


@event(88)
class BlockCommitted(Record):
    height: int
    state_hash: bytes


@event(89)
class GuardsSet(Record):
    enabled: bool
    reason: str
    operator: str


@event(90, markets=("mkt",))
class FundingResumed(Record):
    mkt: str
    action: FundingResumeAction
    time: int


@event(91)
class LossModeSet(Record):
    mode: LossMode
    reason: str
    by: str


@event(92, markets=("mkt",))
class OracleUpdateRejected(Record):
    """G5 refused an oracle update; `pending_st` is a jump held for confirmation (0: none)."""

    mkt: str
    oracle_st: int
    ext_basis_ppm: int
    reason: str
    pending_st: int


@event(93, accounts=("acct", "source"))
class RefundRejected(Record):
    acct: str
    amount_qq: int
    source: str
    ref: str
    reason: str


#: OrderType values held off the book until their trigger fires (enums.TP_SL).
TRIGGER_TYPES = TP_SL


@event(94)
class KeyRegistered(Record):
    """A key of the chain's authority was registered (or revoked: active False)."""

    chain_id: str
    key_id: str
    role: KeyRole
    name: str
    public_key: bytes
    active: bool


@event(95)
class CommandUnauthorized(Record):
    """A privileged command no valid operator signature covers: it did nothing."""

    #: the type code of the command that did nothing
    command_code: int
    reason: str
