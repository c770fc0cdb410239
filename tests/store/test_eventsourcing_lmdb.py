"""The LMDB persistence module against the eventsourcing library's own recorder test cases.

The library's cases run unchanged; only their construction hooks are overridden.
Every recorder runs on a real LMDB environment in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import TestCase
from uuid import UUID, uuid4

import lmdb
import msgpack
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    DataError,
    DatetimeAsISO,
    DecimalAsStr,
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Tracking,
    TrackingRecorder,
    Transcoder,
    Transcoding,
    TranscodingNotRegisteredError,
)
from eventsourcing.tests import persistence as cases
from eventsourcing.utils import Environment, get_topic

from ledger.store.env import SharedEnv, close_env, open_env
from ledger.store.es_errors import translate_error
from ledger.store.eventsourcing_lmdb import (
    LMDBAggregateRecorder,
    LMDBApplicationRecorder,
    LMDBFactory,
    LMDBProcessRecorder,
    LMDBTrackingRecorder,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE = "ledger.store.eventsourcing_lmdb"


class TempEnvs:
    """Mixin: each `create_recorder` gets a fresh LMDB directory, closed and removed after."""

    def setUp(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="es_lmdb_")
        self._envs: list[SharedEnv] = []
        super().setUp()  # type: ignore[misc]

    def tearDown(self) -> None:
        super().tearDown()  # type: ignore[misc]
        for shared in self._envs:
            close_env(shared)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def new_env(self) -> SharedEnv:
        shared = open_env(Path(self._tmp) / str(len(self._envs)))
        self._envs.append(shared)
        return shared


class WithStrOriginatorIDs:
    """Run a case with str originator ids, as the library does for SQLite's text ids."""

    def new_originator_id(self) -> UUID | str:
        return "test-" + str(uuid4())


# --- the library's recorder test cases -------------------------------------------------


class TestLMDBAggregateRecorder(TempEnvs, cases.AggregateRecorderTestCase):
    def create_recorder(self) -> AggregateRecorder:
        return LMDBAggregateRecorder(self.new_env())


class TestLMDBAggregateRecorderWithStrIDs(WithStrOriginatorIDs, TestLMDBAggregateRecorder):
    pass


class TestLMDBApplicationRecorder(
    TempEnvs, cases.ApplicationRecorderTestCase[LMDBApplicationRecorder]
):
    def create_recorder(self) -> LMDBApplicationRecorder:
        return LMDBApplicationRecorder(self.new_env())

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestLMDBApplicationRecorderWithStrIDs(WithStrOriginatorIDs, TestLMDBApplicationRecorder):
    pass


class TestLMDBNonInterleavingNotificationIDs(
    TempEnvs, cases.NonInterleavingNotificationIDsBaseCase
):
    def create_recorder(self) -> ApplicationRecorder:
        return LMDBApplicationRecorder(self.new_env())


class TestLMDBTrackingRecorder(TempEnvs, cases.TrackingRecorderTestCase):
    def create_recorder(self) -> TrackingRecorder:
        return LMDBTrackingRecorder(self.new_env())


class TestLMDBProcessRecorder(TempEnvs, cases.ProcessRecorderTestCase):
    def create_recorder(self) -> ProcessRecorder:
        return LMDBProcessRecorder(self.new_env())


class TestLMDBProcessRecorderWithStrIDs(WithStrOriginatorIDs, TestLMDBProcessRecorder):
    pass


class TestLMDBInfrastructureFactory(cases.InfrastructureFactoryTestCase[LMDBFactory]):
    class LMDBTrackingRecorderSubclass(LMDBTrackingRecorder):
        pass

    def setUp(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="es_lmdb_")
        self.env = Environment("TestCase")
        self.env[InfrastructureFactory.PERSISTENCE_MODULE] = MODULE
        self.env[LMDBFactory.LMDB_PATH] = self._tmp
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def expected_factory_class(self) -> type[LMDBFactory]:
        return LMDBFactory

    def expected_aggregate_recorder_class(self) -> type[AggregateRecorder]:
        return LMDBAggregateRecorder

    def expected_application_recorder_class(self) -> type[ApplicationRecorder]:
        return LMDBApplicationRecorder

    def expected_tracking_recorder_class(self) -> type[TrackingRecorder]:
        return LMDBTrackingRecorder

    def tracking_recorder_subclass(self) -> type[TrackingRecorder]:
        return self.LMDBTrackingRecorderSubclass

    def expected_process_recorder_class(self) -> type[ProcessRecorder]:
        return LMDBProcessRecorder

    def test_construct_without_lmdb_path_raises_environment_error(self) -> None:
        del self.env[LMDBFactory.LMDB_PATH]
        with self.assertRaises(OSError) as cm:
            InfrastructureFactory.construct(self.env)
        self.assertEqual(
            cm.exception.args[0],
            "LMDB data directory not found in environment with keys: "
            "TESTCASE_LMDB_PATH, LMDB_PATH",
        )

    def test_close_is_idempotent_and_later_use_raises_interface_error(self) -> None:
        recorder = self.factory.application_recorder()
        self.factory.close()
        self.factory.close()
        with self.assertRaises(InterfaceError):
            recorder.max_notification_id()


