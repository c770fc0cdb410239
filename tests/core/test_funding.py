"""Funding: the rate and index rule, lazy settlement with dust, both signs, flips."""

from __future__ import annotations

from ledger.core.fixedpoint import S
from ledger.events import commands as c
from ledger.events import outcomes as o
from tests.stubs import BTC, BTC_1, BTC_MARK, BUY, PX, SELL, USD, Sim, limit, oracle, outs


def opened() -> Sim:
    """bob long 1 BTC, alice short 1 BTC at $50,000; index 0."""
    s = Sim()
    s.fund("alice", 100_000 * USD)
    s.fund("bob", 100_000 * USD)
    s.block(limit("alice", SELL, BTC_1, BTC_MARK))
    s.block(limit("bob", BUY, BTC_1, BTC_MARK))
    return s


def tick(s: Sim, dt: int = 60) -> o.FundingTicked:
    m = s.engine.market(BTC)
    t = s.time + dt
    new = s.engine.expected_funding_index(BTC, t)
    r = s.block(c.FundingTick(BTC, t, m.funding_index, m.last_funding_time, new), dt=dt)
    (ev,) = outs(r, o.FundingTicked)
    return ev  # type: ignore[no-any-return]


def test_interest_only_rate_and_index_step_are_exact() -> None:
    s = opened()
    ev = tick(s)
    # basis 0 -> P = 0, R = 0 + clamp(100 - 0, +-500) = 100 ppm per 8h
    # dI = tr(100 * 60 * 5e9 * 1e12, 1e6 * 28800 * 1e9) = tr(3e25 / 2.88e19) = 1_041_666
    assert (ev.premium_ppm, ev.rate_ppm, ev.dt, ev.prev_index, ev.new_index) == (
        0, 100, 60, 0, 1_041_666)


def test_settlement_moves_funding_with_dust_so_conservation_is_exact() -> None:
    s = opened()
    tick(s)
    r = s.block(c.Withdraw("bob", USD, "w"), c.Withdraw("alice", USD, "w"))
    settled = {e.acct: e for e in outs(r, o.FundingSettled)}
    # long pays: x = -1e10 * 1_041_666 = -1.041666e16; fl(x, 1e12) = -10_417, dust 3.4e11
    b = settled["bob"]
    assert (b.amount_qq, b.idx_from, b.idx_to, b.dust) == (-10_417, 0, 1_041_666, 340_000_000_000)
    a = settled["alice"]
    assert (a.amount_qq, a.dust) == (10_416, 660_000_000_000)
    assert s.state.funding_dust == S  # the two dusts make exactly one quantum
    assert s.engine.position("bob", BTC)[2] == 1_041_666


def test_negative_premium_makes_shorts_pay() -> None:
    s = opened()
    # ext basis -1,000 ppm; the book is empty, last trade at the oracle: median -> 0? no:
    # median(-1000, mid missing -> -1000, last 0) = -1000; mark = 5e9 - 5e6
    s.block(oracle(BTC_MARK, basis=-1_000), dt=30)
    assert s.engine.market(BTC).mark_st == BTC_MARK - 5_000_000
    ev = tick(s, dt=30)
    # premium acc = -1000 * 30 over 30 s -> P = -1000; R = -1000 + clamp(1100) = -500
    assert (ev.premium_ppm, ev.rate_ppm) == (-1_000, -500)
    # dI = tr(-500 * 60 * 5e9 * 1e12, 2.88e19) = -5_208_333 (t=60 s since listing)
    assert ev.dt == 60 and ev.new_index == -5_208_333
    r = s.block(c.Withdraw("alice", USD, "w"))
    (st,) = outs(r, o.FundingSettled)
    # short: x = -(-1e10) * (-5_208_333) = -5.208333e16 -> pays 52_084 (floored)
    assert (st.acct, st.amount_qq, st.dust) == ("alice", -52_084, 670_000_000_000)


def test_funding_is_settled_before_a_position_flips() -> None:
    s = opened()
    tick(s)
    s.fund("carol", 100_000 * USD)
    s.block(limit("carol", BUY, 2 * BTC_1, BTC_MARK))
    r = s.block(limit("bob", SELL, 2 * BTC_1, BTC_MARK))
    kinds = [type(e).__name__ for e in outs(r)]
    assert kinds.index("FundingSettled") < kinds.index("Filled")
    (st,) = outs(r, o.FundingSettled)
    assert (st.acct, st.amount_qq) == ("bob", -10_417)
    size, cost, idx, realized = s.engine.position("bob", BTC)
    assert (size, cost, idx) == (-BTC_1, -50_000 * USD, 1_041_666)
    assert realized == 0  # closed at the entry price
    # the next tick charges the new short side of bob
    ev = tick(s)
    assert ev.new_index == 2 * 1_041_666
    r = s.block(c.Withdraw("bob", USD, "w"))
    (st,) = outs(r, o.FundingSettled)
    assert (st.amount_qq, st.idx_from) == (10_416, 1_041_666)


def test_unsettled_funding_counts_in_account_value() -> None:
    s = opened()
    before = s.engine.account_value("bob")
    tick(s)
    # pending = fl(-1e10 * 1_041_666, 1e12) = -10_417
    assert s.engine.account_value("bob") == before - 10_417


def test_a_tick_at_time_of_a_halted_market_is_rejected_frozen() -> None:
    s = opened()
    s.block(c.HaltMarket(BTC, "ops", "op"))
    m = s.engine.market(BTC)
    r = s.block(c.FundingTick(BTC, s.time + 60, m.funding_index, m.last_funding_time, 5), dt=60)
    (rej,) = outs(r, o.FundingTickRejected)
    assert rej.reason == "HALTED" and s.engine.market(BTC).funding_index == 0


def test_expected_index_uses_the_premium_accumulated_from_oracle_updates() -> None:
    s = opened()
    s.block(oracle(BTC_MARK, basis=2_000), dt=20)  # basis 2000 for 20 s
    s.block(oracle(BTC_MARK, basis=0), dt=40)      # then basis 0 for 40 s (last trade 0)
    m = s.engine.market(BTC)
    assert (m.premium_acc, m.premium_dt) == (2_000 * 20 + 0 * 40, 60)
    ev = tick(s, dt=0)
    # P = tr(40_000, 60) = 666; R = 666 + clamp(100 - 666, +-500) = 166
    assert (ev.premium_ppm, ev.rate_ppm) == (666, 166)
    assert ev.new_index == (166 * 60 * BTC_MARK * S) // (10**6 * 28_800 * 10**9)
    _ = PX
