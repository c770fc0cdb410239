"""The whole of `ledgerctl verify`, over either store: structure, signatures, snapshots,
read models, then re-execution.

One workflow the CLI and the Python API share (`verify`). On the LMDB ledger
(`verify_ledger`): the hash chain, events hashes and indexes, every signature
and journal pairing, every snapshot's bytes and the read models' checkpoints.
On a PostgreSQL replica (`ledger.store.pg.verify.verify_replica`): its hash
chain, events hashes, headers and index rows, then the same signature and
journal checks over the replicated signatures and journal. With `reexecute`, the IN events
are re-run through the state machine (`projections.reexecute`), in this
process, a process pool, or on Dask. The report is a JSON-able dict: `ok`, and
where not, the first failing `height` and `reason`, plus each part's findings.
"""

from __future__ import annotations

from typing import Any

from ledger.store.chain import ChainStore, verify_store
from ledger.store.reader import ChainReader, open_chain
from ledger.verification import verify_authority, verify_snapshots
from projections.checkpoints import verify_checkpoints
from projections.readmodels import ReadModels, readmodels_path


def verify(spec: str, *, branch: int | None = None, reexecute: bool = False,
           from_height: int | None = None, to_height: int | None = None, jobs: int = 1,
           scheduler: str | None = None, worker_store: str | None = None,
           progress: bool = False, trust_keys: list[str] | None = None) -> dict[str, Any]:
    """Verify the ledger at `spec` (a data directory or a replica URL); the report.

    `ok` False with `height` naming the first bad block when anything fails.
    """
    chain = open_chain(spec)
    try:
        doc = verify_structure(chain, branch=branch, progress=progress, trust_keys=trust_keys)
        if doc["ok"] and reexecute and branch is None:
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


def verify_structure(chain: ChainReader, *, branch: int | None = None, progress: bool = False,
                     guarded: bool = True, trust_keys: list[str] | None = None
                     ) -> dict[str, Any]:
    """`verify` without re-execution, on whichever store `chain` is: the LMDB ledger's
    whole check (`verify_ledger`) or a replica's (`verify_replica`)."""
    if isinstance(chain, ChainStore):
        return verify_ledger(chain, branch=branch, progress=progress, guarded=guarded,
                             trust_keys=trust_keys)
    from ledger.store.pg.chain import PgChain
    from ledger.store.pg.verify import verify_replica

    assert isinstance(chain, PgChain)
    # One snapshot for the whole walk: the structure, the signatures and the journal
    # pairing must all see the same replicated blocks while the replicator goes on.
    with chain.pinned():
        r = verify_replica(chain, branch=branch)
        doc: dict[str, Any] = {"store": "postgresql", "ok": r.ok, "height": r.height,
                               "reason": r.reason, "blocks": r.blocks, "events": r.events}
        if doc["ok"]:
            _check_signatures(chain, branch, doc)
    return _check_trusted(doc, trust_keys)


def verify_ledger(store: ChainStore, *, branch: int | None = None, progress: bool = False,
                  guarded: bool = True, trust_keys: list[str] | None = None
                  ) -> dict[str, Any]:
    """Verify the LMDB chain (or one archived branch); for the canonical chain also every
    snapshot's bytes and the read models' checkpoints.

    With `guarded` the walk runs in a child process: LMDB reading damaged pages
    can die of SIGBUS or SIGSEGV (a flipped page bound points outside the map),
    which no handler can catch; the child's death is then reported as damage.

    `trust_keys`: writer key files (or .pub) the auditor holds; the chain's writer
    keys must include one, so a chain rewritten from genesis with other keys fails
    at height 0 (signatures alone cannot tell: the rewriter signs with their own).
    """
    walked = _walk_guarded(store, branch, progress) if guarded else _walk(store, branch,
                                                                          progress)
    return _check_trusted({"store": "lmdb", **walked}, trust_keys)


def _check_trusted(doc: dict[str, Any], trust_keys: list[str] | None) -> dict[str, Any]:
    """Fail a verified chain whose writer keys include none of the auditor's `trust_keys`."""
    if doc["ok"] and trust_keys:
        from ledger.core.authority import key_id
        from ledger.keys import load_public

        trusted = {key_id(load_public(p)) for p in trust_keys}
        chain_writers = set(doc.get("signatures", {}).get("writer_keys", []))
        if not trusted & chain_writers:
            doc.update(ok=False, height=0, reason=(
                f"the chain's writer keys ({', '.join(sorted(chain_writers)) or 'none'}) "
                f"include none of the trusted keys ({', '.join(sorted(trusted))}): this is "
                "not the chain those keys wrote"))
    return doc