# --- behaviour the library's cases do not pin down -------------------------------------


def _event(originator_id: UUID | str, version: int, topic: str = "topic") -> StoredEvent:
    return StoredEvent(originator_id, version, topic, b"state")


class TestLMDBRecorderStorage(TempEnvs, TestCase):
    def test_events_survive_closing_and_reopening_the_environment(self) -> None:
        path = Path(self._tmp) / "reopen"
        shared = open_env(path)
        recorder = LMDBProcessRecorder(shared)
        uuid_id, str_id = uuid4(), "account-7"
        recorder.insert_events(
            [_event(uuid_id, 1), _event(str_id, 1)], tracking=Tracking("upstream", 5)
        )
        close_env(shared)

        shared = open_env(path)
        self._envs.append(shared)
        reopened = LMDBProcessRecorder(shared)
        self.assertEqual(reopened.max_notification_id(), 2)
        self.assertEqual(reopened.max_tracking_id("upstream"), 5)
        notifications = reopened.select_notifications(None, 10)
        self.assertEqual([n.originator_id for n in notifications], [uuid_id, str_id])
        self.assertIsInstance(notifications[0].originator_id, UUID)
        self.assertIsInstance(notifications[1].originator_id, str)
        self.assertEqual(reopened.insert_events([_event(uuid_id, 2)]), [3])

    def test_a_uuid_and_its_string_form_are_different_originators(self) -> None:
        recorder = LMDBApplicationRecorder(self.new_env())
        uuid_id = uuid4()
        recorder.insert_events([_event(uuid_id, 1), _event(str(uuid_id), 1)])
        self.assertEqual(len(recorder.select_events(uuid_id)), 1)
        self.assertEqual(recorder.select_events(str(uuid_id))[0].originator_id, str(uuid_id))

    def test_an_originator_id_that_is_a_prefix_of_another_reads_only_its_own_events(
        self,
    ) -> None:
        recorder = LMDBAggregateRecorder(self.new_env())
        recorder.insert_events([_event("a", 1), _event("a\x00", 1), _event("ab", 1)])
        self.assertEqual([e.originator_id for e in recorder.select_events("a")], ["a"])
        self.assertEqual(len(recorder.select_events("a", desc=True)), 1)

    def test_a_failed_batch_takes_no_notification_ids(self) -> None:
        recorder = LMDBApplicationRecorder(self.new_env())
        taken = uuid4()
        self.assertEqual(recorder.insert_events([_event(taken, 1)]), [1])
        with self.assertRaises(IntegrityError):
            recorder.insert_events([_event(uuid4(), 1), _event(taken, 1)])
        self.assertEqual(recorder.max_notification_id(), 1)
        self.assertEqual(recorder.insert_events([_event(uuid4(), 1)]), [2])

    def test_a_failed_tracking_write_drops_the_events_of_its_transaction(self) -> None:
        recorder = LMDBProcessRecorder(self.new_env())
        recorder.insert_tracking(Tracking("upstream", 3))
        originator = uuid4()
        with self.assertRaises(IntegrityError):
            recorder.insert_events([_event(originator, 1)], tracking=Tracking("upstream", 3))
        self.assertEqual(recorder.select_events(originator), [])
        self.assertIsNone(recorder.max_notification_id())

    def test_tracking_keeps_one_row_per_application(self) -> None:
        shared = self.new_env()
        recorder = LMDBTrackingRecorder(shared)
        for nid in range(1, 6):
            recorder.insert_tracking(Tracking("upstream", nid))
        recorder.insert_tracking(Tracking("upstream-2", 1))
        with shared.env.begin(db=recorder.tracking_db) as txn:
            self.assertEqual(txn.stat(recorder.tracking_db)["entries"], 2)
        self.assertEqual(recorder.max_tracking_id("upstream"), 5)

    def test_values_are_compact_msgpack_arrays_in_es_sub_databases(self) -> None:
        shared = self.new_env()
        recorder = LMDBApplicationRecorder(shared)
        recorder.insert_events([_event("acct", 1, topic="t")])
        with shared.env.begin() as txn:
            names = [key for key, _ in txn.cursor()]
            event_key, event_value = next(iter(txn.cursor(db=recorder.events_db)))
            nid_key, nid_value = next(iter(txn.cursor(db=recorder.notifications_db)))
        self.assertEqual(names, [b"es_events", b"es_notifications"])
        self.assertEqual(event_key, b"S\x00\x04acct" + (1).to_bytes(8, "big"))
        self.assertEqual(msgpack.unpackb(event_value), ["t", b"state"])
        self.assertEqual(nid_key, (1).to_bytes(8, "big"))
        self.assertEqual(msgpack.unpackb(nid_value), [event_key, "t"])

    def test_ids_that_do_not_fit_an_lmdb_key_raise_data_error(self) -> None:
        recorder = LMDBProcessRecorder(self.new_env())
        with self.assertRaises(DataError):
            recorder.insert_events([_event("x" * 501, 1)])
        with self.assertRaises(DataError):
            recorder.insert_events([_event(uuid4(), -1)])
        with self.assertRaises(DataError):
            recorder.insert_tracking(Tracking("x" * 501, 1))
        recorder.insert_events([_event("x" * 500, 1)])

    def test_lmdb_errors_map_to_pep_249_names(self) -> None:
        self.assertIsInstance(translate_error(lmdb.KeyExistsError("k")), IntegrityError)
        self.assertIsInstance(translate_error(lmdb.BadValsizeError("v")), DataError)
        self.assertIsInstance(translate_error(lmdb.ReadersFullError("r")), OperationalError)
        self.assertIsInstance(translate_error(lmdb.CorruptedError("c")), InternalError)
        self.assertIsInstance(translate_error(lmdb.Error("closed")), InterfaceError)


