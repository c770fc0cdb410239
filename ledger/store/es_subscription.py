"""Subscriptions to an LMDB notification log: woken in-process, polled across processes.

LMDB has no LISTEN/NOTIFY. A write in this process wakes the subscriptions of
its log at once (`notify`); a write by another process is seen by polling the
head of the log every `POLL_INTERVAL_MS`, which costs one read transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, ListenNotifySubscription

#: How often a subscription re-reads the head, to see writes made by other processes.
POLL_INTERVAL_MS = 50

#: A notification log in this process: (data directory, sub-database name).
LogKey = tuple[str, bytes]

_listeners: dict[LogKey, set[threading.Event]] = {}
_listeners_lock = threading.Lock()


def notify(log: LogKey) -> None:
    """Wake every subscription in this process to the given notification log."""
    with _listeners_lock:
        for listener in _listeners.get(log, ()):
            listener.set()


def _listen(log: LogKey, listener: threading.Event) -> None:
    with _listeners_lock:
        _listeners.setdefault(log, set()).add(listener)


def _unlisten(log: LogKey, listener: threading.Event) -> None:
    with _listeners_lock:
        listeners = _listeners.get(log)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del _listeners[log]


class LMDBSubscription(ListenNotifySubscription[ApplicationRecorder]):
    """Iterate over a recorder's notifications after `gt`, blocking for new ones."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        log: LogKey,
        gt: int | None = None,
        topics: Sequence[str] = (),
    ) -> None:
        # Set before the base class starts its pull thread, which may call stop().
        self._log = log
        self._poll_stopped = threading.Event()
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        _listen(log, self._has_been_notified)
        if self._has_been_stopped:  # stopped while registering: don't leak the listener
            _unlisten(log, self._has_been_notified)
        # A write between the base class's first pull and the registration above
        # woke nobody, and polling starts from the head after it: pull once more.
        self._has_been_notified.set()
        self._poll_thread = threading.Thread(target=self._poll, daemon=True)
        self._poll_thread.start()

    def stop(self) -> None:
        """Stop the subscription, its pull thread and its polling."""
        super().stop()
        self._poll_stopped.set()
        _unlisten(self._log, self._has_been_notified)

    def __exit__(self, *args: object, **kwargs: Any) -> None:
        try:
            super().__exit__(*args, **kwargs)
        finally:
            self._poll_thread.join()

    def _poll(self) -> None:
        try:
            seen = self._recorder.max_notification_id()
            while not self._poll_stopped.wait(POLL_INTERVAL_MS / 1000):
                head = self._recorder.max_notification_id()
                if head != seen:
                    seen = head
                    self._has_been_notified.set()
        except BaseException as e:
            if self._thread_error is None:
                self._thread_error = e
            self.stop()
