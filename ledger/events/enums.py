"""Enumerations used in event payloads; stored as their small integer values."""

from __future__ import annotations

from enum import IntEnum


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP_LOSS = 3
    TAKE_PROFIT = 4


#: The TP/SL pair: held off the book until their trigger fires, implicitly reduce-only,
#: kept by the rollback recovery's BulkCancel. Stored in that BulkCancel's keep_types in
#: this order, so the order is part of the recovery block's bytes.
TP_SL: tuple[OrderType, ...] = (OrderType.TAKE_PROFIT, OrderType.STOP_LOSS)


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    POST_ONLY = 3


class SelfTrade(IntEnum):
    """Self-trade prevention; EXPIRE_MAKER is the default (dYdX cancels the resting order)."""

    EXPIRE_MAKER = 1
    EXPIRE_TAKER = 2
    EXPIRE_BOTH = 3


class Mode(IntEnum):
    """Exchange modes, ordered from least to most strict (the effective mode is the max)."""

    OK = 0
    POST_ONLY = 1
    CANCEL_ONLY = 2
    HALTED = 3


class CancelReason(IntEnum):
    USER = 1
    IOC_REMAINDER = 2
    SELF_TRADE = 3
    REDUCE_ONLY = 4
    UNDERCOLLATERALIZED = 5
    STALE_PRICE = 6
    OUT_OF_BAND = 7
    LIQUIDATION = 8
    OPERATOR = 9
    POST_ONLY_CROSS = 10
    MODE = 11


class LiquidationMethod(IntEnum):
    VAULT = 1
    ADL = 2
    SOCIALIZE = 3


class FundingResumeAction(IntEnum):
    ACCRUE_CAPPED = 1
    SKIP = 2


class LossMode(IntEnum):
    """What happens when neither the vault nor ADL absorbs a deficit."""

    ADL = 1
    SOCIALIZE = 2


class KeyRole(IntEnum):
    """What an Ed25519 key registered on the chain may sign."""

    OPERATOR = 1  # privileged commands (an OperatorAuth)
    WRITER = 2  # block headers (the sequencer)
