"""Snapshot intervals on a Dask cluster: re-execution and rebuild beyond one machine.

A chain cut at its snapshots is a list of independent intervals (each starts
from its snapshot, whose state hash is checked against the header), so
`verify --reexecute` and `rebuild` hand them to Dask workers
(`dask.distributed`): `--scheduler tcp://host:port` joins a running cluster,
`--scheduler local` starts a `LocalCluster` of worker processes on this
machine (loopback only, no dashboard) for the duration of the job.

Workers read the log themselves, from the store spec they are given: a
PostgreSQL replica URL, or a data directory (the job's own, or a shared copy
mounted at the same path on the workers). Each worker process opens that
store once and keeps it (`reexecute.worker_store`).

Task functions return plain data. A ledger error raised on a worker comes
back as data too and is raised again here with its own type and message
(exception pickling would lose the arguments of `VerificationFailed`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ledger.errors import CommandInvalid, LedgerError, StoreUnavailable, VerificationFailed

LOCAL = "local"


@contextmanager
def dask_client(scheduler: str, *, workers: int = 2) -> Iterator[Any]:
    """A `distributed.Client` for `scheduler` ("local" or "tcp://host:port"), closed after.

    Raises `CommandInvalid` for another form, `StoreUnavailable` if the scheduler
    cannot be reached, `LedgerError` if dask.distributed is not installed.
    """
    dist = _distributed()
    Client, LocalCluster = dist.Client, dist.LocalCluster
    if scheduler == LOCAL:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if not scheduler.startswith(("tcp://", "tls://")):
        raise CommandInvalid(f"--scheduler must be 'local' or a scheduler address such as "
                             f"tcp://host:8786, was {scheduler!r}")
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise StoreUnavailable(f"cannot reach the Dask scheduler at {scheduler}: {exc}; is "
                               "`dask scheduler` running there?") from None
    with client:
        yield client


def run_tasks(scheduler: str, fn: Callable[..., dict[str, Any]], args: Sequence[tuple[Any, ...]],
              *, workers: int = 2, on_result: Callable[[dict[str, Any]], None] | None = None,
              ) -> list[dict[str, Any]]:
    """Run `fn(*a)` for each `a` on the cluster; results in completion order.

    `fn` must be importable by the workers and return `{"error": ...}` (see
    `guarded`) rather than raise a ledger error.
    """
    as_completed = _distributed().as_completed
    out: list[dict[str, Any]] = []
    with dask_client(scheduler, workers=workers) as client:
        futures = [client.submit(fn, *a, pure=False) for a in args]
        for fut in as_completed(futures):
            res = fut.result()
            reraise(res)
            out.append(res)
            if on_result is not None:
                on_result(res)
    return out


def _distributed() -> Any:
    """The dask.distributed module (untyped, hence Any), or a clear error."""
    try:
        return importlib.import_module("distributed")
    except ModuleNotFoundError:
        raise LedgerError("--scheduler needs dask.distributed: pip install "
                          "'perpledger[distributed]'") from None


def guarded(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a task body; a ledger error becomes data (`reraise` raises it again)."""
    try:
        return fn()
    except VerificationFailed as exc:
        return {"error": "verify", "height": exc.height, "reason": exc.reason}
    except LedgerError as exc:
        return {"error": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}


def reraise(res: dict[str, Any]) -> None:
    """Raise the ledger error a task returned as data, if any."""
    kind = res.get("error")
    if kind is None:
        return
    if kind == "verify":
        raise VerificationFailed(res["height"], res["reason"])
    err = LedgerError(f"a Dask worker failed: {res['message']}")
    err.exit_code = int(res.get("exit_code", 1))
    raise err
