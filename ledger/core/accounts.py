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


def withdraw(ctx: Ctx, cmd: c.Withdraw) -> None:
    st = ctx.st
    a = st.accounts.get(cmd.acct)

    def reject(reason: str) -> None:
        ctx.reject(o.WithdrawRejected(cmd.acct, cmd.amount_qq, cmd.ext_ref, reason))

    if a is None:
        return reject("UNKNOWN_ACCOUNT")
    if cmd.amount_qq <= 0:
        return reject("INVALID")
    settle_all(ctx, a)
    if _blocked_by_mode(st, a):
        return reject("MODE")
    if st.bad_debt > 0:
        return reject("BAD_DEBT")
    if cmd.amount_qq > a.balance:
        return reject("BALANCE")
    av, imr, _ = account_margin(st, a)
    if cmd.amount_qq > av - imr:
        return reject("MARGIN")
    ctx.emit(o.Withdrew(cmd.acct, cmd.amount_qq, cmd.ext_ref))
    return None


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
