"""A command's own fields, checked before it meets any state (dYdX's ValidateBasic).

`shape_problem(command)` returns the first (field, what is wrong) of an IN
command whose fields cannot make sense whatever the state: sizes, amounts and
prices that must be positive, the order shape (a LIMIT order needs a price, a
MARKET order takes none and cannot be POST_ONLY, a TP/SL order needs a positive
trigger and only TP/SL take one), listing parameters that would break the
arithmetic. These are the rules of the door (`ledger.core.admit`), of JSON
Lines intake (`ledger.intake`, which names the line) and of decide's INVALID
placement rejection (`ledger.core.orders`): written once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.core.fixedpoint import PPM
from ledger.core.members import LIMIT, MARKET, POST_ONLY
from ledger.events import commands as c
from ledger.events.enums import TP_SL
from ledger.events.payloads import MarketParams

Problem = tuple[str, str] | None


def _positive(cmd: Any, field: str) -> Problem:
    v = getattr(cmd, field)
    return None if v > 0 else (field, f"must be positive, was {v}")


def order_problem(cmd: c.PlaceOrder) -> Problem:
    """The first shape rule a PlaceOrder breaks, as (field, what is wrong), or None."""
    if cmd.qty_bq <= 0:
        return "qty_bq", f"must be positive, was {cmd.qty_bq}"
    otype = cmd.type
    if otype == LIMIT and cmd.price_st is None:
        return "price_st", "a LIMIT order needs a price"
    if otype == MARKET:
        if cmd.price_st is not None:
            return "price_st", "a MARKET order takes no price (its limit is the band)"
        if cmd.tif == POST_ONLY:
            return "tif", "a MARKET order cannot be POST_ONLY"
    if otype in TP_SL:
        if cmd.trigger_st is None:
            return "trigger_st", f"a {otype.name} order needs a trigger price"
        if cmd.trigger_st <= 0:
            return "trigger_st", f"must be positive, was {cmd.trigger_st}"
    elif cmd.trigger_st is not None:
        return "trigger_st", f"only TP/SL orders take a trigger, not {otype.name}"
    if cmd.price_st is not None and cmd.price_st <= 0:
        return "price_st", f"must be positive, was {cmd.price_st}"
    return None


def params_problem(p: MarketParams) -> Problem:
    """The first listing parameter that would break the arithmetic, as (field, message)."""
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
            if name == "taker_fee_ppm":
                return (f"params.{name}", f"invalid value {p.taker_fee_ppm} (maker "
                        f"{p.maker_fee_ppm} + taker {p.taker_fee_ppm} must be >= 0)")
            return f"params.{name}", f"invalid value {getattr(p, name)}"
    return None


def _create_account(cmd: c.CreateAccount) -> Problem:
    return None if cmd.acct else ("acct", "must not be empty")


def _list_market(cmd: c.ListMarket) -> Problem:
    if not cmd.mkt:
        return "mkt", "must not be empty"
    return params_problem(cmd.params) or _positive(cmd, "oracle_st")


def _update_oracle(cmd: c.UpdateOracle) -> Problem:
    # Zero is a publishable (bad) price: guard G5 refuses it in the log, for the record.
    if cmd.oracle_st < 0:
        return "oracle_st", f"must not be negative, was {cmd.oracle_st}"
    return None


def _set_mode(cmd: c.SetMode) -> Problem:
    if not 0 <= cmd.band_ppm < PPM:
        return "band_ppm", f"must be in [0, {PPM}), was {cmd.band_ppm}"
    return None


def _issue_refund(cmd: c.IssueRefund) -> Problem:
    if cmd.acct == cmd.source:
        return "source", "must differ from acct"
    return _positive(cmd, "amount_qq")


def _apply_rollback(cmd: c.ApplyRollback) -> Problem:
    for i, f in enumerate(cmd.flows):
        if f.amount_qq == 0:
            return f"flows[{i}].amount_qq", "must not be 0"
    return None


def _register_key(cmd: c.RegisterKey) -> Problem:
    from ledger.core.authority import key_id

    if len(cmd.public_key) != 32:
        return "public_key", f"an Ed25519 public key is 32 bytes, was {len(cmd.public_key)}"
    if cmd.key_id != key_id(cmd.public_key):
        return "key_id", f"must be {key_id(cmd.public_key)}, the id of its key"
    if not cmd.chain_id or not cmd.name:
        return ("chain_id" if not cmd.chain_id else "name"), "must not be empty"
    return None


_RULES: dict[type[Any], Callable[[Any], Problem]] = {
    c.CreateAccount: _create_account,
    c.Deposit: lambda cmd: _positive(cmd, "amount_qq"),
    c.Withdraw: lambda cmd: _positive(cmd, "amount_qq"),
    c.ListMarket: _list_market,
    c.UpdateMarketParams: lambda cmd: params_problem(cmd.params),
    c.UpdateOracle: _update_oracle,
    c.PlaceOrder: order_problem,
    c.CancelOrder: lambda cmd: _positive(cmd, "order_id"),
    c.SetMode: _set_mode,
    c.IssueRefund: _issue_refund,
    c.ApplyRollback: _apply_rollback,
    c.RegisterKey: _register_key,
}


def shape_problem(cmd: Any) -> Problem:
    """The first shape rule an IN command breaks, as (field, what is wrong), or None."""
    rule = _RULES.get(type(cmd))
    return None if rule is None else rule(cmd)
