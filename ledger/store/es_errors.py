"""LMDB errors mapped to the `eventsourcing` library's PEP 249 error classes.

Callers of the recorder module then catch one family of errors whatever the
backend, as they do with the library's SQLite and PostgreSQL modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lmdb
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

_ERRORS: tuple[tuple[tuple[type[lmdb.Error], ...], type[PersistenceError]], ...] = (
    ((lmdb.KeyExistsError,), IntegrityError),
    ((lmdb.BadValsizeError,), DataError),
    ((lmdb.BadDbiError, lmdb.InvalidParameterError, lmdb.IncompatibleError), ProgrammingError),
    (
        (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.PanicError, lmdb.BadRslotError,
         lmdb.BadTxnError, lmdb.BadChecksumError, lmdb.ProblemError),
        InternalError,
    ),
    (
        (lmdb.MapFullError, lmdb.MapResizedError, lmdb.ReadersFullError, lmdb.TlsFullError,
         lmdb.TxnFullError, lmdb.CursorFullError, lmdb.PageFullError, lmdb.DbsFullError,
         lmdb.ReadonlyError, lmdb.LockError, lmdb.DiskError, lmdb.MemoryError,
         lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CryptoFailError,
         lmdb.EnvEncryptionError),
        OperationalError,
    ),
)


def translate_error(error: lmdb.Error) -> PersistenceError:
    """Return the library's PEP 249 error for an LMDB error.

    A bare `lmdb.Error` is the binding's own complaint, not the database's (for
    example an operation on a closed environment), hence `InterfaceError`.
    """
    for classes, persistence_error in _ERRORS:
        if isinstance(error, classes):
            return persistence_error(str(error))
    if type(error) is lmdb.Error:
        return InterfaceError(str(error))
    return DatabaseError(str(error))


@contextmanager
def lmdb_errors() -> Iterator[None]:
    """Re-raise any `lmdb.Error` inside the block as the library's PEP 249 error."""
    try:
        yield
    except lmdb.Error as e:
        raise translate_error(e) from e
