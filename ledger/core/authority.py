"""Who may write what: the one list of operator-only (privileged) command types.

A privileged command moves money or changes rules outside trading. It enters
the chain only through the operator paths (rollback, refunds, compensation,
modes, guards, loss mode, listings, halts, key registration), never through
`submit` or the Python intake, which refuse these types by name.

Not privileged, and why: CreateAccount, PlaceOrder, CancelOrder (users);
Deposit, Withdraw (external facts from the custody bridge); UpdateOracle,
FundingTick (external facts from the price and funding feeds); TakeSnapshot
(records a hash, changes nothing). BeginBlock and EndBlock are written by the
sequencer itself (EndBlock is `UNSUBMITTABLE`; BeginBlock in an input only
marks a block and its time).
"""

from __future__ import annotations

from typing import Any

from ledger.events import commands as c

#: Every operator-only command type (decide once, here; everything else asks this set).
PRIVILEGED: frozenset[type[Any]] = frozenset({
    c.ApplyRollback,       # truncation's recovery: carries money across branches
    c.IssueRefund,         # refunds and compensation: moves money out of LIQ_VAULT
    c.SetGuards,           # switches the data-check guards
    c.SetMode,             # exchange / market modes and the recovery band
    c.SetLossMode,         # who absorbs a deficit
    c.ListMarket,          # market listing
    c.UpdateMarketParams,  # market parameters
    c.HaltMarket,
    c.ResumeMarket,
    c.FundingResume,       # resumes a market the funding guard stopped
    c.BulkCancel,          # cancels everyone's orders
})

#: IN types no input may carry: the sequencer writes them (BeginBlock is allowed as
#: a block marker: it only gives the block its time).
UNSUBMITTABLE: frozenset[type[Any]] = frozenset({c.EndBlock})


def is_privileged(command: Any) -> bool:
    """True if `command` is of an operator-only type."""
    return type(command) in PRIVILEGED
