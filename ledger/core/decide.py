"""decide: every rule of the exchange, dispatched through a table keyed by command type.

`decide(ctx, command)` never mutates state directly: the rule modules call
`ctx.emit(event)` (ledger.core.context), which evolves the live state with the
same `evolve` that rebuilds use and records the OUT event. Rules are split by
command family: accounts, operator, oracle, funding, orders/matching,
liquidation (the EndBlock sweep).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.core import accounts, funding, liquidation, operator, oracle, orders
from ledger.core.context import Ctx
from ledger.events import commands as c

HANDLERS: dict[type[Any], Callable[[Ctx, Any], None]] = {
    c.CreateAccount: accounts.create_account,
    c.Deposit: accounts.deposit,
    c.Withdraw: accounts.withdraw,
    c.IssueRefund: accounts.issue_refund,
    c.ApplyRollback: accounts.apply_rollback,
    c.ListMarket: operator.list_market,
    c.UpdateMarketParams: operator.update_params,
    c.SetMode: operator.set_mode,
    c.HaltMarket: operator.halt_market,
    c.ResumeMarket: operator.resume_market,
    c.SetGuards: operator.set_guards,
    c.SetLossMode: operator.set_loss_mode,
    c.TakeSnapshot: operator.take_snapshot,
    c.RegisterKey: operator.register_key,
    c.BulkCancel: orders.bulk_cancel,
    c.UpdateOracle: oracle.update_oracle,
    c.PlaceOrder: orders.place_order,
    c.CancelOrder: orders.cancel_order,
    c.FundingTick: funding.funding_tick,
    c.FundingResume: funding.funding_resume,
    c.EndBlock: liquidation.end_block,
}


def _none(ctx: Ctx, cmd: Any) -> None:
    return None


def decide(ctx: Ctx, command: Any) -> None:
    """Emit, through `ctx`, every OUT event `command` causes (BeginBlock causes none)."""
    HANDLERS.get(type(command), _none)(ctx, command)
