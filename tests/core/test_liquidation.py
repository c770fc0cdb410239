"""Liquidation: through the vault, through ADL, with socialized loss; exact to the unit."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.core import FEES, LIQ_VAULT
from ledger.core.liquidation import liquidation_fee
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.enums import LiquidationMethod, LossMode, TimeInForce
from tests.stubs import (
    BTC,
    BTC_1,
    BTC_MARK,
    BUY,
    ETH,
    PX,
    SELL,
    USD,
    Sim,
    limit,
    oracle,
    outs,
    simple_listing,
)


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
    # the vault cannot take the position: the offsets close it at the mark, not at BV
    assert (liq.method, liq.av_qq, liq.fee_qq, liq.deficit_qq) == (
        LiquidationMethod.ADL, -1_015 * USD, 0, 1_015 * USD)
    (d,) = outs(r, o.Deleveraged)
    # dave's short sold at 50,000 buys back at the mark 46,000: realized +$4,000
    assert (d.liquidated, d.offset, d.qty_bq, d.value_qq, d.offset_realized_qq) == (
        "carol", "dave", BTC_1, 46_000 * USD, 4_000 * USD)
    (soc,) = outs(r, o.SocializedLossApplied)
    assert (soc.acct, soc.amount_qq, soc.vault_paid_qq, soc.bad_debt_qq) == (
        "carol", 1_015 * USD, 500 * USD, 515 * USD)
    e = s.engine
    assert e.position("carol", BTC)[0] == 0 and e.balance("carol") == -515 * USD
    assert e.balance(LIQ_VAULT) == 0 and e.positions(LIQ_VAULT) == {}
    assert e.balance("dave") == 200_000 * USD + 2_500_000 + 4_000 * USD
    assert e.globals().bad_debt == 515 * USD
    # withdrawals are blocked while bad debt is outstanding
    r = s.block(c.Withdraw("dave", USD, "w"))
    assert [x.reason for x in outs(r, o.WithdrawRejected)] == ["BAD_DEBT"]
    # a credit to the indebted account repays the bad debt first
    s.block(c.Deposit("carol", 600 * USD, "top-up"))
    assert e.globals().bad_debt == 0 and e.balance("carol") == 85 * USD


def test_socialized_loss_never_leaves_the_vault_with_positions_it_cannot_margin() -> None:
    """Regression (hypothesis seed 9290433): SOCIALIZE handed the positions to a vault that
    had just paid all it had; funding settled on them drove its balance below 0."""
    s = carol_long(500 * USD, loss_mode=LossMode.SOCIALIZE)
    s.block(oracle(46_000 * PX))
    m = s.engine.market(BTC)
    # longs pay: dI = 5e9 is $50 per BTC; then a refund from the vault settles its funding
    s.block(c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time,
                          m.funding_index + 5_000_000_000), dt=60)
    r = s.block(c.IssueRefund("dave", USD, LIQ_VAULT, "r"))
    assert outs(r, o.FundingSettled) == []
    assert [x.reason for x in outs(r, o.RefundRejected)] == ["INSUFFICIENT_FUNDS"]
    e = s.engine
    assert e.balance(LIQ_VAULT) == 0 and e.positions(LIQ_VAULT) == {}
    assert e.balance("carol") == -515 * USD and e.globals().bad_debt == 515 * USD


def test_socialized_loss_vault_pays_only_its_free_margin() -> None:
    """A vault holding a losing position pays no more than AV - IMR, even with a large balance."""
    s = Sim(loss_mode=LossMode.SOCIALIZE)
    s.fund("bob", 3_000 * USD)
    s.fund("carol", 4_500 * USD)
    s.fund("dave", 500_000 * USD)
    s.block(c.Deposit(LIQ_VAULT, 5_000 * USD, "vault-seed"))
    for name in ("bob", "carol"):
        s.block(limit("dave", SELL, BTC_1, BTC_MARK))
        s.block(limit(name, BUY, BTC_1, BTC_MARK))
    r = s.block(oracle(48_000 * PX))  # bob: AV $985 < MMR $1,440 -> the vault takes over
    (liq,) = outs(r, o.Liquidated)
    assert (liq.acct, liq.method, liq.fee_qq) == ("bob", LiquidationMethod.VAULT, 985 * USD)
    e = s.engine
    assert e.balance(LIQ_VAULT) == 5_985 * USD
    assert e.position(LIQ_VAULT, BTC)[:2] == (BTC_1, 48_000 * USD)
    r = s.block(oracle(44_000 * PX))
    # carol: AV = 4,485 - 6,000 = -$1,515. The vault has the balance but, long 1 BTC from
    # 48,000, its AV 5,985 - 4,000 = $1,985 is below its IMR $2,200: it can pay nothing.
    (liq,) = outs(r, o.Liquidated)
    assert (liq.acct, liq.method, liq.av_qq, liq.deficit_qq) == (
        "carol", LiquidationMethod.ADL, -1_515 * USD, 1_515 * USD)
    (d,) = outs(r, o.Deleveraged)
    assert (d.offset, d.qty_bq, d.value_qq) == ("dave", BTC_1, 44_000 * USD)
    (soc,) = outs(r, o.SocializedLossApplied)
    assert (soc.amount_qq, soc.vault_paid_qq, soc.bad_debt_qq) == (1_515 * USD, 0, 1_515 * USD)
    assert e.balance(LIQ_VAULT) == 5_985 * USD
    assert e.position(LIQ_VAULT, BTC)[:2] == (BTC_1, 48_000 * USD)
    assert e.balance("carol") == -1_515 * USD and e.globals().bad_debt == 1_515 * USD


@pytest.mark.parametrize("loss_mode", [None, LossMode.SOCIALIZE])
def test_an_underwater_vault_is_deleveraged_at_its_bankruptcy_value(
        loss_mode: LossMode | None) -> None:
    """Regression (hypothesis seed 2788936953): the vault was never liquidated, so a position
    it took over could sink its AV below 0 (the next funding settlement took its balance
    below 0 too). It now meets the same trigger as any account, through ADL only."""
    s = carol_long(2_000 * USD, loss_mode=loss_mode)
    r = s.block(oracle(48_000 * PX))
    (liq,) = outs(r, o.Liquidated)
    assert (liq.acct, liq.method, liq.fee_qq) == ("carol", LiquidationMethod.VAULT, 985 * USD)
    e = s.engine
    assert e.balance(LIQ_VAULT) == 2_985 * USD  # IMR of 1 BTC at 48,000 is $2,400
    assert e.position(LIQ_VAULT, BTC)[:2] == (BTC_1, 48_000 * USD)
    r = s.block(oracle(44_000 * PX))
    # vault: AV = 2,985 - 4,000 = -$1,015 < MMR $1,320; BV = 44,000 + 1,015
    (liq,) = outs(r, o.Liquidated)
    assert (liq.acct, liq.method, liq.av_qq, liq.mmr_qq, liq.fee_qq, liq.deficit_qq) == (
        LIQ_VAULT, LiquidationMethod.ADL, -1_015 * USD, 1_320 * USD, 0, 1_015 * USD)
    (d,) = outs(r, o.Deleveraged)
    # dave's short from 50,000 buys back at 45,015: realized +$4,985
    assert (d.liquidated, d.offset, d.qty_bq, d.value_qq, d.offset_realized_qq) == (
        LIQ_VAULT, "dave", BTC_1, 45_015 * USD, 4_985 * USD)
    assert outs(r, o.SocializedLossApplied) == []
    assert e.balance(LIQ_VAULT) == 0 and e.positions(LIQ_VAULT) == {}
    assert e.globals().bad_debt == 0
    assert e.balance("dave") == 200_000 * USD + 2_500_000 + 4_985 * USD


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


def test_the_sweep_checks_only_touched_or_threatened_accounts_not_every_holder() -> None:
    seen: list[list[str]] = []

    class Recording(Sim):
        def block(self, *cmds: Any, dt: int = 0) -> Any:
            r = super().block(*cmds, dt=dt)
            seen.append(list(self.state.block.swept))  # the accounts checked exactly
            return r

    s = Recording()
    s.fund("mm", 10_000_000 * USD)
    # 0.01 BTC ($500) each: on $100 (5x) for the first 60, on $5,000 for the others
    lev = [f"h{i:03d}" for i in range(60)]
    safe = [f"h{i:03d}" for i in range(60, 120)]
    s.block(*[x for u in lev + safe
              for x in (c.CreateAccount(u), c.Deposit(u, (100 if u in lev else 5_000) * USD, u))])
    s.block(limit("mm", SELL, 2 * BTC_1, BTC_MARK))
    s.block(*[limit(u, BUY, BTC_1 // 100, BTC_MARK, tif=TimeInForce.IOC) for u in lev + safe])
    assert len(seen[-1]) == 121  # every account that traded is checked once
    s.block(oracle(BTC_MARK + PX))  # a $1 move threatens no one
    assert seen[-1] == []
    s.block(limit("h107", BUY, BTC_1 // 100, BTC_MARK, tif=TimeInForce.IOC),
            c.Withdraw("h100", USD, "w"))
    assert seen[-1] == ["h100", "h107", "mm"]
    # 17% down: a 5x long's AV - MMR ($84.85) could be gone, a 0.1x long's could not
    r = s.block(oracle(BTC_MARK * 83 // 100))
    assert seen[-1] == lev
    # AV = 99.85 + 415 - 500 = $14.85 >= MMR $12.45: checked, not liquidated
    assert outs(r, o.Liquidated) == []
    assert s.engine.margin("h000")[0] == 14_850_000


def test_a_multi_market_liquidation_fee_takes_one_ceiling_per_account() -> None:
    """SPEC 7: F = min(max(AV, 0), ce(sum MMR_m * penalty, PPM)), one ceiling per account.

    The prices are chosen so the two markets' MMR shares times 70% both have
    fractional parts below one half: a ceiling per market would charge 1 qq more.
    """
    eth_mark = 3_000 * PX
    s = Sim([simple_listing(BTC), simple_listing(ETH, oracle=eth_mark)])
    s.fund("carol", 5_000 * USD)
    s.fund("dave", 500_000 * USD)
    s.block(c.Deposit(LIQ_VAULT, 10_000_000 * USD, "vault-seed"))
    s.block(limit("dave", SELL, BTC_1, BTC_MARK),
            limit("dave", SELL, 10 * BTC_1, eth_mark, mkt=ETH))
    s.block(limit("carol", BUY, BTC_1, BTC_MARK),
            limit("carol", BUY, 10 * BTC_1, eth_mark, mkt=ETH))
    r = s.block(oracle(BTC_MARK - 2_080 * PX - 4), oracle(eth_mark - 60 * PX - 8, ETH))
    (liq,) = outs(r, o.Liquidated)
    assert liq.method == LiquidationMethod.VAULT and len(liq.positions) == 2
    weighted = sum(p.mmr_qq * 700_000 for p in liq.positions)
    per_market = sum(-(-p.mmr_qq * 700_000 // 10**6) for p in liq.positions)
    assert 0 < liq.fee_qq < liq.av_qq  # not capped by AV: the ceiling decides
    assert liq.fee_qq == -(-weighted // 10**6) == per_market - 1
    assert liquidation_fee(liq.av_qq, weighted) == liq.fee_qq
    assert liquidation_fee(-5, weighted) == 0 and liquidation_fee(7, weighted) == 7
