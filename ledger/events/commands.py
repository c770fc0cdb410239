"""IN events: commands and external facts, exactly as received (codes 1..63)."""

from __future__ import annotations

from ledger.events.enums import (
    FundingResumeAction,
    KeyRole,
    LossMode,
    Mode,
    OrderType,
    SelfTrade,
    Side,
    TimeInForce,
)
from ledger.events.payloads import CarriedFlow, MarketParams
from ledger.events.record import Record, event

#: `scope` value of SetMode/BulkCancel that means every market.
ALL = "ALL"


@event(1)
class BeginBlock(Record):
    """Opens a block; its time (seconds) is the only clock the state machine sees."""

    time: int


@event(2, accounts=("acct",))
class CreateAccount(Record):
    acct: str


@event(3, accounts=("acct",))
class Deposit(Record):
    acct: str
    amount_qq: int
    ext_ref: str


@event(4, accounts=("acct",))
class Withdraw(Record):
    acct: str
    amount_qq: int
    ext_ref: str


@event(5, markets=("mkt",))
class ListMarket(Record):
    """List a market. `funding_index` is the cumulative index it migrates with (0 if new)."""

    mkt: str
    params: MarketParams
    oracle_st: int
    funding_index: int


@event(6, markets=("mkt",))
class UpdateMarketParams(Record):
    mkt: str
    params: MarketParams


@event(7, markets=("mkt",))
class UpdateOracle(Record):
    mkt: str
    oracle_st: int
    ext_basis_ppm: int


@event(8, accounts=("acct",), markets=("mkt",))
class PlaceOrder(Record):
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


@event(9, accounts=("acct",))
class CancelOrder(Record):
    acct: str
    order_id: int


@event(10)
class BulkCancel(Record):
    """Cancel every open order in `scope` (a market or ALL) except the kept types."""

    scope: str
    keep_types: tuple[OrderType, ...]
    reason: str


@event(11, markets=("mkt",))
class FundingTick(Record):
    """A funding tick as published by the funding service (compare-and-set on prev)."""

    mkt: str
    time: int
    prev_index: int
    prev_time: int
    new_index: int


@event(12, markets=("mkt",))
class FundingResume(Record):
    mkt: str
    action: FundingResumeAction


@event(13)
class SetMode(Record):
    scope: str
    mode: Mode
    band_ppm: int
    reason: str
    operator: str


@event(14, markets=("mkt",))
class HaltMarket(Record):
    mkt: str
    reason: str
    operator: str


@event(15, markets=("mkt",))
class ResumeMarket(Record):
    mkt: str
    reason: str
    operator: str


@event(16)
class TakeSnapshot(Record):
    reason: str


@event(17, accounts=("acct",))
class IssueRefund(Record):
    acct: str
    amount_qq: int
    source: str
    ref: str


@event(18)
class SetGuards(Record):
    enabled: bool
    reason: str
    operator: str


@event(19)
class EndBlock(Record):
    """Closes a block: the liquidation sweep and invariants run here (appended by the sequencer)."""


@event(20)
class ApplyRollback(Record):
    """First input of a branch after a rollback: names the target and carries external flows."""

    target_height: int
    branch_id: int
    snapshot_hash: bytes
    flows: tuple[CarriedFlow, ...]
    reason: str
    operator: str


@event(21)
class SetLossMode(Record):
    """Choose what absorbs a deficit the vault cannot: ADL (default) or SOCIALIZE (bad_debt)."""

    mode: LossMode
    reason: str
    operator: str


@event(22)
class RegisterKey(Record):
    """Register (or, with active=False, revoke) an Ed25519 key of the chain's authority.

    Privileged: in the genesis block it needs no authorisation (genesis is the
    root of trust); later, an OperatorAuth by an active operator key must cover
    it. `key_id` is `ledger.keys.key_id(public_key)`; `chain_id` binds the
    registration to this chain.
    """

    chain_id: str
    key_id: str
    role: KeyRole
    name: str
    public_key: bytes
    active: bool


@event(23)
class OperatorAuth(Record):
    """An operator's Ed25519 signature over every privileged command of its block.

    The signed message (`ledger.core.authority.signed_message`) binds the chain
    id, the height, this record's key id, operator and reason, and the stored
    bytes of each privileged command of the block in log order, so a signed
    command cannot be replayed on another chain, at another height, or altered.
    """

    key_id: str
    operator: str
    reason: str
    signature: bytes
