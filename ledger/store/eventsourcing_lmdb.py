"""An LMDB persistence module for the `eventsourcing` library.

Select it with ``PERSISTENCE_MODULE=ledger.store.eventsourcing_lmdb`` and
``LMDB_PATH=<directory>``. The recorders live in named sub-databases prefixed
``es_`` so that the same data directory can also hold the ledger's own chain.

Layout (all integers u64 big-endian, values msgpack arrays):

- ``es_<purpose>`` (``es_events``, ``es_snapshots``): key = originator id key
  + version, value = ``[topic, state]``. The originator id key is ``b"U"`` + the
  16 UUID bytes, or ``b"S"`` + u16 length + UTF-8 bytes, so keys of one
  aggregate form one contiguous, prefix-free range and ids read back with the
  type they were written with.
- ``es_notifications``: key = notification id, value = ``[event key, topic]``,
  an index into ``es_events`` written in the same transaction.
- ``es_tracking``: key = u16 length + application name + notification id,
  value empty; one row per upstream application (the highest id processed).

Key encoding is in `es_keys`, the LMDB-to-PEP 249 error mapping in `es_errors`,
subscriptions in `es_subscription`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast
from uuid import UUID

import lmdb
import msgpack
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    InternalError,
    Notification,
    ProcessRecorder,
    Recorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, EnvType, resolve_topic

from ledger.store.env import SharedEnv, close_env, open_env
from ledger.store.es_errors import lmdb_errors
from ledger.store.es_keys import (
    U64,
    U64_MAX,
    length_prefixed,
    originator_prefix,
    scan_range,
    split_event_key,
    u64,
)
from ledger.store.es_subscription import LMDBSubscription, notify

T = TypeVar("T")
if TYPE_CHECKING:  # py-lmdb's classes are generic in its stubs only
    Txn = lmdb.Transaction[bytes]

EVENTS_DB = b"es_events"
NOTIFICATIONS_DB = b"es_notifications"
TRACKING_DB = b"es_tracking"


class _Row(NamedTuple):
    """A stored event encoded before its write transaction (the write lock is held briefly)."""

    key: bytes
    value: bytes
    event: StoredEvent


class LMDBRecorder(Recorder):
    """Base of the LMDB recorders: holds the shared environment of a data directory."""

    def __init__(self, shared: SharedEnv) -> None:
        self.shared = shared
        with lmdb_errors():
            # Room left in a key for a str id: tag, u16 length and u64 version.
            self.max_id_len = shared.env.max_key_size() - 1 - 2 - 8

    def _open_db(self, name: bytes) -> Any:
        with lmdb_errors():
            return self.shared.db(name)

    # The shared environment begins transactions with buffers=False: values are bytes.
    def _write(self, fn: Callable[[Txn], T]) -> T:
        with lmdb_errors():
            return self.shared.run_write(lambda txn: fn(cast("Txn", txn)))

    def _read(self, fn: Callable[[Txn], T]) -> T:
        with lmdb_errors():
            return self.shared.run_read(lambda txn: fn(cast("Txn", txn)))


class LMDBAggregateRecorder(LMDBRecorder, AggregateRecorder):
    """Aggregate sequences in one sub-database, keyed by originator id and version."""

    def __init__(self, shared: SharedEnv, *, events_db_name: bytes = EVENTS_DB) -> None:
        super().__init__(shared)
        self.events_db_name = events_db_name
        self.events_db = self._open_db(events_db_name)

    def _encode(self, stored_events: Sequence[StoredEvent]) -> list[_Row]:
        rows = []
        for event in stored_events:
            prefix = originator_prefix(event.originator_id, self.max_id_len)
            key = prefix + u64(event.originator_version, "originator version")
            rows.append(_Row(key, msgpack.packb([event.topic, event.state]), event))
        return rows

    def _put_events(self, txn: Txn, rows: list[_Row]) -> None:
        for row in rows:
            if not txn.put(row.key, row.value, db=self.events_db, overwrite=False):
                # Raising aborts the transaction: nothing of the batch is written.
                raise IntegrityError(
                    f"stored event already recorded: originator_id={row.event.originator_id!s}, "
                    f"originator_version={row.event.originator_version}"
                )

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events in one transaction; raise `IntegrityError` on a taken version."""
        rows = self._encode(stored_events)
        if rows:
            self._write(lambda txn: self._put_events(txn, rows))
        return None

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """Return the events of one aggregate with `gt < version <= lte`, in version order."""
        prefix = originator_prefix(originator_id, self.max_id_len)
        low = 0 if gt is None else gt + 1
        high = U64_MAX if lte is None else min(lte, U64_MAX)
        if low > high or high < 0 or (limit is not None and limit <= 0):
            return []
        low_key = prefix + U64.pack(max(low, 0))
        high_key = prefix + U64.pack(high)

        def read(txn: Txn) -> list[StoredEvent]:
            cursor = txn.cursor(db=self.events_db)
            events: list[StoredEvent] = []
            for key, value in scan_range(cursor, low_key, high_key, desc=desc):
                topic, state = msgpack.unpackb(value)
                version = U64.unpack_from(key, len(key) - 8)[0]
                events.append(StoredEvent(originator_id, version, topic, state))
                if len(events) == limit:
                    break
            return events

        return self._read(read)


