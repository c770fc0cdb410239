"""The envelope of one logged event: its place in the chain and the typed record.

A frozen msgspec Struct (`Envelope(seq, height, cause, event)`), kept apart
from the codec so the codec can be compiled with the core (a module defining a
msgspec Struct cannot be). `ledger.events.codec.Envelope` is the same class.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Envelope(msgspec.Struct, frozen=True, gc=False):
    """One logged event: its place in the chain and the typed record."""

    seq: int
    height: int
    cause: int
    event: Any

    @property
    def type_name(self) -> str:
        return type(self.event).__name__

    @property
    def kind(self) -> str:
        return str(type(self.event).KIND)
