"""Orders, matching, fees, STP, reduce-only, bands, TP/SL: given state, when command, then."""

from __future__ import annotations

from ledger.core import FEES
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import Mode, OrderType, SelfTrade, Side, TimeInForce
from tests.stubs import (
    BTC,
    BTC_1,
    BTC_MARK,
    BUY,
    PX,
    SELL,
    USD,
    Sim,
    cancels,
    fills,
    limit,
    market,
    oracle,
    outs,
    reasons,
    trigger_order,
)

TENTH = BTC_1 // 10


def funded(*names: str, amount: int = 100_000 * USD) -> Sim:
    s = Sim()
    for n in names:
        s.fund(n, amount)
    return s


def placed_id(r: object) -> int:
    return outs(r, o.OrderPlaced)[-1].order_id  # type: ignore[arg-type]


def test_limit_order_fills_at_the_maker_price_with_maker_rebate_and_taker_fee() -> None:
    s = funded("alice", "bob")
    ask = placed_id(s.block(limit("alice", SELL, BTC_1, BTC_MARK)))
    r = s.block(limit("bob", BUY, BTC_1 // 2, BTC_MARK + 10 * PX))
    (f,) = fills(r)
    assert (f.maker_order, f.maker, f.taker, f.qty_bq, f.price_st) == (
        ask, "alice", "bob", BTC_1 // 2, BTC_MARK)
    # value = 0.5 BTC * $50,000 = $25,000; rebate fl(25e9*50/1e6), fee ce(25e9*300/1e6)
    assert (f.value_qq, f.maker_fee_qq, f.taker_fee_qq) == (25_000 * USD, -1_250_000, 7_500_000)
    e = s.engine
    assert e.position("bob", BTC)[:2] == (BTC_1 // 2, 25_000 * USD)
    assert e.position("alice", BTC)[:2] == (-BTC_1 // 2, -25_000 * USD)
    assert e.balance("bob") == 100_000 * USD - 7_500_000
    assert e.balance("alice") == 100_000 * USD + 1_250_000
    assert e.balance(FEES) == 6_250_000
    assert [v.remaining_bq for v in e.open_orders("alice")] == [BTC_1 // 2]
    assert e.open_orders("bob") == []


def test_price_time_priority_best_price_then_earliest_seq() -> None:
    s = funded("a1", "a2", "a3", "bob")
    first = placed_id(s.block(limit("a1", SELL, TENTH, BTC_MARK + PX)))
    second = placed_id(s.block(limit("a2", SELL, TENTH, BTC_MARK + PX)))
    better = placed_id(s.block(limit("a3", SELL, TENTH, BTC_MARK)))
    r = s.block(limit("bob", BUY, 3 * TENTH, BTC_MARK + PX))
    assert [(f.maker_order, f.price_st) for f in fills(r)] == [
        (better, BTC_MARK), (first, BTC_MARK + PX), (second, BTC_MARK + PX)]


def test_market_order_limit_is_the_band_edge_and_remainder_is_cancelled() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("alice", SELL, TENTH, 53_000 * PX))  # passive, outside the 5% band: accepted
    r = s.block(market("bob", BUY, 5 * TENTH))
    assert [(f.qty_bq, f.price_st) for f in fills(r)] == [(TENTH, BTC_MARK)]
    assert cancels(r) == [(placed_id(r), "IOC_REMAINDER")]
    assert s.engine.best_ask(BTC) == 53_000 * PX


def test_ioc_limit_remainder_is_cancelled_and_gtc_remainder_rests() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    r = s.block(limit("bob", BUY, 2 * TENTH, BTC_MARK, tif=TimeInForce.IOC))
    assert [f.qty_bq for f in fills(r)] == [TENTH]
    assert cancels(r) == [(placed_id(r), "IOC_REMAINDER")]
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    r = s.block(limit("bob", BUY, 2 * TENTH, BTC_MARK))
    assert cancels(r) == []
    assert s.engine.best_bid(BTC) == BTC_MARK
    assert [v.remaining_bq for v in s.engine.open_orders("bob")] == [TENTH]


def test_post_only_order_that_would_cross_is_rejected_and_passive_one_rests() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    r = s.block(limit("bob", BUY, TENTH, BTC_MARK, tif=TimeInForce.POST_ONLY))
    assert reasons(r) == ["POST_ONLY_CROSS"] and fills(r) == []
    r = s.block(limit("bob", BUY, TENTH, BTC_MARK - PX, tif=TimeInForce.POST_ONLY))
    assert reasons(r) == [] and s.engine.best_bid(BTC) == BTC_MARK - PX


def test_step_and_margin_rejections_with_stable_reasons() -> None:
    s = Sim()
    s.fund("poor", 1_000 * USD)
    s.fund("alice", 100_000 * USD)
    assert reasons(s.block(limit("alice", BUY, 1_500_000, BTC_MARK))) == ["STEP"]
    # 1 BTC at $50,000 needs $2,500 initial margin (5%): rejected with $1,000
    assert reasons(s.block(limit("poor", BUY, BTC_1, BTC_MARK))) == ["MARGIN"]
    assert reasons(s.block(limit("poor", BUY, TENTH, BTC_MARK))) == []


def test_reduce_only_order_on_the_wrong_side_is_rejected() -> None:
    s = funded("alice", "bob")
    assert reasons(s.block(limit("bob", SELL, TENTH, BTC_MARK, reduce_only=True))) == [
        "REDUCE_ONLY_SIDE"]
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("bob", BUY, TENTH, BTC_MARK))
    assert reasons(s.block(limit("bob", BUY, TENTH, BTC_MARK, reduce_only=True))) == [
        "REDUCE_ONLY_SIDE"]


def test_reduce_only_fill_is_capped_at_the_position_and_remainder_cancelled() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, 2 * TENTH, BTC_MARK))
    s.block(limit("bob", BUY, 2 * TENTH, BTC_MARK))
    s.block(limit("alice", BUY, BTC_1, BTC_MARK))
    r = s.block(market("bob", SELL, 5 * TENTH, reduce_only=True))
    assert [f.qty_bq for f in fills(r)] == [2 * TENTH]
    assert cancels(r) == [(placed_id(r), "REDUCE_ONLY")]
    assert s.engine.position("bob", BTC)[0] == 0


def test_resting_reduce_only_order_is_cancelled_once_the_position_is_closed() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("bob", BUY, TENTH, BTC_MARK))
    ro = placed_id(s.block(limit("bob", SELL, TENTH, 51_000 * PX, reduce_only=True)))
    s.block(limit("alice", BUY, TENTH, BTC_MARK - PX))
    r = s.block(market("bob", SELL, TENTH))  # closes the position with a plain order
    assert [f.qty_bq for f in fills(r)] == [TENTH]
    assert cancels(r) == [(ro, "REDUCE_ONLY")]


def test_self_trade_expire_maker_cancels_the_resting_order_and_taker_goes_on() -> None:
    s = funded("alice")
    mk = placed_id(s.block(limit("alice", SELL, TENTH, BTC_MARK)))
    r = s.block(limit("alice", BUY, TENTH, BTC_MARK))
    tk = placed_id(r)
    assert cancels(r) == [(mk, "SELF_TRADE")] and fills(r) == []
    assert [v.order_id for v in s.engine.open_orders("alice")] == [tk]


def test_self_trade_expire_taker_cancels_the_incoming_order() -> None:
    s = funded("alice")
    mk = placed_id(s.block(limit("alice", SELL, TENTH, BTC_MARK)))
    r = s.block(limit("alice", BUY, TENTH, BTC_MARK, stp=SelfTrade.EXPIRE_TAKER))
    assert cancels(r) == [(placed_id(r), "SELF_TRADE")]
    assert [v.order_id for v in s.engine.open_orders("alice")] == [mk]


def test_self_trade_expire_both_cancels_both() -> None:
    s = funded("alice")
    mk = placed_id(s.block(limit("alice", SELL, TENTH, BTC_MARK)))
    r = s.block(limit("alice", BUY, TENTH, BTC_MARK, stp=SelfTrade.EXPIRE_BOTH))
    assert cancels(r) == [(mk, "SELF_TRADE"), (placed_id(r), "SELF_TRADE")]
    assert s.engine.open_orders("alice") == []


def test_crossing_order_outside_the_band_is_rejected_passive_one_accepted() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    # band 5% of $50,000: [47,500, 52,500]
    assert reasons(s.block(limit("bob", BUY, TENTH, 52_600 * PX))) == ["BAND"]
    assert reasons(s.block(limit("bob", BUY, TENTH, 52_500 * PX, tif=TimeInForce.IOC))) == []
    assert reasons(s.block(limit("bob", BUY, TENTH, 40_000 * PX))) == []  # passive


def test_maker_outside_the_double_band_is_cancelled_stale_at_fill_time() -> None:
    s = funded("alice", "bob")
    stale = placed_id(s.block(limit("alice", SELL, TENTH, BTC_MARK)))
    s.block(oracle(56_000 * PX))  # mark 56,000: x2 band [50,400, 61,600]
    r = s.block(limit("bob", BUY, TENTH, 53_300 * PX))
    assert cancels(r) == [(stale, "STALE_PRICE")] and fills(r) == []
    assert s.engine.best_bid(BTC) == 53_300 * PX


def test_maker_that_fails_margin_at_match_is_cancelled_and_matching_continues() -> None:
    s = Sim()
    s.fund("alice", 3_000 * USD)
    s.fund("carl", 100_000 * USD)
    s.fund("bob", 100_000 * USD)
    weak = placed_id(s.block(limit("alice", SELL, BTC_1, BTC_MARK)))
    s.block(c.Withdraw("alice", 1_000 * USD, "w1"))  # AV - IMR (no position) allows it
    good = placed_id(s.block(limit("carl", SELL, BTC_1, BTC_MARK + PX)))
    r = s.block(limit("bob", BUY, BTC_1, BTC_MARK + PX))
    assert cancels(r) == [(weak, "UNDERCOLLATERALIZED")]
    assert [(f.maker_order, f.qty_bq) for f in fills(r)] == [(good, BTC_1)]


def test_taker_that_fails_margin_at_match_has_its_remainder_cancelled() -> None:
    s = Sim()
    s.fund("bob", 3_000 * USD)
    s.fund("alice", 100_000 * USD)
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("alice", SELL, BTC_1, 52_000 * PX))
    # placement: IMR_ord of 1 BTC at mark $50,000 is $2,500 <= AV $3,000
    r = s.block(limit("bob", BUY, BTC_1, 52_000 * PX))
    assert reasons(r) == []
    # 0.1 BTC at $50,000 fills; 0.9 BTC more at $52,000 would leave AV ~ $1,184 < IMR $2,500
    assert [(f.qty_bq, f.price_st) for f in fills(r)] == [(TENTH, BTC_MARK)]
    assert cancels(r) == [(placed_id(r), "UNDERCOLLATERALIZED")]
    assert s.engine.position("bob", BTC)[0] == TENTH


