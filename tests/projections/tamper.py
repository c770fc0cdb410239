"""Rewrite one stored event behind the store's back, keeping the hash chain consistent.

`verify` (the store's own walk) would catch a plain byte flip by the events
hash; a forger who also rewrites that block's events hash, its header hash and
every later block's link and hash leaves a chain `verify_store` accepts. Only
re-executing the IN events (`verify --reexecute`) can then tell that the
stored outcome is not what the state machine decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lmdb
import msgpack

from ledger.events.codec import decode, encode_trusted
from ledger.keys import WRITER_KEY_ENV, load_key
from ledger.store.blocks import (
    decode_header,
    encode_header,
    events_hash,
    make_header,
)
from ledger.store.layout import chunk_seqs, posting_chunks, u64
from ledger.store.signatures import block_message


def forge_event(path: Path, seq: int, new_event: Any, *, resign: bool = False) -> int:
    """Replace the event at `seq` with `new_event` and re-chain every header; its height.

    With `resign`, every re-chained header is signed again with the tests' writer key
    ($PERPLEDGER_WRITER_KEY): a writer holding the key that wrote a wrong block, which
    only re-execution can find (a forger without the key is caught by the signatures).
    """
    signer = load_key(os.environ[WRITER_KEY_ENV]) if resign else None
    env = lmdb.open(str(path), max_dbs=64, subdir=True, map_size=1 << 30)
    try:
        dbs = {n: env.open_db(n.encode(), dupsort=n.startswith("by_"))
               for n in ("events", "blocks", "meta", "by_type")}
        with env.begin(write=True) as txn:
            old_raw = txn.get(u64(seq), db=dbs["events"])
            old = decode(old_raw, seq)
            new_raw = encode_trusted(old.height, old.cause, new_event)
            txn.put(u64(seq), new_raw, db=dbs["events"])
            old_code, new_code = type(old.event).TYPE_CODE, type(new_event).TYPE_CODE
            height = old.height
            if old_code != new_code:
                block = decode_header(txn.get(u64(height), db=dbs["blocks"]))
                _move_type_entry(txn, dbs["by_type"], seq, block.first_seq, block.last_seq,
                                 bytes((old_code,)), bytes((new_code,)))
            cur = txn.cursor(dbs["blocks"])
            cur.set_key(u64(height))
            prev_hash = None
            for key, raw in list(cur):
                hdr = decode_header(raw)
                ev_hash = hdr.events_hash
                if hdr.height == height:
                    datas = [bytes(txn.get(u64(s), db=dbs["events"]))
                             for s in range(hdr.first_seq, hdr.first_seq + hdr.count)]
                    ev_hash = events_hash(datas)
                new = make_header(hdr.height, hdr.time, hdr.first_seq, hdr.count,
                                  prev_hash if prev_hash is not None else hdr.prev_hash,
                                  ev_hash, hdr.state_hash)
                txn.put(key, encode_header(new), db=dbs["blocks"])
                if signer is not None:
                    chain_id = msgpack.unpackb(txn.get(b"chain_id", db=dbs["meta"]), raw=False)
                    sig = signer.sign(block_message(chain_id, new.hash))
                    txn.put(key, msgpack.packb([signer.key_id, sig], use_bin_type=True),
                            db=env.open_db(b"block_sigs", txn=txn))
                prev_hash = new.hash
            head = msgpack.unpackb(txn.get(b"head", db=dbs["meta"]), raw=False)
            head[2] = prev_hash
            txn.put(b"head", msgpack.packb(head, use_bin_type=True), db=dbs["meta"])
            if height == 0:
                first = decode_header(txn.get(u64(0), db=dbs["blocks"]))
                txn.put(b"genesis_hash", first.hash, db=dbs["meta"])
        return int(height)
    finally:
        env.close()


def _move_type_entry(txn: lmdb.Transaction, db: Any, seq: int, lo: int, hi: int,
                     old_key: bytes, new_key: bytes) -> None:
    """Move `seq` from `old_key`'s posting chunks to `new_key`'s, in its block [lo, hi].

    A key's chunks of one block are `posting_chunks` of all its seqs there, so
    each key's chunks of the block are rebuilt whole, as the writer makes them.
    """
    for key, add in ((old_key, False), (new_key, True)):
        cur = txn.cursor(db)
        stored: list[bytes] = []
        if cur.set_range_dup(key, u64(lo)):
            stored = [bytes(c) for c in cur.iternext_dup() if chunk_seqs(bytes(c))[0] <= hi]
        seqs = {s for chunk in stored for s in chunk_seqs(chunk)}
        if add:
            seqs.add(seq)
        else:
            seqs.discard(seq)
        for chunk in stored:
            txn.delete(key, chunk, db=db)
        for chunk in posting_chunks(sorted(seqs)) if seqs else []:
            txn.put(key, chunk, db=db)
