"""`verify` beyond the chain walk: snapshots (and, with signatures, authority).

`verify_store` (ledger/store/verify.py) walks blocks, events and indexes.
What it cannot see from stored bytes alone is checked here, above both the
store and the core:

- every snapshot: its bytes restore to a state whose hash equals both the
  hash recorded beside it and the state hash in the block header at its
  height (a flipped snapshot byte is found here, not later by a query that
  restores it and fails);

Each check returns `Problem`s; the first one's height is the report's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import lmdb

from ledger.core.engine import Engine
from ledger.errors import LedgerError, NotFound
from ledger.store.chain import ChainStore
from ledger.store.failures import DAMAGE


class Problem(NamedTuple):
    """One thing verify found wrong: where, and what."""

    height: int | None
    reason: str


def verify_snapshots(store: ChainStore, *,
                     progress: Callable[[int], None] | None = None) -> list[Problem]:
    """Restore every snapshot and check its state hash against its record and its block."""
    problems: list[Problem] = []
    for info in store.snapshots():
        h = info.height
        try:
            snap = store.snapshot(h)
            header = store.block(h)
        except NotFound:
            problems.append(Problem(h, f"snapshot at height {h} has no block at its height"))
            continue
        except (LedgerError, *DAMAGE) as exc:
            problems.append(Problem(h, f"snapshot at height {h} cannot be read: {exc}"))
            continue
        if snap.state_hash != header.state_hash:
            problems.append(Problem(h, f"snapshot at height {h}: its recorded state hash "
                                    "differs from the block header's"))
            continue
        try:
            got = Engine.from_snapshot(snap.data).state_hash()
        except (lmdb.Error, LedgerError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, UnicodeDecodeError) as exc:
            # Bytes that do not even decode to a state: damaged.
            problems.append(Problem(h, f"snapshot at height {h}: its bytes do not restore "
                                    f"to a state ({type(exc).__name__}: {exc})"))
            continue
        if got != snap.state_hash:
            problems.append(Problem(h, f"snapshot at height {h}: its bytes restore to state "
                                    f"hash {got.hex()[:16]}, recorded "
                                    f"{snap.state_hash.hex()[:16]}"))
        if progress is not None:
            progress(h)
    return problems