def _walk_guarded(store: ChainStore, branch: int | None, progress: bool) -> dict[str, Any]:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(store.path), branch, child, progress),
                       daemon=True)
    proc.start()
    child.close()
    try:
        doc: dict[str, Any] = parent.recv()
    except EOFError:
        proc.join()
        code = proc.exitcode if proc.exitcode is not None else 0
        if code >= 0:  # the child could not run at all (not killed by what it read)
            return _walk(store, branch, progress)
        return {"ok": False, "height": None, "blocks": 0, "events": 0,
                "reason": f"the store at {store.path} is damaged: reading it killed the "
                          f"verifying process (signal {-code}); restore it from a backup or "
                          "replica"}
    proc.join()
    if "error" in doc:
        from ledger.errors import StoreError

        raise StoreError(doc["error"])
    return doc


def _child(path: str, branch: int | None, conn: Any, progress: bool) -> None:
    from ledger.errors import LedgerError

    try:
        with ChainStore.open(path) as store:
            doc = _walk(store, branch, progress)
    except LedgerError as exc:
        doc = {"error": str(exc)}
    conn.send(doc)
    conn.close()


def _walk(store: ChainStore, branch: int | None, progress: bool = False) -> dict[str, Any]:
    report = _verify_with_progress(store, branch, enabled=progress)
    doc: dict[str, Any] = {"ok": report.ok, "height": report.height, "reason": report.reason,
                           "blocks": report.blocks, "events": report.events}
    if not report.ok:
        return doc
    if not _check_signatures(store, branch, doc):
        return doc
    if branch is None:
        snaps = verify_snapshots(store)
        doc["snapshots"] = {"checked": len(store.snapshots()),
                            "problems": [p.reason for p in snaps]}
        rm_problems = _readmodels(store)
        doc["readmodels"] = {"problems": [p for _, p in rm_problems]}
        first = (snaps[:1] and (snaps[0].height, snaps[0].reason)) or \
            (rm_problems[:1] and rm_problems[0])
        if first:
            doc.update(ok=False, height=first[0], reason=first[1])
    return doc


def _check_signatures(store: ChainReader, branch: int | None, doc: dict[str, Any]) -> bool:
    """Add the authority check (`verify_authority`) to `doc`; False (and `doc` failed at
    the first problem's height) if it found any."""
    auth = verify_authority(store, branch=branch)
    doc["signatures"] = {
        "signed": auth["signed"],
        "status": ("every block and operator command signed" if auth["signed"] else
                   "UNSIGNED: a legacy chain created without keys; nothing here is signed"),
        "writer_keys": auth["writer_keys"], "operator_keys": auth["operator_keys"],
        "problems": [p.reason for p in auth["problems"]]}
    if auth["problems"]:
        first = auth["problems"][0]
        doc.update(ok=False, height=first.height, reason=first.reason)
        return False
    return True


def _readmodels(store: ChainStore) -> list[tuple[int | None, str]]:
    path = readmodels_path(store.path)
    if not (path / "data.mdb").exists():
        return []
    try:
        rm = ReadModels.open(store.path, readonly=True)
    except Exception as exc:  # any failure to open them is damage to report, not a crash
        return [(None, f"the read models at {path} cannot be opened ({type(exc).__name__}: "
                 f"{exc}); they hold nothing the chain does not: rebuild them with `rm -rf "
                 f"{path} && ledgerctl rebuild --from genesis --data {store.path}`")]
    with rm:
        return verify_checkpoints(store, rm)


def _verify_with_progress(store: ChainStore, branch: int | None, *, enabled: bool) -> Any:
    """verify_store with a progress bar of blocks on stderr (for people)."""
    from projections.progress import ProgressBar

    if branch is None:
        first, last = 0, store.head.height
    else:
        rec = store.branch(branch)
        first, last = int(rec["first_height"]), int(rec["last_height"])
    bar = ProgressBar(enabled, "verify", last - first + 1, unit="blocks")
    done = [first - 1]

    def step(height: int) -> None:
        bar.advance(height - done[0])
        done[0] = height

    try:
        return verify_store(store, branch=branch, progress=step)
    finally:
        bar.close()