def test_stop_loss_is_held_off_the_book_and_triggers_on_the_mark() -> None:
    s = funded("alice", "bob", "mm")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("bob", BUY, TENTH, BTC_MARK))
    sl = placed_id(s.block(trigger_order("bob", OrderType.STOP_LOSS, SELL, TENTH,
                                         49_000 * PX)))
    assert s.engine.best_ask(BTC) is None  # held off the book
    tp = placed_id(s.block(trigger_order("bob", OrderType.TAKE_PROFIT, SELL, TENTH,
                                         51_000 * PX)))
    s.block(limit("mm", BUY, TENTH, 48_800 * PX))
    r = s.block(oracle(49_000 * PX))  # SL sell fires at mark <= 49,000
    trig = outs(r, o.OrderTriggered)
    assert [t.order_id for t in trig] == [sl]
    (f,) = fills(r)
    assert (f.taker_order, f.price_st, f.qty_bq) == (sl, 48_800 * PX, TENTH)
    assert cancels(r) == [(tp, "REDUCE_ONLY")]  # the TP cannot reduce a flat position


def test_take_profit_buy_triggers_when_mark_falls_and_gets_a_new_priority() -> None:
    s = funded("alice", "bob", "mm")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("bob", BUY, TENTH, BTC_MARK))
    tp = placed_id(s.block(trigger_order("alice", OrderType.TAKE_PROFIT, BUY, TENTH,
                                         49_500 * PX, price=49_000 * PX,
                                         tif=TimeInForce.GTC)))
    r = s.block(oracle(49_400 * PX))
    ((env_seq, trig),) = [(e.seq, e.event) for e in r.envelopes
                          if isinstance(e.event, o.OrderTriggered)]
    assert trig.order_id == tp
    view = s.engine.open_orders("alice")[0]
    assert (view.order_id, view.priority, view.triggered) == (tp, env_seq, True)
    assert s.engine.best_bid(BTC) == 49_000 * PX


