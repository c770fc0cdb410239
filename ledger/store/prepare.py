"""Block preparation: validate, encode, index and hash a block before its write transaction.

Everything the writer does to a block except the LMDB write itself: check the
envelopes against the head (height, gapless seqs, heights, types through the
codec), encode every event (msgspec), group the index entries into posting
chunks (ledger/store/layout.py) and hash the events. It is pure computation on
the writer's thread (compiled with the core), so a pipelined writer prepares
block N+1 while block N's transaction commits in the background; the
`PreparedBlock` then only writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any, NamedTuple, NoReturn

import lmdb
from msgspec.structs import astuple

from ledger.errors import BlockRejected, CodecError, IntegrityError
from ledger.events.codec import PLAN_OF, Envelope, pack_event
from ledger.store.blocks import (
    HASH_LEN,
    BlockHeader,
    encode_header,
    follows_in_time,
    make_header,
)
from ledger.store.chunks import index_items
from ledger.store.layout import MAX_ID_BYTES, Dbs, Head, u64, write_head

_CODE_KEYS = [bytes((i,)) for i in range(256)]


class PreparedBlock(NamedTuple):
    """A validated, encoded block ready to be written inside a write transaction."""

    header: BlockHeader
    items: list[tuple[bytes, bytes]]
    #: (key, posting chunk) pairs per index, in key order (`layout.index_items`).
    acct_ix: list[tuple[bytes, bytes]]
    mkt_ix: list[tuple[bytes, bytes]]
    type_ix: list[tuple[bytes, bytes]]
    new_head: Head

    def write(self, txn: lmdb.Transaction, dbs: Dbs) -> None:
        """Write events, index chunks, header and head (the caller's transaction).

        It only writes, so any transaction will do (`Txn` is one). Each chunk's
        first seq is above every seq already stored, so under an existing key it
        becomes that key's last dup.
        """
        # MDB_APPEND onto an existing key is not an error to putmulti, only "not added".
        _, added = txn.cursor(dbs.events).putmulti(self.items, append=True)
        if added != len(self.items):
            raise IntegrityError(f"block {self.header.height}: the events store already holds "
                                 f"seqs from {self.header.first_seq}; refusing to write")
        txn.cursor(dbs.by_account).putmulti(self.acct_ix, dupdata=True)
        txn.cursor(dbs.by_market).putmulti(self.mkt_ix, dupdata=True)
        txn.cursor(dbs.by_type).putmulti(self.type_ix, dupdata=True)
        h = self.header
        txn.put(u64(h.height), encode_header(h), db=dbs.blocks, append=True)
        write_head(txn, dbs, self.new_head)
        if h.height == 0:
            txn.put(b"genesis_hash", h.hash, db=dbs.meta)


def _too_long(value: str, height: int, seq: int) -> NoReturn:
    raise BlockRejected(f"block {height}, seq {seq}: id {value[:40]!r}... is longer than "
                        f"{MAX_ID_BYTES} bytes, the most an id may be")


def prepare_block(head: Head, envelopes: Sequence[Envelope], *, height: object,
                  time: object, state_hash: object) -> PreparedBlock:
    """Validate and encode a block on top of `head` (raises `BlockRejected`).

    `height`, `time` and `state_hash` come from the caller and are checked here
    (typed `object` so that the compiled module checks them, not its entry).
    """
    if type(height) is not int or height != head.height + 1:
        raise BlockRejected(f"block height {height} does not follow head {head.height}")
    if not envelopes:
        raise BlockRejected(f"block {height} has no events")
    if type(state_hash) is not bytes or len(state_hash) != HASH_LEN:
        raise BlockRejected(f"block {height}: state hash must be {HASH_LEN} bytes")
    if type(time) is not int or not follows_in_time(time, head.time):
        raise BlockRejected(f"block {height}: time {time!r} is before the head's {head.time}")
    items: list[tuple[bytes, bytes]] = []
    # Id or type code -> the block's seqs under it, increasing (each seq once per key).
    accts_ix: dict[str, list[int]] = {}
    mkts_ix: dict[str, list[int]] = {}
    types_ix: dict[int, list[int]] = {}
    acct_get = accts_ix.get
    mkt_get = mkts_ix.get
    type_get = types_ix.get
    plans = PLAN_OF
    parts: list[bytes] = []
    seq = head.seq
    # One tight loop: check, encode, index and hash each event once.
    for env in envelopes:
        seq += 1
        ev = env.event
        plan = plans.get(type(ev))
        if plan is None:
            raise BlockRejected(f"block {height}, seq {seq}: {type(ev).__name__} is not "
                                "an event type of the catalogue")
        # The envelope comes from the caller: its fields are checked, not trusted to
        # be the ints they are declared as (the compiled core would refuse a str
        # with a bare TypeError).
        env_seq: Any = getattr(env, "seq")  # noqa: B009
        env_height: Any = getattr(env, "height")  # noqa: B009
        cause: Any = getattr(env, "cause")  # noqa: B009
        if env_seq != seq:
            raise BlockRejected(f"block {height}: expected seq {seq}, was {env_seq}")
        if env_height != height or type(cause) is not int:
            raise BlockRejected(
                f"block {height}: event seq {seq} carries height {env_height!r}")
        values = astuple(ev)
        try:
            data = pack_event(plan, height, cause, values)
        except CodecError as exc:
            raise BlockRejected(f"block {height}, seq {seq}: {exc}") from None
        items.append((u64(seq), data))
        parts.append(len(data).to_bytes(4, "big"))
        parts.append(data)
        # Ids are grouped as str (the fields checked above are str) and encoded once
        # per block at the end; an empty id (a rejection naming no market) is skipped.
        for i in plan.accounts:
            ik = values[i]
            if ik:
                seqs = acct_get(ik)
                if seqs is None:
                    accts_ix[ik] = [seq]
                elif seqs[-1] != seq:  # an event naming an id twice is indexed once
                    seqs.append(seq)
        for i in plan.markets:
            ik = values[i]
            if ik:
                seqs = mkt_get(ik)
                if seqs is None:
                    mkts_ix[ik] = [seq]
                elif seqs[-1] != seq:
                    seqs.append(seq)
        code = plan.code
        seqs = type_get(code)
        if seqs is None:
            types_ix[code] = [seq]
        else:
            seqs.append(seq)
    ev_hash = blake2b(b"".join(parts), digest_size=HASH_LEN).digest()
    header = make_header(height, time, head.seq + 1, len(items), head.hash, ev_hash,
                         state_hash)
    # One chunk per (key, block) in the common case, keys sorted (`index_items`).
    return PreparedBlock(header, items, index_items(_id_keys(accts_ix, height)),
                         index_items(_id_keys(mkts_ix, height)),
                         index_items({_CODE_KEYS[c]: v for c, v in types_ix.items()}),
                         Head(height, seq, header.hash, time))


def _id_keys(groups: dict[str, list[int]], height: int) -> dict[bytes, list[int]]:
    """Index keys of a block's id groups: utf-8, at most MAX_ID_BYTES (else BlockRejected)."""
    out = {}
    for ident, seqs in groups.items():
        key = ident.encode()
        if len(key) > MAX_ID_BYTES:
            _too_long(ident, height, seqs[0])
        out[key] = seqs
    return out


