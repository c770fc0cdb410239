"""Checkpoints and saved fold states of projections, and the runner's lock.

Checkpoint record (msgpack map under `ckpt:<name>@<ns>` in `rm_meta`):
`{"v": 1, "height": h, "hash": block hash at h, "seq": last seq of h,
"events": events folded since the namespace was reset}`. Saved fold states
(`rm_state`, key `s8(name) ns height`) hold `[block hash, last seq, blob]`:
the state at the checkpoint, written in the checkpoint's transaction, and a
few older ones kept for rewinds.
"""

from __future__ import annotations

import fcntl
import os
from typing import NamedTuple

from ledger.errors import LedgerError
from ledger.store.chain import ChainStore
from ledger.store.reader import where_is_block
from projections.readmodels import (
    CANONICAL,
    ReadModels,
    Txn,
    ckpt_key,
    read_u64,
    state_prefix,
    u64,
    unpack,
)


class Checkpoint(NamedTuple):
    """Where a projection stands: the last folded block (height -1: nothing yet)."""

    height: int
    hash: bytes
    seq: int
    events: int


NOTHING = Checkpoint(-1, b"", 0, 0)


def read_checkpoint(txn: Txn, rm: ReadModels, name: str, ns: int) -> Checkpoint:
    rec = rm.get_meta(txn, ckpt_key(name, ns))
    if rec is None:
        return NOTHING
    return Checkpoint(rec["height"], bytes(rec["hash"]), rec["seq"], rec["events"])


def get_checkpoint(rm: ReadModels, name: str, ns: int = CANONICAL) -> Checkpoint:
    """The checkpoint of a projection in a namespace (NOTHING if it never ran)."""
    return rm.read(lambda txn: read_checkpoint(txn, rm, name, ns))


def saved_state(rm: ReadModels, name: str, height: int, ns: int = CANONICAL) -> bytes | None:
    """A projection's saved fold state at `height`, if kept."""
    return rm.read(lambda txn: load_state(txn, rm, name, ns, height))


def put_checkpoint(txn: Txn, rm: ReadModels, name: str, ns: int,
                    ck: Checkpoint) -> None:
    rm.put_meta(txn, ckpt_key(name, ns), {"v": 1, "height": ck.height, "hash": ck.hash,
                                          "seq": ck.seq, "events": ck.events})


def saved_heights(txn: Txn, rm: ReadModels, name: str, ns: int) -> list[int]:
    """Heights of every saved fold state, ascending (keys only)."""
    pre = state_prefix(name, ns)
    cur = txn.cursor(rm.state)
    out: list[int] = []
    if not cur.set_range(pre):
        return out
    for key in cur.iternext(keys=True, values=False):
        if not key.startswith(pre):
            break
        out.append(read_u64(key, len(pre)))
    return out


def saved_states(txn: Txn, rm: ReadModels, name: str,
                  ns: int) -> list[tuple[int, bytes]]:
    """(height, block hash) of every saved fold state, ascending."""
    pre = state_prefix(name, ns)
    out = []
    for height in saved_heights(txn, rm, name, ns):
        raw = txn.get(pre + u64(height), db=rm.state)
        assert raw is not None
        out.append((height, bytes(unpack(raw)[0])))
    return out


def load_state(txn: Txn, rm: ReadModels, name: str, ns: int,
                height: int) -> bytes | None:
    raw = txn.get(state_prefix(name, ns) + u64(height), db=rm.state)
    return None if raw is None else bytes(unpack(raw)[2])


class RunnerLock:
    """Exclusive `flock` on `readmodels/runner.lock`: one runner (job) per read-model env.

    With a projection `name`, the lock of that one projection
    (`runner-<name>.lock`): a runner takes it inside the runner lock for each
    run, and a rebuild job's worker process (which works under its parent's
    runner lock) takes only it, so an orphaned worker finishing its last batch
    and the next job's worker never fold the same projection at once.
    """

    def __init__(self, rm: ReadModels, name: str | None = None) -> None:
        self.path = rm.path / ("runner.lock" if name is None else f"runner-{name}.lock")
        self._fd: int | None = None

    def acquire(self, *, wait: bool = True) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunnerLock:
        self.acquire(wait=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def verify_checkpoints(store: ChainStore, rm: ReadModels) -> list[tuple[int | None, str]]:
    """Check every projection checkpoint against the chain: (height, problem) pairs.

    A checkpoint must name a block the chain holds at its height: on the
    canonical chain (namespace 0), or on the archived branch its namespace
    names (or the canonical history below that branch's base). A checkpoint on
    a block a rollback archived is fine: the runner rewinds from it. Its saved
    fold state must decode. A read model that cannot be read is reported with
    the command that rebuilds it.
    """
    problems: list[tuple[int | None, str]] = []
    try:
        records = rm.read(lambda txn: [
            (bytes(k), unpack(v)) for k, v in txn.cursor(rm.meta) if bytes(k).startswith(b"ckpt:")])
    except LedgerError as exc:
        return [(None, str(exc))]
    for key, rec in records:
        label = key[5:].decode(errors="replace")
        try:
            name, ns_text = label.rsplit("@", 1)
            ns = int(ns_text)
            height, block_hash = int(rec["height"]), bytes(rec["hash"])
        except (ValueError, KeyError, TypeError):
            problems.append((None, f"read model checkpoint {label!r} does not decode; "
                             f"{rm.rebuild_hint()}"))
            continue
        if height < 0:
            continue
        if not _on_chain(store, ns, height, block_hash):
            problems.append((height, f"read model {name!r} (namespace {ns}) is checkpointed "
                             f"at height {height} on block {block_hash.hex()[:16]}, which no "
                             f"chain or archived branch holds; {rm.rebuild_hint()}"))
            continue
        def load(txn: Txn, n: str = name, s: int = ns, h: int = height) -> bytes | None:
            return load_state(txn, rm, n, s, h)

        try:
            rm.read(load)
        except LedgerError as exc:
            problems.append((height, str(exc)))
    return problems


def _on_chain(store: ChainStore, ns: int, height: int, block_hash: bytes) -> bool:
    return where_is_block(store, height, block_hash,
                          branches=None if ns == CANONICAL else [ns, None]) is not False
