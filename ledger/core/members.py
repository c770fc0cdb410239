"""The enum members the rules compare against, bound once as Final names.

In Python 3.11 reading a member off its enum class (`Mode.OK`) goes through
EnumType's `__getattr__` hook: a few hundred instructions every time, in the
hottest comparisons of the core. The compiled core reads a Final module name
as a C static instead, so the rules name members through this module. The
names are the members' own; where two enums share one, the second carries its
enum's name (MODE_POST_ONLY, LOSS_ADL, ...).
"""

from __future__ import annotations

from typing import Final

from ledger.events.enums import (
    CancelReason,
    FundingResumeAction,
    LiquidationMethod,
    LossMode,
    Mode,
    OrderType,
    SelfTrade,
    Side,
    TimeInForce,
)

BUY: Final = Side.BUY
SELL: Final = Side.SELL

LIMIT: Final = OrderType.LIMIT
MARKET: Final = OrderType.MARKET
TAKE_PROFIT: Final = OrderType.TAKE_PROFIT

IOC: Final = TimeInForce.IOC
POST_ONLY: Final = TimeInForce.POST_ONLY

EXPIRE_MAKER: Final = SelfTrade.EXPIRE_MAKER
EXPIRE_BOTH: Final = SelfTrade.EXPIRE_BOTH

OK: Final = Mode.OK
MODE_POST_ONLY: Final = Mode.POST_ONLY
CANCEL_ONLY: Final = Mode.CANCEL_ONLY
HALTED: Final = Mode.HALTED

USER: Final = CancelReason.USER
IOC_REMAINDER: Final = CancelReason.IOC_REMAINDER
SELF_TRADE: Final = CancelReason.SELF_TRADE
REDUCE_ONLY: Final = CancelReason.REDUCE_ONLY
UNDERCOLLATERALIZED: Final = CancelReason.UNDERCOLLATERALIZED
STALE_PRICE: Final = CancelReason.STALE_PRICE
OUT_OF_BAND: Final = CancelReason.OUT_OF_BAND
LIQUIDATION: Final = CancelReason.LIQUIDATION
OPERATOR: Final = CancelReason.OPERATOR
POST_ONLY_CROSS: Final = CancelReason.POST_ONLY_CROSS

BY_VAULT: Final = LiquidationMethod.VAULT
BY_ADL: Final = LiquidationMethod.ADL

LOSS_ADL: Final = LossMode.ADL
LOSS_SOCIALIZE: Final = LossMode.SOCIALIZE

ACCRUE_CAPPED: Final = FundingResumeAction.ACCRUE_CAPPED