# --- several processes on one data directory -------------------------------------------

_WRITER = """
import sys, uuid
from eventsourcing.persistence import StoredEvent
from ledger.store.env import open_env
from ledger.store.eventsourcing_lmdb import LMDBApplicationRecorder
path, batches, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
recorder = LMDBApplicationRecorder(open_env(path))
for _ in range(batches):
    originator = uuid.uuid4()
    ids = recorder.insert_events(
        [StoredEvent(originator, v, "from-" + sys.argv[4], b"s") for v in range(size)]
    )
    assert ids == list(range(ids[0], ids[0] + size)), ids
"""


def _start_writer(path: str, batches: int, size: int, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    args = [sys.executable, "-c", _WRITER, path, str(batches), str(size), name]
    return subprocess.Popen(args, env=env, cwd=REPO_ROOT)


class TestLMDBAcrossProcesses(TempEnvs, TestCase):
    def test_writers_in_two_processes_leave_no_gaps_and_do_not_interleave(self) -> None:
        path = str(Path(self._tmp) / "shared")
        writers = [_start_writer(path, 40, 10, name) for name in ("a", "b")]
        self.assertEqual([w.wait(timeout=60) for w in writers], [0, 0])

        recorder = LMDBApplicationRecorder(self.new_env_at(path))
        notifications = recorder.select_notifications(None, 1000)
        self.assertEqual([n.id for n in notifications], list(range(1, 801)))
        for batch_start in range(0, 800, 10):
            batch = notifications[batch_start : batch_start + 10]
            self.assertEqual(len({n.originator_id for n in batch}), 1)
            self.assertEqual([n.originator_version for n in batch], list(range(10)))

    def test_a_subscription_sees_events_written_by_another_process(self) -> None:
        path = str(Path(self._tmp) / "shared")
        recorder = LMDBApplicationRecorder(self.new_env_at(path))
        recorder.insert_events([_event(uuid4(), 1)])
        received: list[int] = []
        with recorder.subscribe(gt=1) as subscription:
            # If polling never wakes the subscription, stop it rather than hang.
            timer = threading.Timer(20, subscription.stop)
            timer.start()
            writer = _start_writer(path, 1, 3, "other")
            for notification in subscription:
                self.assertEqual(notification.topic, "from-other")
                received.append(notification.id)
                if len(received) == 3:
                    break
            timer.cancel()
        self.assertEqual(writer.wait(timeout=60), 0)
        self.assertEqual(received, [2, 3, 4])

    def new_env_at(self, path: str) -> SharedEnv:
        shared = open_env(path)
        self._envs.append(shared)
        return shared


# --- an Application on LMDB with a msgpack transcoder ----------------------------------


class UUIDAsBytes(Transcoding):
    """UUIDs as their 16 bytes (msgpack bin), half the size of the hex string."""

    type = UUID
    name = "uuid_bytes"

    def encode(self, obj: UUID) -> bytes:
        return obj.bytes

    def decode(self, data: bytes) -> UUID:
        return UUID(bytes=data)


class MsgpackTranscoder(Transcoder):
    """Event state as msgpack; a registered type travels as ext type 1 holding [name, data].

    Registers the library's default transcodings (UUID, Decimal, datetime), as an
    Application does for its JSON transcoder. Like JSON, tuples come back as lists.
    """

    EXT_TRANSCODED = 1

    def __init__(self) -> None:
        self.types: dict[type, Transcoding] = {}
        self.names: dict[str, Transcoding] = {}
        for transcoding in (UUIDAsBytes(), DecimalAsStr(), DatetimeAsISO()):
            self.register(transcoding)

    def register(self, transcoding: Transcoding) -> None:
        self.types[transcoding.type] = transcoding
        self.names[transcoding.name] = transcoding

    def encode(self, obj: Any) -> bytes:
        data: bytes = msgpack.packb(obj, default=self._default)
        return data

    def decode(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook)

    def _default(self, obj: Any) -> msgpack.ExtType:
        transcoding = self.types.get(type(obj))
        if transcoding is None:
            raise TranscodingNotRegisteredError(
                f"Object of type {type(obj)} is not serializable. Please define "
                "and register a custom transcoding for this type."
            )
        payload = msgpack.packb([transcoding.name, transcoding.encode(obj)], default=self._default)
        return msgpack.ExtType(self.EXT_TRANSCODED, payload)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        if code != self.EXT_TRANSCODED:
            return msgpack.ExtType(code, data)
        name, payload = msgpack.unpackb(data, ext_hook=self._ext_hook)
        transcoding = self.names.get(name)
        if transcoding is None:
            raise TranscodingNotRegisteredError(
                f"Data serialized with name '{name}' is not deserializable. "
                "Please register a custom transcoding for this type."
            )
        return transcoding.decode(payload)


class Account(Aggregate):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.balance_qq = 0
        self.counterparties: list[UUID] = []

    @event("Credited")
    def credit(self, amount_qq: int, counterparty: UUID) -> None:
        self.balance_qq += amount_qq
        self.counterparties.append(counterparty)


class Bank(Application[UUID]):
    pass


@pytest.fixture
def lmdb_app_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PERSISTENCE_MODULE": MODULE,
        "LMDB_PATH": str(tmp_path / "bank"),
        "TRANSCODER_TOPIC": get_topic(MsgpackTranscoder),
        "IS_SNAPSHOTTING_ENABLED": "y",
    }


