"""Where the Auditor's read models live: one protocol, one implementation per store.

The audit read models (statement lines, funding history, liquidation
register; `projections.audit_models`) exist in two stores:

- beside an LMDB ledger, in its read-model environment (`<data>/readmodels`),
  folded by the projection runner (`LmdbAuditModels`, here);
- in a PostgreSQL replica, folded by the block replicator into tables in the
  same transaction as each block (`projections.audit_pg.PgAuditModels`).

Both hold the same entries: the same fold writes them, keyed the same way
(namespace 0 the canonical chain, `b` archived branch `b`). The Auditor reads
through `AuditModels.read`, which runs a function on one consistent view
(`AuditView`), and never touches either store itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ledger.store.reader import ChainReader
from projections import jobs
from projections.audit_models import (
    AuditProjection,
    StatementLine,
    decode_line,
    funding_key,
    liq_key,
)
from projections.checkpoints import Checkpoint, read_checkpoint
from projections.readmodels import CANONICAL, ReadModels, Txn, read_u64, s8, u32, u64, unpack
from projections.runner import Runner

T = TypeVar("T")
_AUDIT = AuditProjection.name


class AuditView(Protocol):
    """One consistent read of the audit read models (a snapshot of their store)."""

    def checkpoint(self) -> Checkpoint:
        """The last canonical block folded (height -1: nothing yet)."""
        ...

    def lines(self, ns: int, acct: str, lo: int, hi: int) -> list[StatementLine]:
        """An account's lines in heights [lo, hi] of a namespace, by (height, seq, k)."""
        ...

    def balance_before(self, ns: int, acct: str, height: int,
                       canonical_below: int | None) -> int:
        """The balance after the account's last line below `height` in `ns`; if it has none
        there, after its last canonical line below `canonical_below` (a branch's shared
        history); 0 if none."""
        ...

    def all_lines(self, ns: int, lo: int, hi: int) -> list[StatementLine]:
        """Every account's lines in heights [lo, hi] of a namespace (any order)."""
        ...

    def funding_ticks(self, ns: int, mkt: str, lo: int, hi: int) -> list[dict[str, Any]]:
        """A market's funding ticks in [lo, hi], each with its height and seq."""
        ...

    def liquidations(self, ns: int, lo: int, hi: int) -> list[dict[str, Any]]:
        """Liquidation register records in [lo, hi], by (height, seq)."""
        ...


class AuditModels(Protocol):
    """The audit read models of one ledger, in whichever store holds them."""

    @property
    def readmodels(self) -> ReadModels | None:
        """The LMDB read-model environment, if that is where they live (time travel
        starts from its saved exchange state); None for other stores."""
        ...

    def read(self, fn: Callable[[AuditView], T]) -> T:
        """Run `fn` on one consistent view."""
        ...

    def catch_up(self, *, progress: bool) -> None:
        """Fold new blocks in, if this store is folded on demand (else nothing)."""
        ...

    def ensure_branch(self, branch: int) -> None:
        """Make archived branch `branch`'s own entries readable (namespace `branch`)."""
        ...

    def close(self) -> None: ...


class LmdbAuditModels:
    """The audit read models in `<data>/readmodels`, folded on demand by the runner."""

    def __init__(self, store: ChainReader, rm: ReadModels) -> None:
        self.store = store
        self.rm = rm

    @property
    def readmodels(self) -> ReadModels | None:
        return self.rm

    def read(self, fn: Callable[[AuditView], T]) -> T:
        return self.rm.read(lambda txn: fn(_LmdbView(txn, self.rm)))

    def catch_up(self, *, progress: bool) -> None:
        """Fold new blocks into the read models and the exchange-state projection
        (skipped if another runner is busy)."""
        jobs.catch_up(self.store, self.rm, progress=progress, wait=False)

    def ensure_branch(self, branch: int) -> None:
        """Branch read models are folded on first use (from the canonical state at the
        branch's base)."""
        Runner(self.store, self.rm).run_branch(AuditProjection(), branch)

    def close(self) -> None:
        self.rm.close()


class _LmdbView:
    """`AuditView` over one read transaction of the read-model environment."""

    def __init__(self, txn: Txn, rm: ReadModels) -> None:
        self.txn = txn
        self.rm = rm

    def checkpoint(self) -> Checkpoint:
        return read_checkpoint(self.txn, self.rm, _AUDIT, CANONICAL)

    def lines(self, ns: int, acct: str, lo: int, hi: int) -> list[StatementLine]:
        """One cursor range, O(result)."""
        pre = u32(ns) + s8(acct)
        cur = self.txn.cursor(self.rm.stmt)
        out: list[StatementLine] = []
        if not cur.set_range(pre + u64(lo)):
            return out
        for key, value in cur:
            if not key.startswith(pre) or read_u64(key, len(pre)) > hi:
                break
            out.append(decode_line(key, value))
        return out

    def balance_before(self, ns: int, acct: str, height: int,
                       canonical_below: int | None) -> int:
        spaces = [(ns, height)]
        if canonical_below is not None:
            spaces.append((CANONICAL, canonical_below))
        for space, below in spaces:
            pre = u32(space) + s8(acct)
            cur = self.txn.cursor(self.rm.stmt)
            found = cur.set_range(pre + u64(below))
            moved = cur.prev() if found else cur.last()
            if moved and cur.key().startswith(pre):
                return decode_line(cur.key(), cur.value()).balance_qq
        return 0

    def all_lines(self, ns: int, lo: int, hi: int) -> list[StatementLine]:
        """A scan of the namespace."""
        cur = self.txn.cursor(self.rm.stmt)
        pre = u32(ns)
        got: list[StatementLine] = []
        if not cur.set_range(pre):
            return got
        for key, value in cur:
            if not key.startswith(pre):
                break
            ln = decode_line(key, value)
            if lo <= ln.height <= hi:
                got.append(ln)
        return got

    def funding_ticks(self, ns: int, mkt: str, lo: int, hi: int) -> list[dict[str, Any]]:
        cur = self.txn.cursor(self.rm.funding)
        pre = u32(ns) + s8(mkt)
        ticks: list[dict[str, Any]] = []
        if not cur.set_range(funding_key(ns, mkt, lo, 0)):
            return ticks
        for key, value in cur:
            if not key.startswith(pre):
                break
            height = read_u64(key, len(pre))
            if height > hi:
                break
            ticks.append({"height": height, "seq": read_u64(key, len(pre) + 8),
                          **unpack(value)})
        return ticks

    def liquidations(self, ns: int, lo: int, hi: int) -> list[dict[str, Any]]:
        cur = self.txn.cursor(self.rm.liqs)
        out: list[dict[str, Any]] = []
        if not cur.set_range(liq_key(ns, lo, 0)):
            return out
        for key, value in cur:
            if key[:4] != u32(ns) or read_u64(key, 4) > hi:
                break
            out.append(unpack(value))
        return out
