"""One small hierarchy of errors, each with a message an operator can act on.

Storage errors reuse PEP 249 names (as the eventsourcing library does) so that
callers of the recorder module can catch the library's own classes too.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error perpledger raises on purpose."""

    #: CLI exit code for this error (1 error, 2 usage, 3 verification failed).
    exit_code: int = 1


class CodecError(LedgerError):
    """Bytes or a record that do not match the event catalogue."""


class CommandInvalid(LedgerError):
    """A command whose shape is wrong before it meets any state (refused at the door)."""

    exit_code = 2


class CommandRejected(LedgerError):
    """A well-formed command the rules refuse; carries a stable reason code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class InvariantViolated(LedgerError):
    """An exchange invariant failed after a block: stop, never append past it."""

    exit_code = 3

    def __init__(self, height: int, invariant: str, detail: str) -> None:
        super().__init__(f"invariant {invariant} violated at height {height}: {detail}")
        self.height = height
        self.invariant = invariant
        self.detail = detail


class StoreError(LedgerError):
    """Base of the storage errors."""


class LedgerNotFound(StoreError):
    """No ledger exists at the data directory."""


class LedgerExists(StoreError):
    """A ledger already exists where `init` was asked to create one."""


class LedgerLocked(StoreError):
    """Another writer holds the single-writer lock on this data directory."""


class IntegrityError(StoreError):
    """A block or record conflicts with what the store holds (height, seq, hash)."""


class BlockRejected(IntegrityError):
    """A block failed validation; nothing of it was written."""


class CommitFailed(StoreError):
    """A block's durable commit failed: the writer stopped at the last durable block."""

    def __init__(self, height: int, durable_height: int, cause: BaseException) -> None:
        super().__init__(
            f"block {height} could not be committed ({type(cause).__name__}: {cause}); "
            f"the writer stopped. Blocks up to {durable_height} are durable and nothing "
            f"after them was acknowledged. Fix the cause (disk space, file size limit, "
            f"permissions), then restart the writer: it resumes after block {durable_height}.")
        self.height = height
        self.durable_height = durable_height


class NotFound(StoreError):
    """A height, branch, snapshot or record that does not exist."""


class StoreUnavailable(StoreError):
    """A store that cannot be reached now (a PostgreSQL server down, refusing, or gone
    mid-transaction); nothing half-written is visible, and a retry may succeed."""


class VerificationFailed(LedgerError):
    """The chain, an index, a snapshot or a replay does not check out."""

    exit_code = 3

    def __init__(self, height: int | None, reason: str) -> None:
        where = f"at height {height}" if height is not None else "in the store"
        super().__init__(f"verification failed {where}: {reason}")
        self.height = height
        self.reason = reason


class StoreCorrupted(StoreError):
    """LMDB or a record in it is damaged: verification failed (exit 3).

    Names the data directory, and where known the sub-database and the height.
    """

    exit_code = 3

    def __init__(self, path: str, detail: str, *, subdb: str | None = None,
                 height: int | None = None, fix: str | None = None) -> None:
        where = [f"the store at {path}"]
        if subdb is not None:
            where.append(f"sub-database {subdb!r}")
        if height is not None:
            where.append(f"height {height}")
        msg = f"{', '.join(where)} is damaged: {detail}"
        if fix:
            msg += f"; {fix}"
        super().__init__(msg)
        self.path = path
        self.subdb = subdb
        self.height = height


class StoreFull(StoreError):
    """The disk (or the file system) holding a store has no room for a write.

    Nothing of the refused write is kept; acknowledged blocks are intact. Free
    space and run the command again.
    """


class RollbackRefused(LedgerError):
    """A rollback that may not run as asked; the message says what to do instead."""