def test_cancel_of_unknown_order_is_rejected() -> None:
    s = funded("alice")
    assert reasons(s.block(c.CancelOrder("alice", 999_999))) == ["UNKNOWN_ORDER"]
    oid = placed_id(s.block(limit("alice", SELL, TENTH, BTC_MARK)))
    assert cancels(s.block(c.CancelOrder("alice", oid))) == [(oid, "USER")]


def test_post_only_mode_accepts_only_post_only_orders_inside_the_recovery_band() -> None:
    s = funded("alice", "bob")
    s.block(c.SetMode(BTC, Mode.POST_ONLY, 500, "recovery", "op"))
    assert reasons(s.block(limit("bob", BUY, TENTH, BTC_MARK))) == ["MODE"]
    # recovery band 5 bps around $50,000: [49,975, 50,025]
    assert reasons(s.block(limit("bob", BUY, TENTH, 49_900 * PX,
                                 tif=TimeInForce.POST_ONLY))) == ["BAND"]
    assert reasons(s.block(limit("bob", BUY, TENTH, 49_980 * PX,
                                 tif=TimeInForce.POST_ONLY))) == []


def test_mode_change_cancels_resting_orders_outside_the_recovery_band() -> None:
    s = funded("alice", "bob")
    far = placed_id(s.block(limit("bob", BUY, TENTH, 49_000 * PX)))
    near = placed_id(s.block(limit("alice", SELL, TENTH, 50_010 * PX)))
    r = s.block(c.SetMode("ALL", Mode.POST_ONLY, 500, "recovery", "op"))
    assert cancels(r) == [(far, "OUT_OF_BAND")]
    assert [v.order_id for v in s.engine.open_orders("alice")] == [near]
    assert s.engine.effective_mode(BTC) == Mode.POST_ONLY


