"""The door: shape and existence checks of one IN command before it enters a block.

`admit(state, command)` raises CommandInvalid naming the field, e.g.
"PlaceOrder.price_st: 50000001 is not a multiple of the tick 100000 of
BTC-PERP". It checks types (through the codec), that named accounts and
markets exist, positive sizes and amounts, prices on the tick, the order
shape (LIMIT needs a price, MARKET none and no POST_ONLY, TP/SL a trigger), and
sane market parameters. Step multiples, modes, bands and margin are state
rules: decide rejects those with an OrderRejected event the log keeps.
"""

from __future__ import annotations

from typing import Any

from ledger.core.authority import key_id
from ledger.core.fixedpoint import PPM
from ledger.core.operator import UNIT_FIELDS
from ledger.core.state import ExchangeState
from ledger.errors import CodecError, CommandInvalid
from ledger.events import commands as c
from ledger.events.codec import check
from ledger.events.enums import OrderType, TimeInForce
from ledger.events.payloads import MarketParams


def _bad(cmd: Any, field: str, msg: str) -> CommandInvalid:
    return CommandInvalid(f"{type(cmd).__name__}.{field}: {msg}")


def _need_account(st: ExchangeState, cmd: Any, field: str = "acct") -> None:
    acct = getattr(cmd, field)
    if acct not in st.accounts:
        raise _bad(cmd, field, f"account {acct!r} does not exist")


def _need_market(st: ExchangeState, cmd: Any, field: str = "mkt") -> None:
    mkt = getattr(cmd, field)
    if mkt not in st.markets:
        raise _bad(cmd, field, f"market {mkt!r} is not listed")


def _positive(cmd: Any, field: str) -> None:
    v = getattr(cmd, field)
    if v <= 0:
        raise _bad(cmd, field, f"must be positive, was {v}")


