"""`verify` beyond the chain walk: snapshots (and, with signatures, authority).

`verify_store` (ledger/store/verify.py) walks blocks, events and indexes.
What it cannot see from stored bytes alone is checked here, above both the
store and the core:

- every snapshot: its bytes restore to a state whose hash equals both the
  hash recorded beside it and the state hash in the block header at its
  height (a flipped snapshot byte is found here, not later by a query that
  restores it and fails);
- the authority (`verify_authority`): every block's writer signature, every
  privileged command's operator signature, and the journal pairing. Someone
  who can write the files but holds no key cannot re-sign what they change:
  a re-hashed forged chain is found at its first forged height.

Each check returns `Problem`s; the first one's height is the report's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import lmdb

from ledger.core.authority import PRIVILEGED, check_block, signature_ok
from ledger.core.engine import Engine
from ledger.errors import LedgerError, NotFound
from ledger.events import commands as c
from ledger.events import outcomes as o
from ledger.events.codec import CODE_AT, decode
from ledger.events.enums import KeyRole
from ledger.events.record import type_code
from ledger.store.blocks import BlockHeader
from ledger.store.chain import ChainStore
from ledger.store.failures import DAMAGE
from ledger.store.reader import ChainReader, where_is_block
from ledger.store.signatures import block_message


class Problem(NamedTuple):
    """One thing verify found wrong: where, and what."""

    height: int | None
    reason: str


def verify_snapshots(store: ChainStore, *,
                     progress: Callable[[int], None] | None = None) -> list[Problem]:
    """Restore every snapshot and check its state hash against its record and its block."""
    problems: list[Problem] = []
    for info in store.snapshots():
        h = info.height
        try:
            snap = store.snapshot(h)
            header = store.block(h)
        except NotFound:
            problems.append(Problem(h, f"snapshot at height {h} has no block at its height"))
            continue
        except (LedgerError, *DAMAGE) as exc:
            problems.append(Problem(h, f"snapshot at height {h} cannot be read: {exc}"))
            continue
        if snap.state_hash != header.state_hash:
            problems.append(Problem(h, f"snapshot at height {h}: its recorded state hash "
                                    "differs from the block header's"))
            continue
        try:
            got = Engine.from_snapshot(snap.data).state_hash()
        except (lmdb.Error, LedgerError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, UnicodeDecodeError) as exc:
            # Bytes that do not even decode to a state: damaged.
            problems.append(Problem(h, f"snapshot at height {h}: its bytes do not restore "
                                    f"to a state ({type(exc).__name__}: {exc})"))
            continue
        if got != snap.state_hash:
            problems.append(Problem(h, f"snapshot at height {h}: its bytes restore to state "
                                    f"hash {got.hex()[:16]}, recorded "
                                    f"{snap.state_hash.hex()[:16]}"))
        if progress is not None:
            progress(h)
    return problems


# -- authority: signatures and the journal ----------------------------------------------


#: Type codes of the events the authority check reads (others are skipped undecoded).
_AUTH_CODES = frozenset({*(type_code(t) for t in PRIVILEGED), type_code(c.OperatorAuth),
                         type_code(o.KeyRegistered), type_code(o.CommandUnauthorized)})


class KeyRegistrations(NamedTuple):
    """The chain's key registrations and revocations, oldest first, from its events."""

    #: A chain is signed when its genesis registers keys (`verify_authority`'s rule); one
    #: created without any is legacy, and nothing in it is signed.
    signed: bool
    events: list[Any]  # envelopes of KeyRegistered


def key_registrations(store: ChainReader) -> KeyRegistrations:
    """Every `KeyRegistered` of the canonical chain, found by the type index (no signature
    is checked: `verify_authority` does that)."""
    found = store.events_by(type_code=type_code(o.KeyRegistered))
    return KeyRegistrations(any(e.height == 0 for e in found), found)


