"""Block headers and the hash chain.

Header fields (msgpack array, in this order): height, block time, first seq,
event count, prev hash, events hash, state hash, own hash. The own hash is
blake2b-256 over the packed first seven fields; the events hash is blake2b-256
over every event's stored bytes, each prefixed by its length (u32 big-endian),
in seq order. The genesis block's prev hash is derived from the chain id, so a
chain's genesis hash commits to its identity.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from hashlib import blake2b
from typing import NamedTuple

import msgpack

from ledger.errors import CodecError, VerificationFailed
from ledger.events.codec import Envelope, decode_verified
from ledger.gcpause import gc_paused

HASH_LEN = 32
ZERO_HASH = bytes(HASH_LEN)


class BlockHeader(NamedTuple):
    """One block's header; `hash` covers every other field."""

    height: int
    time: int
    first_seq: int
    # Shadows `tuple.count` on purpose: `hdr.count` is public API all over the
    # code base, and nothing calls `tuple.count` on a header.
    count: int  # type: ignore[assignment]
    prev_hash: bytes
    events_hash: bytes
    state_hash: bytes
    hash: bytes

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    def to_json(self) -> dict[str, object]:
        return {
            "height": self.height,
            "time": self.time,
            "first_seq": self.first_seq,
            "count": self.count,
            "prev_hash": self.prev_hash.hex(),
            "events_hash": self.events_hash.hex(),
            "state_hash": self.state_hash.hex(),
            "hash": self.hash.hex(),
        }


def follows_in_time(time: int, prev_time: int) -> bool:
    """May a block at `time` follow one at `prev_time`? Block time never goes backwards.

    Equal times are fine (several blocks in one second); the state machine's only
    clock is the block time, so a later block may never say it happened earlier.
    """
    return time >= prev_time


def genesis_prev_hash(chain_id: str) -> bytes:
    """The prev hash of block 0: binds the chain id into every later hash."""
    return blake2b(b"perpledger-genesis:" + chain_id.encode(), digest_size=HASH_LEN).digest()


def events_hash(encoded: list[bytes]) -> bytes:
    """Hash of a block's events: length-prefixed stored bytes in seq order."""
    parts = []
    for data in encoded:
        parts.append(len(data).to_bytes(4, "big"))
        parts.append(data)
    return blake2b(b"".join(parts), digest_size=HASH_LEN).digest()


def check_events(hdr: BlockHeader, datas: list[bytes]) -> None:
    """Raise VerificationFailed unless `datas` are exactly the block's stored events."""
    if len(datas) != hdr.count or events_hash(datas) != hdr.events_hash:
        raise VerificationFailed(hdr.height, "events hash does not match the stored events")


def decode_checked_block(hdr: BlockHeader, datas: list[bytes]) -> list[Envelope]:
    """A block's events decoded, once `check_events` has passed on these bytes
    (`decode_verified`: msgspec still checks every field, at no extra cost)."""
    first = hdr.first_seq
    # A block's records are acyclic tuples: no garbage for the cycle collector, whose
    # generation-0 passes would otherwise more than double the decode cost.
    with gc_paused():
        return [decode_verified(d, first + k) for k, d in enumerate(datas)]


def header_hash(height: int, time: int, first_seq: int, count: int, prev_hash: bytes,
                ev_hash: bytes, state_hash: bytes) -> bytes:
    body = msgpack.packb([height, time, first_seq, count, prev_hash, ev_hash, state_hash],
                         use_bin_type=True)
    return blake2b(body, digest_size=HASH_LEN).digest()


def make_header(height: int, time: int, first_seq: int, count: int, prev_hash: bytes,
                ev_hash: bytes, state_hash: bytes) -> BlockHeader:
    """Build a header and its own hash."""
    own = header_hash(height, time, first_seq, count, prev_hash, ev_hash, state_hash)
    return BlockHeader(height, time, first_seq, count, prev_hash, ev_hash, state_hash, own)


def encode_header(h: BlockHeader) -> bytes:
    data: bytes = msgpack.packb(tuple(h), use_bin_type=True)
    return data


def decode_header(data: bytes) -> BlockHeader:
    """Decode a stored header, checking its shape (not its hash: `verify` does that)."""
    try:
        arr = msgpack.unpackb(data, use_list=False, raw=False)
    except Exception as exc:
        raise CodecError(f"block header is not valid msgpack ({exc})") from None
    if type(arr) is not tuple or len(arr) != 8:
        raise CodecError("block header: expected an array of 8 fields")
    for i in range(4):
        if type(arr[i]) is not int:
            raise CodecError(f"block header: {BlockHeader._fields[i]} must be an integer")
    for i in range(4, 8):
        if type(arr[i]) is not bytes or len(arr[i]) != HASH_LEN:
            raise CodecError(f"block header: {BlockHeader._fields[i]} must be 32 bytes")
    return BlockHeader(*arr)


def split_by_block(headers: Sequence[BlockHeader], raw: Sequence[bytes]
                   ) -> list[tuple[BlockHeader, list[bytes]]]:
    """Cut the stored bytes of a run of consecutive blocks (in seq order) into blocks.

    A block whose share comes back short stays short: `check_events` rejects it.
    """
    out = []
    pos = 0
    for hdr in headers:
        out.append((hdr, list(raw[pos:pos + hdr.count])))
        pos += hdr.count
    return out


def take_run(headers: Iterable[BlockHeader], max_events: int,
             stop_at: Collection[int] = ()) -> list[BlockHeader]:
    """The first headers of `headers` up to `max_events` events (at least one block) or
    up to and including a height in `stop_at`: what one read of a run of blocks takes."""
    group: list[BlockHeader] = []
    total = 0
    for hdr in headers:
        group.append(hdr)
        total += hdr.count
        if total >= max_events or hdr.height in stop_at:
            break
    return group


def batches(headers: Iterable[BlockHeader], batch_events: int) -> Iterator[list[BlockHeader]]:
    """Consecutive runs of `headers` of about `batch_events` events each (whole blocks)."""
    it = iter(headers)  # take_run stops right after the block that fills a batch
    while group := take_run(it, batch_events):
        yield group
