"""The invariants of SPEC 11, checked exactly after a block (raises InvariantViolated).

1 conservation, 2 open interest, 3 solvency, 4 funding index (the per-tick
recompute and no-zeroing checks apply to ticks decided with guards on: with
guards off the operator chose to trust the funding service, which is what the
incident replay needs), 5 book, 6 fills, 7 margin at fill, 8 modes. 9
(determinism: seq +1, replay reproduces OUT events and hashes) is structural
in the engine and checked by rebuild/re-execution, not here.
"""

from __future__ import annotations

from ledger.core.bands import band
from ledger.core.cancels import reduces
from ledger.core.fixedpoint import S, value
from ledger.core.funding import cap_bound, delta_index, rate_ppm
from ledger.core.liquidation import can_liquidate
from ledger.core.margin import account_margin
from ledger.core.members import BUY, OK, POST_ONLY, SELL
from ledger.core.state import SYSTEM_ACCOUNTS, ExchangeState
from ledger.errors import InvariantViolated
from ledger.events.enums import Mode


def check(st: ExchangeState, height: int) -> None:
    def fail(inv: str, detail: str) -> None:
        raise InvariantViolated(height, inv, detail)

    markets = st.markets
    # 1. conservation
    lhs = st.funding_dust
    oi = dict.fromkeys(markets, 0)
    for a in st.accounts.values():
        lhs += S * a.balance
        for mkt, p in a.positions.items():
            lhs -= S * p.cost + p.size * (markets[mkt].index - p.idx)
            oi[mkt] += p.size
    rhs = S * (st.ext_in - st.ext_out)
    if lhs != rhs:
        fail("1 conservation", f"S*sum(balance-cost)+dust-sum(size*(I-idx)) = {lhs}, "
             f"S*(ext_in-ext_out) = {rhs} (difference {lhs - rhs})")
    # 2. open interest
    for mkt in sorted(oi):
        if oi[mkt] != 0:
            fail("2 open interest", f"market {mkt}: sum of sizes is {oi[mkt]}, expected 0")
    # 3. solvency: every account, the system ones included, has AV >= 0 after the
    # sweep. Users may instead be flat with the loss recorded in bad_debt
    # (SOCIALIZE); the vault and FEES may not (the vault is deleveraged at its
    # bankruptcy values, so it ends at exactly 0). An account with a position in a
    # market where liquidation is suspended (mode or G5) is exempt until it resumes.
    # The vault's settled balance alone may dip below 0 while its AV does not
    # (funding paid on a position in profit): it then simply cannot pay.
    for acct in sorted(st.accounts):
        a = st.accounts[acct]
        av, _, _ = account_margin(st, a)
        if av >= 0:
            continue
        open_mkts = [mkt for mkt, p in a.positions.items() if p.size]
        system = acct in SYSTEM_ACCOUNTS
        if not system and not open_mkts and a.debt > 0 and a.balance >= -a.debt:
            continue  # a flat account whose loss is recorded in bad_debt (SOCIALIZE)
        if any(not can_liquidate(st, markets[mkt]) for mkt in open_mkts):
            continue  # liquidation suspended in one of its markets (mode or G5)
        kind = "system account" if system else "account"
        fail("3 solvency", f"{kind} {acct}: AV {av} < 0 after liquidation "
             f"(balance {a.balance}, positions in {sorted(open_mkts)}, debt {a.debt})")
    # 4. funding index
    for ev, guarded in st.block.ticks:
        if not guarded:
            continue
        m = markets[ev.mkt]
        mp = m.params
        d = ev.new_index - ev.prev_index
        if ev.prev_index != 0 and ev.new_index == 0:
            fail("4 funding index", f"market {ev.mkt}: index zeroed at time {ev.time}")
        if ev.rate_ppm != rate_ppm(mp, ev.premium_ppm):
            fail("4 funding index", f"market {ev.mkt}: rate {ev.rate_ppm} != rate(P="
                 f"{ev.premium_ppm}) = {rate_ppm(mp, ev.premium_ppm)}")
        exp = delta_index(mp, ev.rate_ppm, ev.dt, ev.oracle_st)
        if d != exp or abs(d) > cap_bound(mp, ev.dt, ev.oracle_st):
            fail("4 funding index", f"market {ev.mkt}: ΔI {d} != recomputed {exp} "
                 f"or above the cap at time {ev.time}")
    # 5. book
    for mkt in sorted(markets):
        m = markets[mkt]
        bid, ask = m.bids.best(), m.asks.best()
        if bid is not None and ask is not None and bid >= ask:
            fail("5 book", f"market {mkt}: crossed, best bid {bid} >= best ask {ask}")
    for oid, od in st.orders.items():
        op = markets[od.mkt].params
        if od.rem <= 0 or od.rem % op.step_bq or (od.price is not None
                                                  and od.price % op.tick_st):
            fail("5 book", f"order {oid} ({od.acct}, {od.mkt}): remaining {od.rem} or price "
                 f"{od.price} off step {op.step_bq}/tick {op.tick_st}")
        if od.armed and od.on_book:
            fail("5 book", f"order {oid}: an untriggered TP/SL rests on the book")
        if od.on_book and od.reduce_only:
            pos = st.accounts[od.acct].positions.get(od.mkt)
            if not reduces(pos.size if pos is not None else 0, od.side):
                fail("5 book", f"order {oid} ({od.acct}, {od.mkt}): reduce-only order "
                     f"does not reduce the position")
    # 6 and 8. fills
    for ev, maker_prio, taker_prio, tif, mode, mark, maker_price in st.block.fills:
        m = markets[ev.mkt]
        where = f"fill of maker order {ev.maker_order} by taker {ev.taker_order} in {ev.mkt}"
        if ev.price_st != maker_price:
            fail("6 fills", f"{where}: price {ev.price_st} != maker price {maker_price}")
        lo, hi = band(mark, 2 * m.params.band_ppm, m.params.tick_st)  # the x2 band then
        if not lo <= ev.price_st <= hi:
            fail("6 fills", f"{where}: price {ev.price_st} outside the band [{lo}, {hi}]")
        if maker_prio >= taker_prio:
            fail("6 fills", f"{where}: maker priority {maker_prio} >= taker {taker_prio}")
        if ev.maker == ev.taker:
            fail("6 fills", f"{where}: self-trade of {ev.maker}")
        if tif == int(POST_ONLY):
            fail("6 fills", f"{where}: a post-only order was the taker")
        if mode != int(OK):
            fail("8 modes", f"{where}: fill in mode {Mode(mode).name}")
        v = value(ev.qty_bq, ev.price_st, m.params.qce)
        if v != ev.value_qq or ev.taker_side not in (BUY, SELL):
            fail("6 fills", f"{where}: value {ev.value_qq} != value(qty, price) {v}")
    # 7. margin at fill
    for acct, mkt, av, imr in st.block.margin_breaches:
        fail("7 margin", f"account {acct} in {mkt}: a fill grew |size| and left AV {av} "
             f"< IMR {imr}")