def check_params(cmd: Any, p: MarketParams) -> None:
    """Listing parameters that would break the arithmetic are refused."""
    rules = [
        ("step_bq", p.step_bq > 0), ("tick_st", p.tick_st > 0), ("qce", p.qce <= 0),
        ("imf_ppm", 0 < p.imf_ppm <= PPM), ("maint_fraction_ppm", 0 < p.maint_fraction_ppm <= PPM),
        ("taker_fee_ppm", p.maker_fee_ppm + p.taker_fee_ppm >= 0 and p.taker_fee_ppm >= 0),
        ("funding_period_s", p.funding_period_s > 0), ("funding_tick_s", p.funding_tick_s > 0),
        ("clamp_ppm", p.clamp_ppm >= 0), ("clamp_factor_ppm", p.clamp_factor_ppm >= 0),
        ("max_rate_ppm", p.max_rate_ppm >= 0), ("max_basis_ppm", 0 <= p.max_basis_ppm < PPM),
        ("max_spread_ppm", p.max_spread_ppm >= 0), ("band_ppm", 0 <= p.band_ppm < PPM // 2),
        ("liq_penalty_ppm", 0 <= p.liq_penalty_ppm <= PPM), ("max_jump_ppm", p.max_jump_ppm >= 0),
        ("max_gap_s", p.max_gap_s > 0), ("oracle_max_age_s", p.oracle_max_age_s > 0),
    ]
    for name, ok in rules:
        if not ok:
            raise _bad(cmd, f"params.{name}", f"invalid value {getattr(p, name)} "
                       f"(maker {p.maker_fee_ppm} + taker {p.taker_fee_ppm} must be >= 0)"
                       if name == "taker_fee_ppm" else f"invalid value {getattr(p, name)}")


def admit(state: ExchangeState, command: Any) -> None:
    """Refuse, with CommandInvalid naming the field, a command that may not enter a block."""
    try:
        check(command)
    except CodecError as exc:
        raise CommandInvalid(str(exc)) from None
    if type(command).KIND != "IN":
        raise CommandInvalid(f"{type(command).__name__} is an OUT event, not a command")
    st = state
    t = type(command)
    cmd = command
    if t is c.CreateAccount:
        if not cmd.acct:
            raise _bad(cmd, "acct", "must not be empty")
        if cmd.acct in st.accounts:
            raise _bad(cmd, "acct", f"account {cmd.acct!r} already exists")
    elif t in (c.Deposit, c.Withdraw):
        _need_account(st, cmd)
        _positive(cmd, "amount_qq")
    elif t is c.ListMarket:
        if not cmd.mkt:
            raise _bad(cmd, "mkt", "must not be empty")
        if cmd.mkt in st.markets:
            raise _bad(cmd, "mkt", f"market {cmd.mkt!r} is already listed")
        check_params(cmd, cmd.params)
        _positive(cmd, "oracle_st")
    elif t is c.UpdateMarketParams:
        _need_market(st, cmd)
        old = st.markets[cmd.mkt].params
        for f in UNIT_FIELDS:
            if getattr(old, f) != getattr(cmd.params, f):
                raise _bad(cmd, f"params.{f}", f"cannot change after listing "
                           f"({getattr(old, f)} -> {getattr(cmd.params, f)})")
        check_params(cmd, cmd.params)
    elif t is c.UpdateOracle:
        _need_market(st, cmd)
        if cmd.oracle_st < 0:
            raise _bad(cmd, "oracle_st", f"must not be negative, was {cmd.oracle_st}")
    elif t is c.PlaceOrder:
        _admit_order(st, cmd)
    elif t is c.CancelOrder:
        _need_account(st, cmd)
        _positive(cmd, "order_id")
    elif t is c.BulkCancel:
        if cmd.scope != c.ALL:
            _need_market(st, cmd, "scope")
    elif t in (c.FundingTick, c.FundingResume, c.HaltMarket, c.ResumeMarket):
        _need_market(st, cmd)
    elif t is c.SetMode:
        if cmd.scope != c.ALL:
            _need_market(st, cmd, "scope")
        if not 0 <= cmd.band_ppm < PPM:
            raise _bad(cmd, "band_ppm", f"must be in [0, {PPM}), was {cmd.band_ppm}")
    elif t is c.IssueRefund:
        _need_account(st, cmd)
        _need_account(st, cmd, "source")
        _positive(cmd, "amount_qq")
        if cmd.acct == cmd.source:
            raise _bad(cmd, "source", "must differ from acct")
    elif t is c.RegisterKey:
        if len(cmd.public_key) != 32:
            raise _bad(cmd, "public_key", f"an Ed25519 public key is 32 bytes, was "
                       f"{len(cmd.public_key)}")
        if cmd.key_id != key_id(cmd.public_key):
            raise _bad(cmd, "key_id", f"must be {key_id(cmd.public_key)}, the id of its key")
        if not cmd.chain_id or (st.chain_id and cmd.chain_id != st.chain_id):
            raise _bad(cmd, "chain_id", f"{cmd.chain_id!r} is not this chain "
                       f"({st.chain_id!r})")
    elif t is c.ApplyRollback:
        for i, f in enumerate(cmd.flows):
            if f.amount_qq == 0:
                raise _bad(cmd, f"flows[{i}].amount_qq", "must not be 0")


def _admit_order(st: ExchangeState, cmd: c.PlaceOrder) -> None:
    _need_account(st, cmd)
    _need_market(st, cmd)
    _positive(cmd, "qty_bq")
    p = st.markets[cmd.mkt].params
    if cmd.type == OrderType.LIMIT and cmd.price_st is None:
        raise _bad(cmd, "price_st", "a LIMIT order needs a price")
    if cmd.type == OrderType.MARKET:
        if cmd.price_st is not None:
            raise _bad(cmd, "price_st", "a MARKET order takes no price (its limit is the band)")
        if cmd.tif == TimeInForce.POST_ONLY:
            raise _bad(cmd, "tif", "a MARKET order cannot be POST_ONLY")
    if cmd.type in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT):
        if cmd.trigger_st is None:
            raise _bad(cmd, "trigger_st", f"a {cmd.type.name} order needs a trigger price")
        _positive(cmd, "trigger_st")
    elif cmd.trigger_st is not None:
        raise _bad(cmd, "trigger_st", f"only TP/SL orders take a trigger, not {cmd.type.name}")
    if cmd.price_st is not None:
        _positive(cmd, "price_st")
        if cmd.price_st % p.tick_st:
            raise _bad(cmd, "price_st", f"{cmd.price_st} is not a multiple of the tick "
                       f"{p.tick_st} of {cmd.mkt}")
