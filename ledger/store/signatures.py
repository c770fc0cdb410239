"""The writer's block signatures: one sub-database keyed by height, beside the headers.

`block_sigs`: height u64be -> msgpack [writer key id, Ed25519 signature of
`block_message(chain_id, header hash)`], written in the block's own
transaction; `arch_block_sigs`: the same under a branch id, moved there by a
truncation in its transaction. Headers keep their bytes and hashes: a chain
signed or not has the same header chain, and a reader that knows nothing of
signatures reads it unchanged. `ledger.verification` checks them.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgpack

from ledger.store.layout import Dbs, Txn, read_u64, u32, u64

#: Domain separation of what the writer key signs.
BLOCK_DOMAIN = b"perpledger/block-header/v1\x00"


class Signer(Protocol):
    """What signs blocks: a key with an id (ledger.keys.Key)."""

    @property
    def key_id(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...


def block_message(chain_id: str, header_hash: bytes) -> bytes:
    """What the writer signs for a block: its header hash, which covers its height, its
    events, its state hash and, through the previous hash, the whole chain before it."""
    return BLOCK_DOMAIN + chain_id.encode() + b"\x00" + header_hash


def put_signature(txn: Txn, dbs: Dbs, signer: Signer, chain_id: str, height: int,
                  header_hash: bytes) -> None:
    """Sign a block's header and store the signature (the caller's transaction)."""
    sig = signer.sign(block_message(chain_id, header_hash))
    txn.put(u64(height), msgpack.packb([signer.key_id, sig], use_bin_type=True),
            db=dbs.block_sigs)


def get_signature(txn: Txn, dbs: Dbs, height: int,
                  branch: int | None = None) -> tuple[str, bytes] | None:
    """(key id, signature) stored for a block, or None."""
    db = dbs.block_sigs if branch is None else dbs.arch_block_sigs
    if db is None:
        return None
    raw = txn.get(_key(height, branch), db=db)
    return None if raw is None else _decode(raw)


def get_signatures(txn: Txn, dbs: Dbs, lo: int, hi: int,
                   branch: int | None = None) -> dict[int, tuple[str, bytes]]:
    """{height: (key id, signature)} of the blocks in [lo, hi] that carry one (one cursor
    walk over the stored ones)."""
    db = dbs.block_sigs if branch is None else dbs.arch_block_sigs
    out: dict[int, tuple[str, bytes]] = {}
    if db is None:
        return out
    cur = txn.cursor(db)
    end = _key(hi, branch)
    if cur.set_range(_key(lo, branch)):
        for key, raw in cur:
            if key > end:
                break
            out[read_u64(key[-8:])] = _decode(raw)
    return out


def _key(height: int, branch: int | None) -> bytes:
    return u64(height) if branch is None else u32(branch) + u64(height)


def _decode(raw: bytes) -> tuple[str, bytes]:
    """A stored (key id, signature); ("", b"") if the value is not one (verify says so)."""
    arr: Any = msgpack.unpackb(raw, raw=False)
    if not isinstance(arr, list) or len(arr) != 2 or not isinstance(arr[0], str) \
            or not isinstance(arr[1], bytes):
        return ("", b"")
    return arr[0], arr[1]


def archive_signatures(txn: Txn, dbs: Dbs, height: int, branch: int) -> None:
    """Move the signatures of the blocks above `height` under `branch` (truncation)."""
    cur = txn.cursor(dbs.block_sigs)
    moved = []
    if cur.set_range(u64(height + 1)):
        moved = [(u32(branch) + k, v) for k, v in cur]
    if moved:
        txn.cursor(dbs.arch_block_sigs).putmulti(moved)
        cur = txn.cursor(dbs.block_sigs)
        cur.set_range(u64(height + 1))
        while cur.delete():
            pass
