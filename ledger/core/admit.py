"""The door: type, existence and shape checks of one IN command before it enters a block.

`admit(state, command)` raises CommandInvalid naming the field, e.g.
"PlaceOrder.price_st: 50000001 is not a multiple of the tick 100000 of
BTC-PERP". It checks types (through the codec), that named accounts and
markets exist, the command's own fields (`ledger.core.shape`: positive sizes
and amounts, the order shape, sane market parameters) and prices on the tick.
Step multiples, modes, bands and margin are state rules: decide rejects those
with an OrderRejected event the log keeps.
"""

from __future__ import annotations

from typing import Any

from ledger.core.operator import UNIT_FIELDS
from ledger.core.shape import shape_problem
from ledger.core.state import ExchangeState
from ledger.errors import CodecError, CommandInvalid
from ledger.events import commands as c
from ledger.events.codec import check


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
    # Who and what the command names must exist (or, to be created, must not yet).
    if t is c.CreateAccount:
        if cmd.acct and cmd.acct in st.accounts:
            raise _bad(cmd, "acct", f"account {cmd.acct!r} already exists")
    elif t is c.ListMarket:
        if cmd.mkt and cmd.mkt in st.markets:
            raise _bad(cmd, "mkt", f"market {cmd.mkt!r} is already listed")
    elif t in (c.Deposit, c.Withdraw, c.CancelOrder):
        _need_account(st, cmd)
    elif t is c.PlaceOrder:
        _need_account(st, cmd)
        _need_market(st, cmd)
    elif t is c.IssueRefund:
        _need_account(st, cmd)
        _need_account(st, cmd, "source")
    elif t in (c.BulkCancel, c.SetMode):
        if cmd.scope != c.ALL:
            _need_market(st, cmd, "scope")
    elif t in (c.UpdateMarketParams, c.UpdateOracle, c.FundingTick, c.FundingResume,
               c.HaltMarket, c.ResumeMarket):
        _need_market(st, cmd)
    problem = shape_problem(cmd)
    if problem is not None:
        raise _bad(cmd, *problem)
    # Rules that need the state beyond existence.
    if t is c.UpdateMarketParams:
        old = st.markets[cmd.mkt].params
        for f in UNIT_FIELDS:
            if getattr(old, f) != getattr(cmd.params, f):
                raise _bad(cmd, f"params.{f}", f"cannot change after listing "
                           f"({getattr(old, f)} -> {getattr(cmd.params, f)})")
    elif t is c.RegisterKey and st.chain_id and cmd.chain_id != st.chain_id:
        raise _bad(cmd, "chain_id", f"{cmd.chain_id!r} is not this chain ({st.chain_id!r})")
    elif t is c.PlaceOrder and cmd.price_st is not None:
        tick = st.markets[cmd.mkt].params.tick_st
        if cmd.price_st % tick:
            raise _bad(cmd, "price_st", f"{cmd.price_st} is not a multiple of the tick "
                       f"{tick} of {cmd.mkt}")
