"""The decide context: `emit` evolves the live state at once and records the event.

Decide never mutates state itself. Each rule calls `ctx.emit(event)`, which
assigns the next seq, runs the very `evolve` a rebuild runs, and records the
envelope (cause = the IN event's seq). Later rules of the same command (a
taker's margin after a partial fill, a cancel after a position flips) thus see
earlier effects, while the event list stays the single source of truth.
"""

from __future__ import annotations

from typing import Any

from ledger.core.evolve import EVOLVE
from ledger.core.state import ExchangeState
from ledger.events.codec import Envelope


class Ctx:
    __slots__ = ("st", "height", "cause", "out", "rejections")

    def __init__(self, st: ExchangeState, height: int, out: list[Envelope]) -> None:
        self.st = st
        self.height = height
        self.cause = 0
        self.out = out
        #: the envelopes emitted through `reject` (BlockResult.rejections)
        self.rejections: list[Envelope] = []

    def emit(self, ev: Any) -> Envelope:
        """Apply `ev` to the live state and record it with the next seq (the one emit step)."""
        st = self.st
        seq = st.seq + 1
        st.seq = seq
        EVOLVE[type(ev)](st, ev)
        env = Envelope(seq, self.height, self.cause, ev)
        self.out.append(env)
        return env

    def reject(self, ev: Any) -> None:
        """`emit` a rejection event (OrderRejected, WithdrawRejected, ...) and list it."""
        self.rejections.append(self.emit(ev))
