"""`ledgerctl verify`: one workflow over either store, structure first, then re-execution.

The structural walk is the store's own (`ledger.store.chain.verify_store` for
LMDB, `ledger.store.pg.verify.verify_replica` for a PostgreSQL replica): hash
chain, events hashes, headers, index entries; it names the first bad height.
With `reexecute`, the IN events are re-run through the state machine
(`projections.reexecute`), in this process, a process pool, or on Dask.
"""

from __future__ import annotations

from typing import Any

from ledger.store.chain import ChainStore, verify_store
from ledger.store.reader import ChainReader, open_chain
from ledger.store.verify import VerifyReport


def verify_structure(chain: ChainReader, *, branch: int | None = None,
                     progress: bool = False) -> VerifyReport:
    """The store's own structural walk of the canonical chain or an archived branch.

    With `progress`, a bar of blocks on stderr (LMDB; a replica's walk is one query).
    """
    if isinstance(chain, ChainStore):
        return _verify_lmdb(chain, branch, progress)
    from ledger.store.pg.chain import PgChain
    from ledger.store.pg.verify import verify_replica

    assert isinstance(chain, PgChain)
    return verify_replica(chain, branch=branch)


def structure_json(chain: ChainReader, *, branch: int | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """The structural walk as `ledgerctl verify --json` prints it (without --reexecute)."""
    report = verify_structure(chain, branch=branch, progress=progress)
    return {"store": "postgresql" if not isinstance(chain, ChainStore) else "lmdb",
            "ok": report.ok, "height": report.height, "reason": report.reason,
            "blocks": report.blocks, "events": report.events}


def verify(spec: str, *, branch: int | None = None, reexecute: bool = False,
           from_height: int | None = None, to_height: int | None = None, jobs: int = 1,
           scheduler: str | None = None, worker_store: str | None = None,
           progress: bool = False) -> dict[str, Any]:
    """Verify the ledger at `spec` (a data directory or a replica URL); the report.

    `ok` False with `height` naming the first bad block when anything fails.
    """
    chain = open_chain(spec)
    try:
        doc = structure_json(chain, branch=branch, progress=progress)
        if doc["ok"] and reexecute:
            from projections.reexecute import reexecute as run_reexecute

            rx = run_reexecute(chain, from_height=from_height, to_height=to_height,
                               jobs=jobs, progress=progress, scheduler=scheduler,
                               worker_store=worker_store)
            doc["reexecute"] = rx
            if not rx["ok"]:
                doc.update(ok=False, height=rx["height"], reason=rx["reason"])
        return doc
    finally:
        chain.close()


def _verify_lmdb(store: ChainStore, branch: int | None, progress: bool) -> VerifyReport:
    from projections.progress import ProgressBar

    if branch is None:
        first, last = 0, store.head.height
    else:
        rec = store.branch(branch)
        first, last = int(rec["first_height"]), int(rec["last_height"])
    bar = ProgressBar(progress, "verify", last - first + 1, unit="blocks")
    done = [first - 1]

    def step(height: int) -> None:
        bar.advance(height - done[0])
        done[0] = height

    try:
        return verify_store(store, branch=branch, progress=step)
    finally:
        bar.close()
