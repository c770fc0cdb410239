"""The read seam: what the read side may ask of a ledger's log, whichever store holds it.

Two stores implement `ChainReader`: the LMDB `ChainStore` (the system of
record, read in MVCC snapshots) and `ledger.store.pg.chain.PgChain` (a
PostgreSQL replica fed block by block by `ledgerctl replicate`). Projections,
time travel, re-execution, verification jobs and the Auditor read through
this protocol only, so they answer the same from either store.

`open_chain(spec)` picks the store from a spec: a `postgresql://` (or
`postgres://`) URL opens the replica, anything else is a data directory.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Concatenate, ParamSpec, Protocol, Self, TypeVar

from ledger.errors import NotFound
from ledger.events.codec import Envelope
from ledger.store.blocks import BlockHeader
from ledger.store.chain import Snapshot, SnapshotInfo
from ledger.store.layout import Head

#: URL schemes that name a PostgreSQL replica instead of a data directory.
PG_SCHEMES = ("postgresql://", "postgres://")


class ChainReader(Protocol):
    """Read access to a hash-chained log: blocks, events, snapshots, branches, journal."""

    chain_id: str
    config: dict[str, Any]

    @property
    def spec(self) -> str:
        """What `open_chain` opens this store by: a data directory or a replica URL."""
        ...

    @property
    def head(self) -> Head: ...

    @property
    def genesis_hash(self) -> bytes | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def pinned(self) -> AbstractContextManager[None]:
        """Hold one consistent view of the store for the reads made inside it."""
        ...

    def block(self, height: int, *, branch: int | None = None) -> BlockHeader: ...

    def blocks(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[BlockHeader]: ...

    def iter_block_bytes(self, from_height: int | None = None, to_height: int | None = None,
                         *, branch: int | None = None, batch_events: int = 8192,
                         ) -> Iterator[tuple[BlockHeader, list[bytes]]]: ...

    def read_blocks(self, from_height: int, to_height: int, *, branch: int | None = None,
                    max_events: int = 8192, stop_at: Collection[int] = ()
                    ) -> list[tuple[BlockHeader, list[bytes]]]: ...

    def iter_blocks(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None, batch_events: int = 8192,
                    ) -> Iterator[tuple[BlockHeader, list[Envelope]]]:
        """Whole blocks with their decoded events, each block's events hash checked."""
        ...

    def iter_events(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None) -> Iterator[Envelope]:
        """Stream the events of an inclusive height range, in seq order."""
        ...

    def events(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[Envelope]:
        """Every event of an inclusive height range, in seq order."""
        ...

    def height_of_seq(self, seq: int, *, branch: int | None = None) -> int:
        """The height of the block holding `seq` (`NotFound` if none does)."""
        ...

    def event_bytes(self, seqs: Collection[int], *, branch: int | None = None
                    ) -> dict[int, bytes]: ...

    def events_by(self, *, account: str | None = None, market: str | None = None,
                  type_code: int | None = None, from_height: int | None = None,
                  to_height: int | None = None, branch: int | None = None,
                  limit: int | None = None) -> list[Envelope]: ...

    def snapshots(self) -> list[SnapshotInfo]: ...

    def snapshot(self, height: int) -> Snapshot: ...

    def nearest_snapshot(self, at_or_below: int) -> SnapshotInfo | None: ...

    def branches(self) -> list[dict[str, Any]]: ...

    def branch(self, branch: int) -> dict[str, Any]: ...

    def block_signatures(self, lo: int, hi: int, *, branch: int | None = None
                         ) -> dict[int, tuple[str, bytes]]:
        """{height: (writer key id, signature)} of the signed blocks in [lo, hi]."""
        ...

    def next_branch_id(self) -> int:
        """The id the next archived branch will have (on a replica: the next mirrored)."""
        ...

    def journal(self, *, after: int = 0) -> list[dict[str, Any]]:
        """The journal records with an id above `after` (default: every one), oldest first."""
        ...


P = ParamSpec("P")
R = TypeVar("R")


def one_view(fn: Callable[Concatenate[ChainReader, P], R]
             ) -> Callable[Concatenate[ChainReader, P], R]:
    """Run a read workflow over one consistent view of its store, passed first and
    positionally: a plan of many reads never mixes a replica's state before and after a
    block or a mirrored rollback committed meanwhile (a no-op on LMDB, see `pinned`)."""

    @functools.wraps(fn)
    def wrapper(store: ChainReader, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with store.pinned():
            return fn(store, *args, **kwargs)

    return wrapper


def where_is_block(store: ChainReader, height: int, block_hash: bytes, *,
                   branches: Sequence[int | None] | None = None) -> int | None | bool:
    """Which chain holds block `block_hash` at `height`: None for the canonical chain, a
    branch id for an archived branch, False for none. `branches` limits the search (None
    in it standing for the canonical chain)."""
    candidates: Sequence[int | None] = branches if branches is not None else \
        [None, *[int(b["branch"]) for b in store.branches()]]
    for branch in candidates:
        try:
            if store.block(height, branch=branch).hash == block_hash:
                return branch
        except NotFound:
            continue
    return False


def is_pg_spec(spec: str | os.PathLike[str]) -> bool:
    """True if `spec` names a PostgreSQL replica (a postgresql:// URL)."""
    return isinstance(spec, str) and spec.startswith(PG_SCHEMES)


def open_chain(spec: str | os.PathLike[str]) -> ChainReader:
    """Open a ledger's log read-only: a data directory, or a PostgreSQL replica URL.

    Raises `LedgerNotFound` for a directory without a ledger; for a URL, the
    errors of `PgChain.open` (unreachable server, no replica schema there).
    """
    if is_pg_spec(spec):
        from ledger.store.pg.chain import PgChain

        return PgChain.open(str(spec))
    from ledger.store.chain import ChainStore

    return ChainStore.open(spec)
