"""The liquidation sweep (SPEC 7), run once per block at EndBlock, with G7.

Candidates come from the watch (ledger.core.watch), are confirmed exactly
(MMR > 0 and AV < MMR) and ordered by (fl(AV*PPM, MMR), id). A market may
liquidate only in effective mode OK and, with guards on, with a fresh oracle
(G5: no older than oracle_max_age_s) and no jump awaiting confirmation; an
account with a position in any market that may not liquidate is left alone
until that changes. The system accounts are ordinary accounts (SPEC 2) and meet
the same trigger: FEES holds no positions unless it trades, and LIQ_VAULT holds
the positions it took over, which can lose like anyone's. The vault cannot take
over from itself nor pay its own deficit, so it is always deleveraged at its
bankruptcy values, whatever the loss mode: it ends flat at exactly 0, never below.

Per account: cancel all its orders (TP/SL included), settle its funding,
re-check, then split AV into bankruptcy shares, compute deficit D and fee F,
and close through the vault if `vault.balance + F >= D` and the vault's AV
after takeover is at least its IMR. Otherwise the positions are deleveraged
(ledger.core.adl): at their bankruptcy values, so the offsets absorb D, unless
`loss_mode` is SOCIALIZE and D > 0. Then (SPEC 7 "the vault pays what it can,
the rest goes to bad_debt") the offsets close at the mark, which leaves the
account flat with balance AV = -D, and SocializedLossApplied follows: the vault
pays min(D, its balance, its AV - IMR) and the rest is bad_debt, recorded on the
account (withdrawals stay blocked while bad_debt > 0, SPEC 6). loss_mode is
global state set by SetLossMode (ADL unless set; genesis can set it).

Choice: the vault never takes over positions it cannot margin. An earlier
version let SOCIALIZE hand every position to the vault at the mark after the
vault had paid all it had, leaving it with positions and no collateral, whose
next funding settlement or loss drove its balance below 0 (invariant 3). Such
a liquidation is now `Liquidated{method=ADL}` + `Deleveraged` at the mark +
`SocializedLossApplied`; evolve is unchanged, and LiquidationMethod.SOCIALIZE is
no longer emitted (evolve still folds it, so older logs rebuild as they were).
"""

from __future__ import annotations

from ledger.core.adl import deleverage
from ledger.core.cancels import after_position_change, cancel
from ledger.core.context import Ctx
from ledger.core.fixedpoint import PPM, ceil_div, pow10_neg, trunc_div, value
from ledger.core.funding import settle_all
from ledger.core.guards import funding_surge, liquidation_surge
from ledger.core.margin import account_margin, margin_after_many, market_mmr
from ledger.core.members import BY_ADL, BY_VAULT, HALTED, LIQUIDATION, LOSS_SOCIALIZE, OK
from ledger.core.state import LIQ_VAULT, Account, ExchangeState, Market
from ledger.core.state import effective_mode as _mode
from ledger.core.watch import candidates, watch
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.payloads import LiquidatedPosition


def can_liquidate(st: ExchangeState, m: Market) -> bool:
    """May accounts with a position in `m` be liquidated now?"""
    if _mode(st, m) != OK:
        return False
    stale = st.time - m.last_oracle_time > m.params.oracle_max_age_s
    return not (st.guards and (m.pending_oracle or stale))


