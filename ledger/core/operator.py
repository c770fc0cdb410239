"""Operator and listing commands: markets, params, modes, halts, guards, loss mode, snapshots.

Choices: a market's unit fields (atomic_resolution, qce, step, tick) cannot
change after listing (UpdateMarketParams changing them is a no-op; the door
refuses it); SetMode/ModeChanged with band 0 means the default 500 ppm
recovery band; ResumeMarket returns a market to OK (use SetMode for
CANCEL_ONLY -> POST_ONLY -> OK steps); after any mode change, resting orders
outside the recovery band of a POST_ONLY/CANCEL_ONLY market are cancelled
OUT_OF_BAND (SPEC 9). TakeSnapshot emits SnapshotTaken with the state hash as
of the TakeSnapshot event.
"""

from __future__ import annotations

from ledger.core.cancels import cancel_out_of_band
from ledger.core.context import Ctx
from ledger.core.members import HALTED, OK
from ledger.events import commands as c
from ledger.events import outcomes as o

UNIT_FIELDS = ("atomic_resolution", "qce", "step_bq", "tick_st")


def list_market(ctx: Ctx, cmd: c.ListMarket) -> None:
    if cmd.mkt not in ctx.st.markets and cmd.mkt:
        ctx.emit(o.MarketListed(cmd.mkt, cmd.params, cmd.oracle_st, cmd.funding_index))


def update_params(ctx: Ctx, cmd: c.UpdateMarketParams) -> None:
    m = ctx.st.markets.get(cmd.mkt)
    if m is None or any(getattr(m.params, f) != getattr(cmd.params, f) for f in UNIT_FIELDS):
        return
    ctx.emit(o.MarketParamsUpdated(cmd.mkt, cmd.params))


def set_mode(ctx: Ctx, cmd: c.SetMode) -> None:
    st = ctx.st
    if cmd.scope != c.ALL and cmd.scope not in st.markets:
        return
    ctx.emit(o.ModeChanged(cmd.scope, cmd.mode, cmd.band_ppm, cmd.reason, cmd.operator))
    cancel_out_of_band(ctx, sorted(st.markets) if cmd.scope == c.ALL else [cmd.scope])


def halt_market(ctx: Ctx, cmd: c.HaltMarket) -> None:
    m = ctx.st.markets.get(cmd.mkt)
    if m is not None and m.mode != HALTED:
        ctx.emit(o.MarketHalted(cmd.mkt, cmd.reason, cmd.operator))


def resume_market(ctx: Ctx, cmd: c.ResumeMarket) -> None:
    m = ctx.st.markets.get(cmd.mkt)
    if m is not None and m.mode != OK:
        ctx.emit(o.MarketResumed(cmd.mkt, cmd.reason, cmd.operator))


def set_guards(ctx: Ctx, cmd: c.SetGuards) -> None:
    ctx.emit(o.GuardsSet(cmd.enabled, cmd.reason, cmd.operator))


def set_loss_mode(ctx: Ctx, cmd: c.SetLossMode) -> None:
    ctx.emit(o.LossModeSet(cmd.mode, cmd.reason, cmd.operator))


def take_snapshot(ctx: Ctx, cmd: c.TakeSnapshot) -> None:
    st = ctx.st
    ctx.emit(o.SnapshotTaken(st.seq, st.hasher.current(st) if st.hasher else bytes(32)))


def register_key(ctx: Ctx, cmd: c.RegisterKey) -> None:
    st = ctx.st
    if st.chain_id and cmd.chain_id != st.chain_id:
        return  # a registration for another chain does nothing here
    ctx.emit(o.KeyRegistered(cmd.chain_id, cmd.key_id, cmd.role, cmd.name, cmd.public_key,
                             cmd.active))
