"""Guard helpers shared by the rules: moving a market out of OK, and G7's surge tests.

G1-G4 live in ledger.core.funding, G5/G6 in ledger.core.oracle; this module
holds what they share plus G7 (halt instead of liquidating), which the
liquidation sweep consults. Guards act only while `state.guards` is on.

G7 choices (SPEC leaves N and x open): a market is HALTED (LIQUIDATION_SURGE)
when, in one sweep, more than SURGE_ACCOUNTS accounts holding a position in it
are liquidatable, or at least SURGE_MIN_ACCOUNTS are and their positions exceed
SURGE_OI_PPM of its open interest, or when the funding ticks of the block moved
any position's AV by more than its MMR (a market-wide test, see funding_surge).
"""

from __future__ import annotations

from ledger.core.context import Ctx
from ledger.core.fixedpoint import PPM, S, pow10_neg
from ledger.core.members import HALTED
from ledger.core.state import Market, mmf_ppm
from ledger.events import outcomes as o
from ledger.events.enums import Mode

SURGE_ACCOUNTS = 50
SURGE_MIN_ACCOUNTS = 3
SURGE_OI_PPM = 250_000


def leave_ok(ctx: Ctx, m: Market, mode: Mode, reason: str, guard: str) -> None:
    """Move a market to a stricter mode on a guard's behalf (never loosens it)."""
    if m.mode >= mode:
        return
    if mode == HALTED:
        ctx.emit(o.MarketHalted(m.id, reason, f"guard:{guard}"))
    else:
        ctx.emit(o.ModeChanged(m.id, mode, 0, reason, f"guard:{guard}"))
        from ledger.core.cancels import cancel_out_of_band
        cancel_out_of_band(ctx, [m.id])


def funding_surge(m: Market, delta: int) -> bool:
    """G7: does an index move of `delta` change some holder's AV by more than its MMR?

    Per bq, funding moves AV by |ΔI|/S and MMR is mark*mmf/(10^-qce*PPM), so the
    test is the same for every position: |ΔI|*10^-qce*PPM > S*mark*mmf.
    """
    p = m.params
    return abs(delta) * pow10_neg(p.qce) * PPM > S * m.mark * mmf_ppm(p)


def liquidation_surge(count: int, size: int, oi_long: int) -> bool:
    """G7: are `count` liquidatable accounts holding `size` bq a surge in a market?"""
    if count > SURGE_ACCOUNTS:
        return True
    return count >= SURGE_MIN_ACCOUNTS and size * PPM > SURGE_OI_PPM * 2 * oi_long
