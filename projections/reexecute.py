"""`ledgerctl verify --reexecute`: re-run every block's IN events through the state machine.

The chain-style determinism check (SPEC 12, invariant 9): for each block, the
stored IN events (commands and facts as received) go through a fresh
`Engine.run_block` (decide and evolve), started from the snapshot before the
block, and the OUT envelopes it produces must equal the stored ones byte for
byte (same seqs, same encoding), and the state hash the header's.

The chain is cut at its snapshots into intervals (snapshot s, next snapshot];
each interval is independent (it starts from its snapshot, whose hash is
checked against the header), so intervals run in parallel processes
(`jobs`, multiprocessing with spawn: each worker opens the store read-only
and reads its own MVCC snapshots). The report names the first divergent
height and what differs: the seq, and the expected against the produced
event type (or payload, or state hash).
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.core.engine import Engine
from ledger.errors import CommandInvalid, VerificationFailed
from ledger.events.codec import Envelope, decode_verified, encode_trusted, envelope_json
from ledger.events.record import field_names
from ledger.store.blocks import BlockHeader, check_events
from ledger.store.chain import ChainStore
from ledger.store.reads import block_bytes
from ledger.store.reads import blocks as read_blocks
from projections.exchange_state import apply_checked
from projections.progress import ProgressBar
from projections.readmodels import Txn, run_read

#: IN events have type codes below this (ledger.events.record).
FIRST_OUT_CODE = 64


@dataclass
class IntervalResult:
    """What re-executing one interval (start, end] found."""

    start: int
    first: int
    end: int
    blocks: int = 0
    events: int = 0
    divergence: dict[str, Any] | None = field(default=None)


def reexecute(store: ChainStore, *, from_height: int | None = None,
              to_height: int | None = None, jobs: int = 1,
              progress: bool = False) -> dict[str, Any]:
    """Re-execute blocks [from_height, to_height] (default: the whole chain).

    Returns `{"ok", "height", "reason", ...stats}`; on a divergence, `height`
    is the first divergent block and `divergence` says what differs. Raises
    `CommandInvalid` for a bad range or `jobs`, `VerificationFailed` if a
    snapshot does not restore to its header's state hash.
    """
    head = store.head.height
    lo = 0 if from_height is None else from_height
    hi = head if to_height is None else to_height
    if jobs < 1:
        raise CommandInvalid(f"--jobs must be 1 or more, was {jobs}")
    if head < 0 or not 0 <= lo <= hi <= head:
        raise CommandInvalid(f"re-execution range {lo}..{hi} is not within the chain 0..{head}")
    t0 = time.perf_counter()
    intervals = plan_intervals(store, lo, hi)
    total = store.block(hi).last_seq - (store.block(lo - 1).last_seq if lo > 0 else 0)
    bar = ProgressBar(progress, "re-execute", total)
    results: list[IntervalResult] = []
    try:
        if jobs == 1 or len(intervals) == 1:
            for start, end in intervals:
                r = run_interval(store, start, max(start + 1, lo), end)
                results.append(r)
                bar.advance(r.events)
        else:
            ctx = multiprocessing.get_context("spawn")
            args = [(str(store.path), s, max(s + 1, lo), e) for s, e in intervals]
            with ctx.Pool(min(jobs, len(intervals))) as pool:
                for r in pool.imap_unordered(_worker, args):
                    results.append(r)
                    bar.advance(r.events)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    events = sum(r.events for r in results)
    doc: dict[str, Any] = {"ok": True, "height": None, "reason": "ok", "from_height": lo,
                           "to_height": hi, "blocks": sum(r.blocks for r in results),
                           "events": events, "intervals": len(intervals), "jobs": jobs,
                           "seconds": round(seconds, 3),
                           "events_per_s": round(events / seconds) if seconds > 0 else 0}
    bad = [r.divergence for r in results if r.divergence is not None]
    if bad:
        first = min(bad, key=lambda d: (d["height"], d.get("seq") or 0))
        doc.update(ok=False, height=first["height"], reason=first["reason"], divergence=first)
    return doc


def plan_intervals(store: ChainStore, lo: int, hi: int) -> list[tuple[int, int]]:
    """(start, end] pieces covering blocks lo..hi, each starting at a snapshot (or -1)."""
    snaps = [s.height for s in store.snapshots()]
    starts = [max([s for s in snaps if s <= lo - 1], default=-1)]
    starts += [s for s in snaps if lo <= s < hi]
    ends = starts[1:] + [hi]
    return list(zip(starts, ends, strict=True))


_STORES: dict[str, ChainStore] = {}


def _worker(args: tuple[str, int, int, int]) -> IntervalResult:
    path, start, first, end = args
    store = _STORES.get(path)
    if store is None:
        store = _STORES[path] = ChainStore.open(Path(path))
    return run_interval(store, start, first, end)


def run_interval(store: ChainStore, start: int, first: int, end: int) -> IntervalResult:
    """Re-execute blocks [first, end] from the snapshot at `start` (-1: genesis); blocks
    between the snapshot and `first` are only folded (state hash checked)."""
    result = IntervalResult(start, first, end)
    if start < 0:
        engine = Engine()
    else:
        engine = Engine.from_snapshot(store.snapshot(start).data)
        if engine.state_hash() != store.block(start).state_hash:
            raise VerificationFailed(start, "snapshot does not restore to the header's "
                                     "state hash")
    for hdr, datas in _blocks(store, start + 1, end):
        if hdr.height < first:
            apply_checked(engine, hdr, datas)
            continue
        result.blocks += 1
        result.events += hdr.count
        divergence = _reexecute_block(engine, hdr, datas)
        if divergence is not None:
            result.divergence = divergence
            break
    return result


def _blocks(store: ChainStore, lo: int, hi: int) -> list[tuple[BlockHeader, list[bytes]]]:
    """Headers and stored bytes of blocks [lo, hi] in one MVCC snapshot, hash-checked."""

    def read(txn: Txn) -> list[tuple[BlockHeader, list[bytes]]]:
        return block_bytes(txn, store.dbs, list(read_blocks(txn, store.dbs, lo, hi, None)),
                           None)

    blocks = run_read(store.shared_env, read)
    for hdr, datas in blocks:
        check_events(hdr, datas)
    return blocks


def _reexecute_block(engine: Engine, hdr: BlockHeader,
                     datas: list[bytes]) -> dict[str, Any] | None:
    """Run one block's IN events; the first difference from the stored block, or None."""
    stored = [decode_verified(d, hdr.first_seq + i) for i, d in enumerate(datas)]
    ins = [e.event for e in stored if e.event.TYPE_CODE < FIRST_OUT_CODE]
    h = hdr.height
    try:
        result = engine.run_block(h, ins)
    except Exception as exc:  # a block the engine refuses is itself a divergence
        return {"height": h, "seq": None, "reason": f"block {h}: the engine refused the "
                f"stored inputs ({type(exc).__name__}: {exc})"}
    produced = result.envelopes
    for i in range(max(len(stored), len(produced))):
        exp = stored[i] if i < len(stored) else None
        got = produced[i] if i < len(produced) else None
        exp_bytes = datas[i] if exp is not None else None
        got_bytes = _encode(got) if got is not None else None
        if exp_bytes == got_bytes:
            continue
        seq = (exp or got).seq  # type: ignore[union-attr]
        return {"height": h, "seq": seq,
                "expected_type": exp.type_name if exp is not None else None,
                "got_type": got.type_name if got is not None else None,
                "expected": envelope_json(exp) if exp is not None else None,
                "got": envelope_json(got) if got is not None else None,
                "reason": _what_differs(h, seq, exp, got)}
    if result.state_hash != hdr.state_hash:
        return {"height": h, "seq": None, "reason": f"block {h}: re-executed state hash "
                f"{result.state_hash.hex()[:16]} differs from the header's "
                f"{hdr.state_hash.hex()[:16]}"}
    return None


def _encode(env: Envelope) -> bytes:
    return encode_trusted(env.height, env.cause, env.event)


def _what_differs(h: int, seq: int, exp: Envelope | None, got: Envelope | None) -> str:
    if exp is None:
        return f"block {h}: seq {seq}: re-execution produced an extra {got.type_name}"  # type: ignore[union-attr]
    if got is None:
        return f"block {h}: seq {seq}: stored {exp.type_name} was not produced"
    if exp.type_name != got.type_name:
        return f"block {h}: seq {seq}: expected {exp.type_name}, got {got.type_name}"
    fields = [f for f in field_names(type(exp.event))
              if getattr(exp.event, f) != getattr(got.event, f)]
    if exp.cause != got.cause:
        fields.insert(0, "cause")
    return (f"block {h}: seq {seq}: {exp.type_name} differs in "
            f"{', '.join(fields) or 'its encoding'}")
