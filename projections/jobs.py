"""Rebuild jobs and catch-up: what `ledgerctl rebuild` and the audit queries run.

`rebuild(store, rm, from_=..., to_height=...)` runs every projection (the
exchange state, then the audit read models) with the runner, so it checkpoints
as it goes and a killed job resumes:

- `from_="genesis"` starts every projection over from block 0 (entries,
  saved states and checkpoints of the canonical namespace are dropped in one
  transaction, and a job record is written with them). Re-running the same
  command after a kill finds the unfinished job record and resumes it instead
  of starting over; the record is removed when the job completes.
- `from_="snapshot"` (the default) lets the exchange state start from the
  newest chain snapshot at or below the target when that is ahead of its own
  checkpoint, and the audit read models resume from theirs. A target below the
  exchange projection's checkpoint is rebuilt in memory from the nearest
  snapshot (the checkpoint never moves back).

With enough to fold (`projections.worker`), the audit read models fold in a
second process at the same time as the exchange state: the job then takes
the longer of the two folds instead of their sum.

The report gives the state hash reached and whether it matches the header;
a mismatch stops the job at that height (`match` False, nothing of the
exchange state past it committed; the audit read models, which do not depend
on the state hash, keep what their worker committed before it was stopped).
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from ledger.errors import CommandInvalid
from ledger.store.chain import ChainStore
from ledger.store.reader import ChainReader
from projections.audit_models import AuditProjection
from projections.exchange_state import (
    FROM_GENESIS,
    FROM_SNAPSHOT,
    ExchangeStateProjection,
    StateHashMismatch,
    check_height,
)
from projections.exchange_state import (
    rebuild as rebuild_in_memory,
)
from projections.readmodels import CANONICAL, ReadModels, Txn
from projections.reexecute import fold_interval_task, plan_intervals
from projections.runner import BATCH_EVENTS, Runner, RunResult, get_checkpoint
from projections.worker import AuditWorker, worth_a_worker

JOB_KEY = b"job:rebuild"
log = structlog.get_logger("projections.jobs")


def catch_up(store: ChainReader, rm: ReadModels, *, to_height: int | None = None,
             progress: bool = False, wait: bool = True,
             exchange: bool = True) -> list[RunResult]:
    """Fold new blocks into the audit read models, then (with `exchange`) into the
    exchange-state projection, whose saved state serves time travel near its checkpoint.

    Returns nothing if another runner is busy and `wait` is False (the read models
    then answer as of their checkpoints). A state-hash mismatch in the chain stops
    only the exchange projection (logged); the audit read models do not depend on it.
    """
    runner = Runner(store, rm, progress=progress)
    if not runner.lock(wait=wait):
        return []
    try:
        runs = [runner.run(AuditProjection(), to_height=to_height)]
        if exchange:
            try:
                runs.append(runner.run(ExchangeStateProjection(), to_height=to_height))
            except StateHashMismatch as exc:
                log.warning("exchange-state projection stopped", height=exc.height,
                            reason=exc.reason)
        return runs
    finally:
        runner.unlock()


def rebuild(store: ChainStore, rm: ReadModels, *, from_: str = FROM_SNAPSHOT,
            to_height: int | None = None, progress: bool = False,
            batch_events: int = BATCH_EVENTS, parallel: bool | None = None,
            scheduler: str | None = None, worker_store: str | None = None,
            workers: int = 2) -> dict[str, Any]:
    """Run the rebuild job (see module docstring); return its report.

    `parallel`: fold the audit read models in a worker process while this one
    folds the exchange state (default: when there is enough to fold and a
    second core, `worth_a_worker`). `scheduler` ("local" or "tcp://host:port"):
    fold the exchange state's snapshot intervals on a Dask cluster instead,
    every state hash checked by the workers, which read the log from
    `worker_store` (default: this data directory); the last interval's state
    becomes the projection's checkpoint. Raises `CommandInvalid` for a bad
    `from_` or height, `VerificationFailed` if stored events fail their
    block's events hash.
    """
    if from_ not in (FROM_GENESIS, FROM_SNAPSHOT):
        raise CommandInvalid(f"--from must be genesis or snapshot, was {from_!r}")
    if batch_events < 1:
        raise CommandInvalid(f"--batch-events must be 1 or more, was {batch_events}")
    if store.head.height < 0:
        raise CommandInvalid("the ledger has no blocks yet")
    target = check_height(store, store.head.height if to_height is None else to_height)
    t0 = time.perf_counter()
    report: dict[str, Any] = {"from": from_, "target_height": target, "resumed": False}
    with Runner(store, rm, progress=progress, batch_events=batch_events) as runner:
        exchange = ExchangeStateProjection(use_chain_snapshots=from_ == FROM_SNAPSHOT)
        audit = AuditProjection()
        if from_ == FROM_GENESIS:
            report["resumed"] = _start_genesis_job(rm, target)
        runs: list[RunResult] = []
        ex_ck = get_checkpoint(rm, exchange.name)
        if parallel is None:
            todo = store.block(target).last_seq - get_checkpoint(rm, audit.name).seq
            parallel = worth_a_worker(todo)
        worker = AuditWorker(store.path, target, batch_events) if parallel else None
        try:
            if scheduler is not None:
                report.update(_exchange_on_dask(store, runner, exchange, from_, target,
                                                scheduler, worker_store or store.spec,
                                                workers))
            elif from_ == FROM_SNAPSHOT and ex_ck.height > target:
                mem = rebuild_in_memory(store, FROM_SNAPSHOT, target)
                report.update(height=mem.height, state_hash=mem.state_hash.hex(),
                              header_state_hash=mem.header_state_hash.hex(), match=mem.match,
                              exchange={"in_memory": True, **mem.to_json()})
            else:
                run = runner.run(exchange, to_height=target)
                runs.append(run)
                got = exchange.engine.state_hash()
                header = store.block(run.height).state_hash
                report.update(height=run.height, state_hash=got.hex(),
                              header_state_hash=header.hex(), match=got == header,
                              exchange=run.to_json())
            if worker is not None:
                runs.append(worker.result())
                worker = None
            else:
                runs.append(runner.run(audit, to_height=target))
            report["audit"] = {**runs[-1].to_json(), "worker_process": parallel}
        except StateHashMismatch as exc:
            report.update(height=exc.height, state_hash=exc.got.hex(),
                          header_state_hash=exc.expected.hex(), match=False,
                          reason=exc.reason)
            return _finish(report, runs, t0)
        finally:
            if worker is not None:
                worker.stop()
        if from_ == FROM_GENESIS:
            rm.write(lambda txn: txn.delete(JOB_KEY, db=rm.meta))
    return _finish(report, runs, t0)


def _exchange_on_dask(store: ChainStore, runner: Runner, exchange: ExchangeStateProjection,
                      from_: str, target: int, scheduler: str, spec: str,
                      workers: int) -> dict[str, Any]:
    """Fold the exchange state's snapshot intervals up to `target` on Dask (see `rebuild`);
    raises `StateHashMismatch` at the first height a worker found one."""
    from projections.dask_jobs import run_tasks

    lo = 0 if from_ == FROM_GENESIS else target
    intervals = plan_intervals(store, lo, target)
    t0 = time.perf_counter()
    results = run_tasks(scheduler, fold_interval_task,
                        [(spec, s, e, e == target) for s, e in intervals], workers=workers)
    bad = [r["mismatch"] for r in results if "mismatch" in r]
    if bad:
        first = min(bad, key=lambda m: int(m["height"]))
        raise StateHashMismatch(int(first["height"]), bytes.fromhex(first["state_hash"]),
                                bytes.fromhex(first["header_state_hash"]))
    last = next(r for r in results if r["end"] == target)
    exchange.load(last["state"])
    runner.adopt(exchange, target)
    got = exchange.engine.state_hash()
    header = store.block(target).state_hash
    events = sum(int(r["events"]) for r in results)
    seconds = time.perf_counter() - t0
    return {"height": target, "state_hash": got.hex(), "header_state_hash": header.hex(),
            "match": got == header,
            "exchange": {"scheduler": scheduler, "worker_store": spec,
                         "intervals": len(intervals), "events": events,
                         "blocks": sum(int(r["blocks"]) for r in results),
                         "seconds": round(seconds, 3),
                         "events_per_s": round(events / seconds) if seconds > 0 else 0}}


def _finish(report: dict[str, Any], runs: list[RunResult], t0: float) -> dict[str, Any]:
    # Each projection reads the same blocks: the job's rate is chain events per second.
    seconds = time.perf_counter() - t0
    events = max((r.events for r in runs), default=0)
    report["events"] = events
    report["seconds"] = round(seconds, 3)
    report["events_per_s"] = round(events / seconds) if seconds > 0 else 0
    return report


def _start_genesis_job(rm: ReadModels, target: int) -> bool:
    """Reset the canonical projections for a from-genesis job, unless one is unfinished.

    Returns True when an unfinished job was found (it is resumed, not reset).
    """

    def fn(txn: Txn) -> bool:
        job = rm.get_meta(txn, JOB_KEY)
        if job is not None and job.get("from") == FROM_GENESIS:
            return True
        rm.drop_namespace(txn, CANONICAL)  # entries, saved states and checkpoints
        rm.put_meta(txn, JOB_KEY, {"from": FROM_GENESIS, "target": target})
        return False

    return rm.write(fn)