class LMDBApplicationRecorder(LMDBAggregateRecorder, ApplicationRecorder):
    """Aggregate sequences plus the gap-free application sequence (notification log)."""

    def __init__(
        self,
        shared: SharedEnv,
        *,
        events_db_name: bytes = EVENTS_DB,
        notifications_db_name: bytes = NOTIFICATIONS_DB,
    ) -> None:
        super().__init__(shared, events_db_name=events_db_name)
        self.notifications_db = self._open_db(notifications_db_name)
        self.log_key = (shared.path, notifications_db_name)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Write the events and their notifications in one transaction; return the ids.

        Raises `IntegrityError` (writing nothing) if a version is already taken.
        """
        rows = self._encode(stored_events)
        if not rows and not kwargs.get("tracking"):
            return []
        ids = self._write(lambda txn: self._insert(txn, rows, **kwargs))
        if ids:
            notify(self.log_key)
        return ids

    def _insert(self, txn: Txn, rows: list[_Row], **_: Any) -> list[int]:
        self._put_events(txn, rows)
        # Ids are taken from the head inside the write transaction: LMDB admits
        # one writer at a time (across processes too), and an aborted batch
        # takes no ids, so the sequence has no gaps and batches never interleave.
        cursor = txn.cursor(db=self.notifications_db)
        last = U64.unpack(cursor.key())[0] if cursor.last() else 0
        ids = list(range(last + 1, last + 1 + len(rows)))
        for nid, row in zip(ids, rows, strict=True):
            value = msgpack.packb([row.key, row.event.topic])
            txn.put(U64.pack(nid), value, db=self.notifications_db, append=True)
        return ids

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Return up to `limit` notifications from `start` (inclusive or not) to `stop`."""
        first = 1 if start is None else (start if inclusive_of_start else start + 1)
        first = max(first, 1)
        last = U64_MAX if stop is None else min(stop, U64_MAX)
        if limit <= 0 or first > last:
            return []
        wanted = frozenset(topics)

        def read(txn: Txn) -> list[Notification]:
            cursor = txn.cursor(db=self.notifications_db)
            notifications: list[Notification] = []
            for key, value in scan_range(cursor, U64.pack(first), U64.pack(last)):
                nid = U64.unpack(key)[0]
                event_key, topic = msgpack.unpackb(value)
                if wanted and topic not in wanted:
                    continue
                stored = txn.get(event_key, db=self.events_db)
                if stored is None:
                    raise InternalError(f"notification {nid} points at a missing event")
                _, state = msgpack.unpackb(stored)
                originator_id, version = split_event_key(event_key)
                notifications.append(Notification(originator_id, version, topic, state, nid))
                if len(notifications) == limit:
                    break
            return notifications

        return self._read(read)

    def max_notification_id(self) -> int | None:
        """Return the last notification id, or None if the log is empty."""

        def read(txn: Txn) -> int | None:
            cursor = txn.cursor(db=self.notifications_db)
            return U64.unpack(cursor.key())[0] if cursor.last() else None

        return self._read(read)

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Return an iterator over notifications after `gt` that blocks for new ones."""
        return LMDBSubscription(recorder=self, log=self.log_key, gt=gt, topics=topics)


class LMDBTrackingRecorder(LMDBRecorder, TrackingRecorder):
    """The position reached in each upstream application's notification log."""

    def __init__(
        self, shared: SharedEnv, *, tracking_db_name: bytes = TRACKING_DB, **kwargs: Any
    ) -> None:
        super().__init__(shared, **kwargs)
        self.tracking_db = self._open_db(tracking_db_name)

    def _tracking_prefix(self, application_name: str) -> bytes:
        return length_prefixed(application_name, self.max_id_len, "an application name")

    def _tracked_keys(self, txn: Txn, prefix: bytes) -> list[bytes]:
        # Normally one key: each insert replaces the application's previous row.
        low, high = prefix + U64.pack(0), prefix + U64.pack(U64_MAX)
        return [key for key, _ in scan_range(txn.cursor(db=self.tracking_db), low, high)]

    def _put_tracking(self, txn: Txn, tracking: Tracking) -> None:
        prefix = self._tracking_prefix(tracking.application_name)
        new_key = prefix + u64(tracking.notification_id, "notification id")
        old_keys = self._tracked_keys(txn, prefix)
        if old_keys and old_keys[-1] >= new_key:
            current = U64.unpack_from(old_keys[-1], len(prefix))[0]
            raise IntegrityError(
                f"tracking notification id must exceed {current} for "
                f"{tracking.application_name!r}, was {tracking.notification_id}"
            )
        for key in old_keys:
            txn.delete(key, db=self.tracking_db)
        txn.put(new_key, b"", db=self.tracking_db)

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a position; raise `IntegrityError` unless it is past the current one."""
        self._write(lambda txn: self._put_tracking(txn, tracking))

    def max_tracking_id(self, application_name: str) -> int | None:
        """Return the last notification id processed from the application, if any."""
        prefix = self._tracking_prefix(application_name)

        def read(txn: Txn) -> int | None:
            keys = self._tracked_keys(txn, prefix)
            return U64.unpack_from(keys[-1], len(prefix))[0] if keys else None

        return self._read(read)


class LMDBProcessRecorder(LMDBTrackingRecorder, LMDBApplicationRecorder, ProcessRecorder):
    """An application recorder that records tracking in the same write transaction."""

    def _insert(self, txn: Txn, rows: list[_Row], **kwargs: Any) -> list[int]:
        ids = super()._insert(txn, rows, **kwargs)
        tracking: Tracking | None = kwargs.get("tracking")
        if tracking is not None:
            self._put_tracking(txn, tracking)
        return ids


class LMDBFactory(InfrastructureFactory[LMDBTrackingRecorder]):
    """Builds LMDB recorders on the data directory named by `LMDB_PATH`."""

    LMDB_PATH = "LMDB_PATH"

    aggregate_recorder_class = LMDBAggregateRecorder
    application_recorder_class = LMDBApplicationRecorder
    tracking_recorder_class = LMDBTrackingRecorder
    process_recorder_class = LMDBProcessRecorder

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        path = self.env.get(self.LMDB_PATH)
        if not path:
            keys = ", ".join(self.env.create_keys(self.LMDB_PATH))
            raise OSError(f"LMDB data directory not found in environment with keys: {keys}")
        with lmdb_errors():
            self.shared = open_env(path)
        self._closed = False

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        """Return a recorder for sub-database ``es_<purpose>`` (events, snapshots)."""
        name = b"es_" + purpose.encode("utf-8")
        return self.aggregate_recorder_class(self.shared, events_db_name=name)

    def application_recorder(self) -> ApplicationRecorder:
        """Return the application recorder (class from `APPLICATION_RECORDER_TOPIC` if set)."""
        cls: type[LMDBApplicationRecorder] = self.application_recorder_class
        topic = self.env.get(self.APPLICATION_RECORDER_TOPIC)
        if topic:
            cls = resolve_topic(topic)
            assert issubclass(cls, LMDBApplicationRecorder), cls
        return cls(self.shared)

    def tracking_recorder(
        self, tracking_recorder_class: type[LMDBTrackingRecorder] | None = None
    ) -> LMDBTrackingRecorder:
        """Return a tracking recorder (given class, `TRACKING_RECORDER_TOPIC`, or default)."""
        cls = tracking_recorder_class
        if cls is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            cls = resolve_topic(topic) if topic else self.tracking_recorder_class
        assert cls is not None and issubclass(cls, LMDBTrackingRecorder), cls
        return cls(self.shared)

    def process_recorder(self) -> ProcessRecorder:
        """Return the process recorder (class from `PROCESS_RECORDER_TOPIC` if set)."""
        cls: type[LMDBProcessRecorder] = self.process_recorder_class
        topic = self.env.get(self.PROCESS_RECORDER_TOPIC)
        if topic:
            cls = resolve_topic(topic)
            assert issubclass(cls, LMDBProcessRecorder), cls
        return cls(self.shared)

    def close(self) -> None:
        """Release this factory's reference to the environment (idempotent)."""
        if not self._closed:
            self._closed = True
            close_env(self.shared)


Factory = LMDBFactory