def verify_authority(store: ChainReader, *, branch: int | None = None) -> dict[str, Any]:
    """Check every signature of a chain (or an archived branch) and the journal pairing.

    - every block carries the writer's signature of its header hash, by a writer
      key registered (and active) before it (genesis: by the key it registers);
    - every block with a privileged command carries one OperatorAuth whose
      signature, by an active operator key, covers exactly those commands
      (`ledger.core.authority.check_block`, the state machine's own rule);
    - every block (above genesis) with a privileged command has its journal
      record, written in its transaction and naming its hash, and every journal
      record names a block (canonical or archived) that holds one.

    Returns {"signed", "writer_keys", "operator_keys", "problems": [Problem]}. A
    chain whose genesis registers no key is legacy: "signed" False and nothing to
    check, reported as such (never as signed).
    """
    segments: list[tuple[int | None, int, int | None]] = []
    if branch is None:
        segments.append((None, 0, None))
    else:
        rec = store.branch(branch)
        segments += [(None, 0, int(rec["base_height"])), (branch, 0, None)]
    keys: dict[str, tuple[int, str, bytes, bool]] = {}
    chain_id = ""
    problems: list[Problem] = []
    signed = False
    priv_hashes: dict[bytes, int] = {}  # hash -> height of each block with an operator command
    for seg_branch, lo, hi in segments:
        sigs = _Signatures(store, seg_branch)
        for hdr, datas in store.iter_block_bytes(lo, hi, branch=seg_branch):
            envs = [decode(d, hdr.first_seq + k) for k, d in enumerate(datas)
                    if d[CODE_AT[d[0]]] in _AUTH_CODES]
            registered = [e.event for e in envs if isinstance(e.event, o.KeyRegistered)]
            if hdr.height == 0:
                for ev in registered:
                    chain_id = ev.chain_id
                    keys[ev.key_id] = (int(ev.role), ev.name, ev.public_key, ev.active)
                signed = bool(keys)
                if not signed:
                    return {"signed": False, "writer_keys": [], "operator_keys": [],
                            "problems": []}
            problems += _block_signature(sigs.of(hdr.height), hdr, chain_id, keys)
            ins = [e.event for e in envs if e.cause == 0]
            why = check_block(chain_id, keys, hdr.height, ins)
            if why is not None:
                problems.append(Problem(hdr.height, why))
            if hdr.height > 0 and any(type(ev) in PRIVILEGED for ev in ins):
                priv_hashes[hdr.hash] = hdr.height
            for e in envs:
                if isinstance(e.event, o.CommandUnauthorized):
                    problems.append(Problem(hdr.height, f"an unauthorised command at seq "
                                            f"{e.seq}: {e.event.reason}"))
            if hdr.height > 0:
                for ev in registered:
                    keys[ev.key_id] = (int(ev.role), ev.name, ev.public_key, ev.active)
    if branch is None:
        problems += _journal_pairing(store, priv_hashes)
    problems.sort(key=lambda p: (p.height is None, p.height or 0))
    return {"signed": signed, "chain_id": chain_id,
            "writer_keys": sorted(k for k, v in keys.items() if v[0] == KeyRole.WRITER),
            "operator_keys": sorted(f"{k} ({v[1]}{'' if v[3] else ', revoked'})"
                                    for k, v in keys.items() if v[0] == KeyRole.OPERATOR),
            "problems": problems}


class _Signatures:
    """A chain's block signatures, read a run of heights at a time (one read, or one
    query on a replica, per `RUN` blocks)."""

    RUN = 1024

    def __init__(self, store: ChainReader, branch: int | None) -> None:
        self.store, self.branch = store, branch
        self.lo, self.hi = 0, -1
        self.sigs: dict[int, tuple[str, bytes]] = {}

    def of(self, height: int) -> tuple[str, bytes] | None:
        if not self.lo <= height <= self.hi:
            self.lo, self.hi = height, height + self.RUN - 1
            self.sigs = self.store.block_signatures(self.lo, self.hi, branch=self.branch)
        return self.sigs.get(height)


def _block_signature(sig: tuple[str, bytes] | None, hdr: BlockHeader, chain_id: str,
                     keys: dict[str, tuple[int, str, bytes, bool]]) -> list[Problem]:
    h = hdr.height
    if sig is None:
        return [Problem(h, f"block {h} carries no writer signature (forged, or written "
                        "without the writer key)")]
    key, signature = sig
    entry = keys.get(key)
    if entry is None or entry[0] != KeyRole.WRITER or not entry[3]:
        return [Problem(h, f"block {h} is signed by {key!r}, not an active writer key of "
                        "this chain")]
    if not signature_ok(entry[2], signature, block_message(chain_id, hdr.hash)):
        return [Problem(h, f"block {h}: the writer's signature does not verify over its "
                        "header (the block was altered or forged)")]
    return []


def _journal_pairing(store: ChainReader, priv_hashes: dict[bytes, int]) -> list[Problem]:
    problems: list[Problem] = []
    journaled: set[bytes] = set()
    # Every chain a journal record may name: the canonical one (None) and each branch.
    chains: list[int | None] = [None, *(int(b["branch"]) for b in store.branches())]
    for rec in store.journal():
        try:
            block_hash = bytes.fromhex(str(rec.get("head_hash", "")))
            height = int(rec["head_height"])
        except (ValueError, KeyError, TypeError):
            problems.append(Problem(None, f"journal record {rec.get('id')} does not decode"))
            continue
        journaled.add(block_hash)
        if block_hash in priv_hashes:
            continue
        if not _archived_privileged(store, height, block_hash, chains):
            problems.append(Problem(height, f"journal record {rec.get('id')} "
                                    f"({rec.get('action')}) names block {height} "
                                    f"{block_hash.hex()[:16]}, which holds no operator "
                                    "command: a journal record without its event"))
    for block_hash, height in priv_hashes.items():
        if block_hash not in journaled:
            problems.append(Problem(height, f"block {height} holds an operator "
                                    "command without its journal record"))
    return problems


def _archived_privileged(store: ChainReader, height: int, block_hash: bytes,
                         chains: list[int | None]) -> bool:
    branch = where_is_block(store, height, block_hash, branches=chains)
    if branch is None or branch is False:
        return False
    return any(type(env.event) in PRIVILEGED
               for env in store.events(height, height, branch=branch))