@pytest.fixture
def bank(lmdb_app_env: dict[str, str]) -> Iterator[Bank]:
    app = Bank(env=lmdb_app_env)
    yield app
    app.close()


def test_msgpack_transcoder_round_trips_the_library_transcodings() -> None:
    transcoder = MsgpackTranscoder()
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    obj = {"id": uuid4(), "at": when, "px": Decimal("101.25"), "nested": [[1, "a"], {"b": 2}]}
    data = transcoder.encode(obj)
    assert transcoder.decode(data) == obj
    with pytest.raises(TypeError):
        transcoder.encode({"x": object()})


def test_application_saves_and_reloads_an_aggregate_after_reopening(
    lmdb_app_env: dict[str, str],
) -> None:
    app = Bank(env=lmdb_app_env)
    assert isinstance(app.recorder, LMDBApplicationRecorder)
    assert isinstance(app.mapper.transcoder, MsgpackTranscoder)
    account = Account(owner="alice")
    counterparty = uuid4()
    account.credit(100, counterparty)
    account.credit(250, counterparty)
    app.save(account)
    app.take_snapshot(account.id)
    account.credit(5, counterparty)
    app.save(account)
    app.close()

    reopened = Bank(env=lmdb_app_env)
    try:
        copy: Account = reopened.repository.get(account.id)
        assert (copy.owner, copy.balance_qq) == ("alice", 355)
        assert copy.counterparties == [counterparty] * 3
        assert copy.version == account.version == 4
        assert copy.created_on == account.created_on
        assert copy.modified_on == account.modified_on
        notifications = reopened.notification_log.select(start=1, limit=10)
        assert [n.id for n in notifications] == [1, 2, 3, 4]
        state = reopened.mapper.transcoder.decode(notifications[1].state)
        assert state["amount_qq"] == 100
        assert state["counterparty"] == counterparty
        assert isinstance(state["timestamp"], datetime)
        assert reopened.snapshots is not None
        assert len(list(reopened.snapshots.get(account.id))) == 1
        copy.credit(1, counterparty)
        reopened.save(copy)
        assert reopened.recorder.max_notification_id() == 5
    finally:
        reopened.close()


def test_application_on_lmdb_rejects_a_stale_aggregate_version(bank: Bank) -> None:
    account = Account(owner="bob")
    bank.save(account)
    first: Account = bank.repository.get(account.id)
    second: Account = bank.repository.get(account.id)
    first.credit(1, uuid4())
    bank.save(first)
    second.credit(2, uuid4())
    with pytest.raises(IntegrityError):
        bank.save(second)
    assert bank.repository.get(account.id).balance_qq == 1
