"""The genesis block's commands: guards, the system accounts, the listings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ledger.core.state import FEES, LIQ_VAULT
from ledger.events import commands as c
from ledger.events.enums import LossMode
from ledger.markets import Listing


def genesis_commands(listings: Iterable[Listing], *, time: int, guards_enabled: bool,
                     loss_mode: LossMode | None = None,
                     authority: Sequence[c.RegisterKey] = ()) -> list[Any]:
    """The IN records of block 0, in order.

    BeginBlock, the authority's RegisterKey records (writer and operator keys;
    none on a chain created without keys), SetGuards, CreateAccount(FEES),
    CreateAccount(LIQ_VAULT), SetLossMode (only when given), one ListMarket per
    listing, EndBlock.
    """
    cmds: list[Any] = [
        c.BeginBlock(time),
        *authority,
        c.SetGuards(guards_enabled, "genesis", "genesis"),
        c.CreateAccount(FEES),
        c.CreateAccount(LIQ_VAULT),
    ]
    if loss_mode is not None:
        cmds.append(c.SetLossMode(loss_mode, "genesis", "genesis"))
    cmds += [c.ListMarket(li.mkt, li.params, li.oracle_st, li.funding_index) for li in listings]
    cmds.append(c.EndBlock())
    return cmds
