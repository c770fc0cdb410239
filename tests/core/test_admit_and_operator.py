"""The door (admit), refunds, rollback flows, modes by operator, invariant violations."""

from __future__ import annotations

import pytest

from ledger.core import LIQ_VAULT, Engine, admit
from ledger.core.state import Position
from ledger.errors import CommandInvalid, InvariantViolated
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import OrderType, SelfTrade, Side, TimeInForce
from ledger.events.payloads import CarriedFlow
from tests.stubs import BTC, BTC_1, BTC_MARK, BUY, PX, SELL, USD, Sim, limit, oracle, outs


def test_door_refuses_price_off_the_tick_naming_the_field() -> None:
    s = Sim()
    s.fund("alice", USD)
    with pytest.raises(CommandInvalid) as exc:
        admit(s.state, limit("alice", BUY, BTC_1, 50_000_001))
    assert str(exc.value) == (
        "PlaceOrder.price_st: 50000001 is not a multiple of the tick 100000 of BTC-PERP")


@pytest.mark.parametrize("cmd, field", [
    (c.PlaceOrder("ghost", BTC, Side.BUY, BTC_1, BTC_MARK, OrderType.LIMIT, TimeInForce.GTC,
                  False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.acct"),
    (c.PlaceOrder("alice", "DOGE-PERP", Side.BUY, BTC_1, BTC_MARK, OrderType.LIMIT,
                  TimeInForce.GTC, False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.mkt"),
    (c.PlaceOrder("alice", BTC, Side.BUY, 0, BTC_MARK, OrderType.LIMIT, TimeInForce.GTC,
                  False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.qty_bq"),
    (c.PlaceOrder("alice", BTC, Side.BUY, -5, BTC_MARK, OrderType.LIMIT, TimeInForce.GTC,
                  False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.qty_bq"),
    (c.PlaceOrder("alice", BTC, Side.BUY, BTC_1, None, OrderType.LIMIT, TimeInForce.GTC,
                  False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.price_st"),
    (c.PlaceOrder("alice", BTC, Side.BUY, BTC_1, None, OrderType.STOP_LOSS, TimeInForce.GTC,
                  True, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.trigger_st"),
    (c.PlaceOrder("alice", BTC, 7, BTC_1, BTC_MARK, OrderType.LIMIT,  # type: ignore[arg-type]
                  TimeInForce.GTC, False, None, SelfTrade.EXPIRE_MAKER), "PlaceOrder.side"),
    (c.PlaceOrder("alice", BTC, Side.BUY, "1", BTC_MARK,  # type: ignore[arg-type]
                  OrderType.LIMIT, TimeInForce.GTC, False, None, SelfTrade.EXPIRE_MAKER),
     "PlaceOrder.qty_bq"),
    (c.Deposit("alice", 0, "x"), "Deposit.amount_qq"),
    (c.CreateAccount("alice"), "CreateAccount.acct"),
    (c.UpdateOracle("ETH-X", 1, 0), "UpdateOracle.mkt"),
    (c.IssueRefund("alice", USD, "nobody", "r"), "IssueRefund.source"),
    (c.SetMode("NOPE", 0, 0, "r", "op"), "SetMode.scope"),  # type: ignore[arg-type]
])
def test_door_refuses_commands_that_name_nothing_or_have_bad_shapes(cmd: object,
                                                                    field: str) -> None:
    s = Sim()
    s.fund("alice", USD)
    with pytest.raises(CommandInvalid) as exc:
        admit(s.state, cmd)
    assert str(exc.value).startswith(field)


def test_door_admits_a_zero_oracle_so_that_g5_can_judge_it() -> None:
    s = Sim()
    admit(s.state, oracle(0))


def test_refund_from_the_vault_is_an_internal_transfer() -> None:
    s = Sim()
    s.block(c.Deposit(LIQ_VAULT, 1_000 * USD, "seed"))
    s.fund("victim", USD)
    r = s.block(c.IssueRefund("victim", 600 * USD, LIQ_VAULT, "incident-1"))
    assert outs(r, o.RefundIssued) == [o.RefundIssued("victim", 600 * USD, LIQ_VAULT,
                                                       "incident-1")]
    assert s.engine.balance("victim") == 601 * USD and s.engine.balance(LIQ_VAULT) == 400 * USD
    r = s.block(c.IssueRefund("victim", 500 * USD, LIQ_VAULT, "incident-2"))
    assert [x.reason for x in outs(r, o.RefundRejected)] == ["INSUFFICIENT_FUNDS"]
    assert [type(e.event).__name__ for e in r.rejections] == ["RefundRejected"]


def test_rollback_carries_external_flows_forward() -> None:
    s = Sim()
    s.fund("alice", 100 * USD)
    r = s.block(c.ApplyRollback(5, 1, bytes(32), (
        CarriedFlow("alice", 40 * USD, "dep-9", 77), CarriedFlow("alice", -10 * USD, "wd-3", 80),
        CarriedFlow("newbie", 5 * USD, "dep-10", 81)), "incident", "op"))
    assert [type(e).__name__ for e in outs(r)] == ["AccountCreated", "RolledBack"]
    assert s.engine.balance("alice") == 130 * USD and s.engine.balance("newbie") == 5 * USD
    g = s.engine.globals()
    assert (g.ext_in, g.ext_out) == (145 * USD, 10 * USD)


def test_withdrawal_rules() -> None:
    s = Sim()
    s.fund("alice", 10_000 * USD)
    s.fund("bob", 10_000 * USD)
    s.block(limit("alice", SELL, BTC_1, BTC_MARK))
    s.block(limit("bob", BUY, BTC_1, BTC_MARK))
    rej = lambda r: [x.reason for x in outs(r, o.WithdrawRejected)]  # noqa: E731
    # AV = 10,000 - 15 fee; IMR 2,500 -> at most 7,485 may leave
    assert rej(s.block(c.Withdraw("bob", 7_486 * USD, "w"))) == ["MARGIN"]
    assert rej(s.block(c.Withdraw("bob", 20_000 * USD, "w"))) == ["BALANCE"]
    assert outs(s.block(c.Withdraw("bob", 7_485 * USD, "w")), o.Withdrew)
    s.block(c.SetMode(BTC, 1, 0, "recovery", "op"))  # type: ignore[arg-type]
    assert rej(s.block(c.Withdraw("alice", USD, "w"))) == ["MODE"]


def test_block_must_open_with_begin_block_and_end_block_is_appended() -> None:
    e = Engine()
    with pytest.raises(CommandInvalid):
        e.run_block(0, [c.CreateAccount("x")])
    r = e.run_block(0, [c.BeginBlock(1), c.CreateAccount("x")])
    assert [type(x.event).__name__ for x in r.envelopes] == [
        "BeginBlock", "CreateAccount", "AccountCreated", "EndBlock"]


def test_commands_are_stably_reordered_into_the_block_phases() -> None:
    s = Sim()
    m = s.engine.market(BTC)
    r = s.engine.run_block(9, [c.BeginBlock(s.time + 60), c.CreateAccount("z"),
                               c.FundingTick(BTC, s.time + 60, m.funding_index,
                                             m.last_funding_time, 0),
                               oracle(BTC_MARK + PX), c.CreateAccount("y"),
                               oracle(BTC_MARK + 2 * PX)])
    ins = [type(e.event).__name__ + (f":{e.event.oracle_st}" if hasattr(e.event, "oracle_st")
                                     else "") for e in r.envelopes if e.cause == 0]
    assert ins == ["BeginBlock", f"UpdateOracle:{BTC_MARK + PX}",
                   f"UpdateOracle:{BTC_MARK + 2 * PX}", "FundingTick", "CreateAccount",
                   "CreateAccount", "EndBlock"]


def test_same_block_oracle_updates_do_not_change_the_published_tick_inputs() -> None:
    s = Sim(guards=True)
    s.block(oracle(BTC_MARK, basis=1_500), dt=30)
    m = s.engine.market(BTC)
    t = s.time + 30
    new = s.engine.expected_funding_index(BTC, t)
    r = s.block(oracle(BTC_MARK + 50 * PX, basis=-2_000),
                c.FundingTick(BTC, t, m.funding_index, m.last_funding_time, new), dt=30)
    (ev,) = outs(r, o.FundingTicked)
    assert ev.new_index == new and ev.oracle_st == BTC_MARK and ev.premium_ppm == 1_500
    # the block's own update (basis -2000 over 30 s) is kept for the next tick
    assert (s.engine.market(BTC).premium_acc, s.engine.market(BTC).premium_dt) == (-60_000, 30)


def test_invariant_violation_names_the_height_the_invariant_and_the_entity() -> None:
    s = Sim()
    s.fund("alice", USD)
    s.state.accounts["alice"].balance += 1  # money from nowhere
    with pytest.raises(InvariantViolated) as exc:
        s.engine.check_invariants(42)
    assert exc.value.height == 42 and exc.value.invariant == "1 conservation"
    s.state.accounts["alice"].balance -= 1
    p = s.state.accounts["alice"].positions[BTC] = Position(0)
    p.size = 5  # a long with no short on the other side (and cost 0: conservation holds)
    with pytest.raises(InvariantViolated) as exc:
        s.engine.check_invariants(43)
    assert exc.value.invariant == "2 open interest" and "BTC-PERP" in exc.value.detail