def liquidatable(st: ExchangeState) -> list[tuple[int, str]]:
    """Confirmed liquidatable accounts as (fl(AV*PPM, MMR), id); safe ones are watched."""
    out = []
    accounts = st.accounts
    st.block.swept = candidates(st)
    for acct in st.block.swept:
        a = accounts[acct]
        av, _, mmr = account_margin(st, a)
        if mmr > 0:
            if av < mmr:
                out.append(((av * PPM) // mmr, acct))
            else:
                watch(st, a, av - mmr)
    out.sort()
    return out


def _g7(ctx: Ctx, found: list[tuple[int, str]]) -> None:
    """Halt markets where liquidations surge or funding moved AV by more than MMR."""
    st = ctx.st
    deltas: dict[str, int] = {}
    for ev, _ in st.block.ticks:
        deltas[ev.mkt] = deltas.get(ev.mkt, 0) + ev.new_index - ev.prev_index
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    for _, acct in found:
        for mkt, pos in st.accounts[acct].positions.items():
            if pos.size:
                count[mkt] = count.get(mkt, 0) + 1
                size[mkt] = size.get(mkt, 0) + abs(pos.size)
    for mkt in sorted(st.markets):
        m = st.markets[mkt]
        if m.mode == HALTED:
            continue
        surge = False
        if mkt in count:
            surge = liquidation_surge(count[mkt], size[mkt], m.oi_long)
        if not surge and deltas.get(mkt) and funding_surge(m, deltas[mkt]):
            # some holder has a position: sizes sum to 0 (invariant 2), so some is long
            surge = m.oi_long > 0
        if surge:
            ctx.emit(o.MarketHalted(mkt, "LIQUIDATION_SURGE", "guard:G7"))


def end_block(ctx: Ctx, cmd: c.EndBlock) -> None:
    """The block's liquidation sweep (SPEC 7), after G5/G7."""
    st = ctx.st
    found = liquidatable(st)
    if st.guards:
        _g7(ctx, found)
    for _, acct in found:
        a = st.accounts[acct]
        if all(can_liquidate(st, st.markets[mkt])
               for mkt, pos in a.positions.items() if pos.size):
            liquidate(ctx, a)


def liquidate(ctx: Ctx, a: Account) -> None:
    st = ctx.st
    for oid in sorted(a.orders):
        cancel(ctx, st.orders[oid], LIQUIDATION)
    settle_all(ctx, a)
    av, _, mmr = account_margin(st, a)
    if mmr == 0 or av >= mmr:
        return
    open_ = sorted((mkt, pos.size) for mkt, pos in a.positions.items() if pos.size)
    shares: list[LiquidatedPosition] = []
    acc = 0
    penalty = 0  # sum of MMR_m * liq_penalty_m, in qq * ppm
    for i, (mkt, size) in enumerate(open_):
        m = st.markets[mkt]
        mmr_m = market_mmr(st, mkt, size)
        share = av - acc if i == len(open_) - 1 else (av * mmr_m) // mmr
        acc += share
        notional = value(size, m.mark, m.params.qce)
        bv = notional - share
        bp = trunc_div(bv * pow10_neg(m.params.qce) * (1 if size > 0 else -1), abs(size))
        shares.append(LiquidatedPosition(mkt, size, notional, m.mark, mmr_m, bv, bp))
        penalty += mmr_m * m.params.liq_penalty_ppm
    deficit = max(0, -av)
    fee = liquidation_fee(av, penalty)
    vault = st.accounts[LIQ_VAULT]
    is_vault = a is vault
    settle_all(ctx, vault)
    takeover = {lp.mkt: (lp.size_bq, lp.notional_qq) for lp in shares}
    before = {lp.mkt: (vault.positions[lp.mkt].size if lp.mkt in vault.positions else 0)
              for lp in shares}
    method = BY_ADL
    if not is_vault and vault.balance + fee >= deficit:
        v_av, v_imr = margin_after_many(st, vault, takeover, fee - deficit)
        if v_av >= v_imr:
            method = BY_VAULT
    if method == BY_ADL:
        # SOCIALIZE: the offsets close at the mark (not at the bankruptcy values), so
        # `a` is left flat at balance AV = -deficit; the vault then pays what it can.
        socialize = deficit > 0 and st.loss_mode == LOSS_SOCIALIZE and not is_vault
        ctx.emit(o.Liquidated(a.id, method, av, mmr, tuple(shares), 0, deficit))
        for lp in shares:
            deleverage(ctx, a, lp.mkt,
                       lp.notional_qq if socialize else lp.bankruptcy_value_qq)
        if socialize:
            paid = vault_can_pay(st, vault, deficit)
            ctx.emit(o.SocializedLossApplied(a.id, deficit, paid, deficit - paid))
        return
    ctx.emit(o.Liquidated(a.id, method, av, mmr, tuple(shares), fee, deficit))
    for mkt, b in before.items():
        after_position_change(ctx, vault, mkt, b)


def liquidation_fee(av: int, penalty_qq_ppm: int) -> int:
    """SPEC 7's fee: F = min(max(AV, 0), ce(sum of MMR_m * liq_penalty_m, PPM)).

    One ceiling per account, over the sum of every market's MMR share times its
    penalty (SPEC's ce(MMR * liq_penalty, PPM) when the penalties are equal), so
    a multi-market account pays no extra quantum per market. Never more than
    the account's positive AV: the fee cannot create a deficit.
    """
    return min(max(av, 0), ceil_div(penalty_qq_ppm, PPM))


def vault_can_pay(st: ExchangeState, vault: Account, amount: int) -> int:
    """What the vault pays toward `amount`: no more than its balance or its AV - IMR.

    The same rule an IssueRefund from the vault meets, so paying never leaves the
    vault with a negative balance or short of its own initial margin.
    """
    v_av, v_imr, _ = account_margin(st, vault)
    return max(0, min(amount, vault.balance, v_av - v_imr))
