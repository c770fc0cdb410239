"""A rebuild job's second process: folds the audit read models beside the exchange state.

The two projections of a rebuild read the same blocks and share nothing but
the read-model environment, whose LMDB write lock serialises their commits.
On a machine with two cores, folding them at once costs the longer of the
two instead of their sum. The job process keeps the runner lock; the worker
runs under it (`Runner(under_parent=...)`), takes its projection's own lock,
commits batch by batch exactly as in one process, and stops between batches
if the job process dies (a killed job resumes from the commits of both).

The worker is a fresh interpreter (`python -m projections.worker`): LMDB
environments must not cross a `fork`, and unlike multiprocessing's `spawn` it
does not re-import the caller's main module. Its one line of JSON on stdout
is the run's result or the error it stopped with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger.errors import StoreError, VerificationFailed
from projections.runner import RunResult

#: Below this many events to fold, starting a process costs more than it saves.
PARALLEL_MIN_EVENTS = 200_000


def _main(data_dir: str, target: int, batch_events: int, parent: int) -> dict[str, Any]:
    """The worker's body: fold the audit projection to `target`; the outcome as JSON."""
    from ledger.store.chain import ChainStore
    from projections.audit_models import AuditProjection
    from projections.readmodels import ReadModels
    from projections.runner import Runner

    try:
        with ChainStore.open(data_dir) as store, ReadModels.open(data_dir) as rm:
            runner = Runner(store, rm, batch_events=batch_events, under_parent=parent)
            res = runner.run(AuditProjection(), to_height=target)
    except VerificationFailed as exc:
        return {"outcome": "verify", "height": exc.height, "reason": exc.reason}
    except Exception as exc:  # reported to the job, which raises it there
        return {"outcome": "error", "error": type(exc).__name__, "message": str(exc)}
    return {"outcome": "ok", "run": [res.projection, res.ns, res.start_height, res.height,
                                     res.hash.hex(), res.events, res.blocks, res.seconds,
                                     res.rewound_to]}


class AuditWorker:
    """The audit projection folding in a child process (see module docstring)."""

    def __init__(self, data_dir: Path, target: int, batch_events: int) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "projections.worker", str(data_dir), str(target),
             str(batch_events), str(os.getpid())],
            stdout=subprocess.PIPE)  # its logs go to the job's stderr

    def result(self) -> RunResult:
        """Wait for the worker; its run, or the error it stopped with, raised here."""
        out, _ = self._proc.communicate()
        try:
            doc = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise StoreError(f"the audit worker process died (exit code "
                             f"{self._proc.returncode}; its error output is above); run the "
                             "job again to resume") from None
        if doc["outcome"] == "ok":
            run = doc["run"]
            run[4] = bytes.fromhex(run[4])
            return RunResult(*run)
        if doc["outcome"] == "verify":
            raise VerificationFailed(doc["height"], doc["reason"])
        raise StoreError(f"the audit worker failed: {doc['error']}: {doc['message']}")

    def stop(self) -> None:
        """Stop the worker (its commits so far stand: each batch is one transaction)."""
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.communicate()


def worth_a_worker(events_to_fold: int) -> bool:
    """True when a second process pays for itself: enough work and a second core."""
    return events_to_fold >= PARALLEL_MIN_EVENTS and (os.cpu_count() or 1) >= 2


__all__ = ["AuditWorker", "PARALLEL_MIN_EVENTS", "worth_a_worker"]


if __name__ == "__main__":
    print(json.dumps(_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
