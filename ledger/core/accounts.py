"""Accounts and money moving in or between them: create, deposit, withdraw, refund, rollback flows.

Withdrawal (SPEC 6): funding is settled first, then, in this order, the
rejection reasons are UNKNOWN_ACCOUNT, INVALID (amount <= 0), MODE (global mode
not OK, or the account holds a position or order in a market not in OK),
BAD_DEBT (bad_debt > 0), BALANCE (amount > balance), MARGIN (amount > AV - IMR).
IssueRefund is an internal transfer from `source` (normally LIQ_VAULT), refused
with RefundRejected (UNKNOWN_ACCOUNT, INVALID, INSUFFICIENT_FUNDS: the source's
balance and its AV - IMR must both cover it). Commands the door would refuse
and that have no rejection event (a second CreateAccount, a deposit to an
unknown account) are no-ops, so decide stays total.
"""

from __future__ import annotations

from ledger.core.context import Ctx
from ledger.core.funding import settle_all
from ledger.core.margin import account_margin
from ledger.core.members import OK
from ledger.core.state import Account, ExchangeState
from ledger.events import commands as c
from ledger.events import outcomes as o


def create_account(ctx: Ctx, cmd: c.CreateAccount) -> None:
    if cmd.acct not in ctx.st.accounts and cmd.acct:
        ctx.emit(o.AccountCreated(cmd.acct))


def deposit(ctx: Ctx, cmd: c.Deposit) -> None:
    if cmd.acct in ctx.st.accounts and cmd.amount_qq > 0:
        ctx.emit(o.Deposited(cmd.acct, cmd.amount_qq, cmd.ext_ref))


def _blocked_by_mode(st: ExchangeState, a: Account) -> bool:
    """Global mode not OK, or a position or order of the account in a market not in OK."""
    if st.mode != OK:
        return True
    # the global mode is OK, so a market's effective mode is its own
    markets = st.markets
    if all(m.mode == OK for m in markets.values()):
        return False  # the usual case, without a look at the account's orders
    for mkt, pos in a.positions.items():
        if pos.size and markets[mkt].mode != OK:
            return True
    orders = st.orders
    return any(markets[orders[oid].mkt].mode != OK for oid in a.orders)


def withdrawal_refusal(st: ExchangeState, a: Account, amount_qq: int) -> str | None:
    """Why a settled account may not withdraw `amount_qq` (SPEC 6), or None if it may.

    In order: INVALID, MODE, BAD_DEBT, BALANCE, MARGIN (see the module docstring).
    """
    if amount_qq <= 0:
        return "INVALID"
    if _blocked_by_mode(st, a):
        return "MODE"
    if st.bad_debt > 0:
        return "BAD_DEBT"
    if amount_qq > a.balance:
        return "BALANCE"
    av, imr, _ = account_margin(st, a)
    if amount_qq > av - imr:
        return "MARGIN"
    return None


def withdraw(ctx: Ctx, cmd: c.Withdraw) -> None:
    st = ctx.st
    a = st.accounts.get(cmd.acct)
    if a is None:
        ctx.reject(o.WithdrawRejected(cmd.acct, cmd.amount_qq, cmd.ext_ref, "UNKNOWN_ACCOUNT"))
        return
    if cmd.amount_qq > 0:
        settle_all(ctx, a)
    reason = withdrawal_refusal(st, a, cmd.amount_qq)
    if reason is not None:
        ctx.reject(o.WithdrawRejected(cmd.acct, cmd.amount_qq, cmd.ext_ref, reason))
        return
    ctx.emit(o.Withdrew(cmd.acct, cmd.amount_qq, cmd.ext_ref))


def withdraw_as_fact(ctx: Ctx, cmd: c.Withdraw, accepted: bool, reason: str) -> str | None:
    """Apply a withdrawal whose outcome is a known external fact; return the rules' verdict.

    For the counterfactual of SPEC 13 ("flows are facts"): a withdrawal the
    actual chain paid out is paid here too, and one it refused (with `reason`)
    is refused here too, whatever this state's mode or margin say. The return
    value is what `withdraw` would have decided here (None: accepted), so a
    caller can flag the flows its rules would have decided otherwise.
    """
    st = ctx.st
    a = st.accounts.get(cmd.acct)
    if a is None:  # the account exists wherever the chain created it
        ctx.reject(o.WithdrawRejected(cmd.acct, cmd.amount_qq, cmd.ext_ref, "UNKNOWN_ACCOUNT"))
        return "UNKNOWN_ACCOUNT"
    if cmd.amount_qq > 0:
        settle_all(ctx, a)
    verdict = withdrawal_refusal(st, a, cmd.amount_qq)
    if accepted:
        ctx.emit(o.Withdrew(cmd.acct, cmd.amount_qq, cmd.ext_ref))
    else:
        ctx.reject(o.WithdrawRejected(cmd.acct, cmd.amount_qq, cmd.ext_ref, reason))
    return verdict


def issue_refund(ctx: Ctx, cmd: c.IssueRefund) -> None:
    st = ctx.st
    src = st.accounts.get(cmd.source)

    def reject(reason: str) -> None:
        ctx.reject(o.RefundRejected(cmd.acct, cmd.amount_qq, cmd.source, cmd.ref, reason))

    if src is None or cmd.acct not in st.accounts or cmd.acct == cmd.source:
        return reject("UNKNOWN_ACCOUNT")
    if cmd.amount_qq <= 0:
        return reject("INVALID")
    settle_all(ctx, src)
    settle_all(ctx, st.accounts[cmd.acct])
    av, imr, _ = account_margin(st, src)
    if cmd.amount_qq > src.balance or cmd.amount_qq > av - imr:
        return reject("INSUFFICIENT_FUNDS")
    ctx.emit(o.RefundIssued(cmd.acct, cmd.amount_qq, cmd.source, cmd.ref))
    return None


def apply_rollback(ctx: Ctx, cmd: c.ApplyRollback) -> None:
    """Start the new branch: carry forward external flows (accounts created if missing)."""
    st = ctx.st
    for f in cmd.flows:
        if f.acct not in st.accounts:
            ctx.emit(o.AccountCreated(f.acct))
    ctx.emit(o.RolledBack(cmd.target_height, cmd.branch_id, cmd.snapshot_hash, cmd.flows,
                          cmd.reason, cmd.operator))