def test_cancel_only_refuses_orders_and_halted_refuses_cancels() -> None:
    s = funded("alice")
    oid = placed_id(s.block(limit("alice", SELL, TENTH, 50_010 * PX)))
    s.block(c.SetMode(BTC, Mode.CANCEL_ONLY, 0, "ops", "op"))
    assert reasons(s.block(limit("alice", SELL, TENTH, 50_010 * PX))) == ["MODE"]
    s.block(c.HaltMarket(BTC, "ops", "op"))
    assert reasons(s.block(c.CancelOrder("alice", oid))) == ["MODE"]
    s.block(c.ResumeMarket(BTC, "ops", "op"))
    assert cancels(s.block(c.CancelOrder("alice", oid))) == [(oid, "USER")]


def test_stricter_of_global_and_market_mode_applies() -> None:
    s = funded("alice")
    s.block(c.SetMode("ALL", Mode.POST_ONLY, 0, "x", "op"), c.SetMode(BTC, Mode.OK, 0, "x", "op"))
    assert s.engine.effective_mode(BTC) == Mode.POST_ONLY
    s.block(c.SetMode("ALL", Mode.OK, 0, "x", "op"), c.SetMode(BTC, Mode.CANCEL_ONLY, 0, "x", "op"))
    assert s.engine.effective_mode(BTC) == Mode.CANCEL_ONLY


def test_bulk_cancel_keeps_tp_sl() -> None:
    s = funded("alice", "bob")
    s.block(limit("alice", SELL, TENTH, BTC_MARK))
    s.block(limit("bob", BUY, TENTH, BTC_MARK))
    plain = placed_id(s.block(limit("bob", BUY, TENTH, 49_000 * PX)))
    sl = placed_id(s.block(trigger_order("bob", OrderType.STOP_LOSS, Side.SELL, TENTH,
                                         45_000 * PX)))
    r = s.block(c.BulkCancel("ALL", (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT), "rollback"))
    assert cancels(r) == [(plain, "OPERATOR")]
    assert [v.order_id for v in s.engine.open_orders("bob")] == [sl]
