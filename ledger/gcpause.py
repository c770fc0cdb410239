"""Pausing Python's cyclic garbage collector for one block's work.

A block allocates hundreds of thousands of short-lived tuples; with the
collector on, each generation-0 threshold crossing can escalate into walking
the whole engine state (millions of long-lived objects). Pausing it for the
block and collecting only the youngest generation afterwards keeps the cost
proportional to the block. Nested pauses are no-ops, so the sequencer can hold
one across engine, encoding and append while the engine holds its own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused(enabled: bool = True) -> Iterator[None]:
    """Disable the collector inside the block (if it was on), then collect generation 0."""
    if not enabled or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect(0)
