"""Liquidation: through the vault, through ADL, with socialized loss; exact to the unit."""

from __future__ import annotations

from ledger.core import FEES, LIQ_VAULT
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import LiquidationMethod, LossMode
from tests.stubs import BTC, BTC_1, BTC_MARK, BUY, PX, SELL, USD, Sim, limit, oracle, outs


def carol_long(vault_qq: int, loss_mode: LossMode | None = None) -> Sim:
    """carol: $3,000, long 1 BTC at $50,000 (taker, fee $15); dave the maker, short 1 BTC."""
    s = Sim(loss_mode=loss_mode)
    s.fund("carol", 3_000 * USD)
    s.fund("dave", 200_000 * USD)
    if vault_qq:
        s.block(c.Deposit(LIQ_VAULT, vault_qq, "vault-seed"))
    s.block(limit("dave", SELL, BTC_1, BTC_MARK))
    s.block(limit("carol", BUY, BTC_1, BTC_MARK))
    assert s.engine.balance("carol") == 2_985 * USD
    assert s.engine.balance("dave") == 200_000 * USD + 2_500_000  # maker rebate
    return s


def test_healthy_account_is_not_liquidated() -> None:
    s = carol_long(1_000_000 * USD)
    r = s.block(oracle(49_000 * PX))  # AV $1,985 >= MMR $1,470
    assert outs(r, o.Liquidated) == []


def test_liquidation_through_the_vault_at_the_mark_with_the_fee() -> None:
    s = carol_long(1_000_000 * USD)
    r = s.block(oracle(48_000 * PX))
    (liq,) = outs(r, o.Liquidated)
    # AV = 2,985 + 48,000 - 50,000 = $985; MMR = 3% of 48,000 = $1,440
    # fee = min(AV, ce(1,440 * 70%)) = $985; deficit 0; share L = AV; BV = 48,000 - 985
    assert (liq.method, liq.av_qq, liq.mmr_qq, liq.fee_qq, liq.deficit_qq) == (
        LiquidationMethod.VAULT, 985 * USD, 1_440 * USD, 985 * USD, 0)
    (lp,) = liq.positions
    assert (lp.size_bq, lp.notional_qq, lp.bankruptcy_value_qq, lp.bankruptcy_price_st) == (
        BTC_1, 48_000 * USD, 47_015 * USD, 47_015 * PX)
    e = s.engine
    assert e.balance("carol") == 0 and e.position("carol", BTC)[0] == 0
    assert e.balance(LIQ_VAULT) == 1_000_985 * USD
    assert e.position(LIQ_VAULT, BTC)[:2] == (BTC_1, 48_000 * USD)
    assert e.balance("dave") == 200_000 * USD + 2_500_000  # untouched
    assert e.balance(FEES) == 15 * USD - 2_500_000


def test_liquidation_through_adl_when_the_vault_cannot_take_the_position() -> None:
    s = carol_long(0)  # an empty vault fails its own IMR after takeover
    r = s.block(oracle(48_000 * PX))
    (liq,) = outs(r, o.Liquidated)
    assert (liq.method, liq.fee_qq, liq.deficit_qq) == (LiquidationMethod.ADL, 0, 0)
    (d,) = outs(r, o.Deleveraged)
    # dave (short) takes carol's long at the bankruptcy value $47,015, no fees
    assert (d.liquidated, d.offset, d.qty_bq, d.value_qq) == ("carol", "dave", BTC_1,
                                                               47_015 * USD)
    # dave's short sold at 50,000 closed at 47,015: realized +$2,985
    assert d.offset_realized_qq == 2_985 * USD
    e = s.engine
    assert e.balance("carol") == 0 and e.position("carol", BTC)[0] == 0
    assert e.balance("dave") == 200_000 * USD + 2_500_000 + 2_985 * USD
    assert e.position("dave", BTC)[0] == 0
    assert e.balance(LIQ_VAULT) == 0


def test_adl_with_a_deficit_uses_the_bankruptcy_price_beyond_the_mark() -> None:
    s = carol_long(500 * USD)
    r = s.block(oracle(46_000 * PX))
    (liq,) = outs(r, o.Liquidated)
    # AV = 2,985 - 4,000 = -$1,015: deficit $1,015 > vault $500 -> ADL at 46,000 + 1,015
    assert (liq.method, liq.av_qq, liq.deficit_qq) == (LiquidationMethod.ADL, -1_015 * USD,
                                                       1_015 * USD)
    (d,) = outs(r, o.Deleveraged)
    assert d.value_qq == 47_015 * USD
    assert s.engine.balance("carol") == 0
    assert s.engine.balance(LIQ_VAULT) == 500 * USD


def test_socialized_loss_vault_pays_what_it_can_rest_is_bad_debt() -> None:
    s = carol_long(500 * USD, loss_mode=LossMode.SOCIALIZE)
    r = s.block(oracle(46_000 * PX))
    (liq,) = outs(r, o.Liquidated)
    assert (liq.method, liq.av_qq, liq.fee_qq, liq.deficit_qq) == (
        LiquidationMethod.SOCIALIZE, -1_015 * USD, 0, 1_015 * USD)
    (soc,) = outs(r, o.SocializedLossApplied)
    assert (soc.acct, soc.amount_qq, soc.vault_paid_qq, soc.bad_debt_qq) == (
        "carol", 1_015 * USD, 500 * USD, 515 * USD)
    e = s.engine
    assert e.position("carol", BTC)[0] == 0 and e.balance("carol") == -515 * USD
    assert e.balance(LIQ_VAULT) == 0
    assert e.position(LIQ_VAULT, BTC)[:2] == (BTC_1, 46_000 * USD)
    assert e.globals().bad_debt == 515 * USD
    # withdrawals are blocked while bad debt is outstanding
    r = s.block(c.Withdraw("dave", USD, "w"))
    assert [x.reason for x in outs(r, o.WithdrawRejected)] == ["BAD_DEBT"]
    # a credit to the indebted account repays the bad debt first
    s.block(c.Deposit("carol", 600 * USD, "top-up"))
    assert e.globals().bad_debt == 0 and e.balance("carol") == 85 * USD


def test_liquidation_cancels_all_orders_including_tp_sl() -> None:
    from ledger.events.enums import OrderType
    from tests.stubs import trigger_order

    s = carol_long(1_000_000 * USD)
    s.block(trigger_order("carol", OrderType.STOP_LOSS, SELL, BTC_1, 40_000 * PX))
    s.block(limit("carol", SELL, BTC_1 // 10, 60_000 * PX, reduce_only=True))
    r = s.block(oracle(48_000 * PX))
    reasons = [e.reason.name for e in outs(r, o.OrderCancelled)]
    assert reasons == ["LIQUIDATION", "LIQUIDATION"]
    assert s.engine.open_orders("carol") == []


def test_liquidations_run_in_order_of_margin_ratio_then_id() -> None:
    s = Sim()
    s.block(c.Deposit(LIQ_VAULT, 1_000_000 * USD, "seed"))
    s.fund("dave", 500_000 * USD)
    for name, dep in (("zed", 2_700 * USD), ("amy", 3_000 * USD), ("bea", 2_700 * USD)):
        s.fund(name, dep)
        s.block(limit("dave", SELL, BTC_1, BTC_MARK))
        s.block(limit(name, BUY, BTC_1, BTC_MARK))
    r = s.block(oracle(48_000 * PX))
    assert [x.acct for x in outs(r, o.Liquidated)] == ["bea", "zed", "amy"]
