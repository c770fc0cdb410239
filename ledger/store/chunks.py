"""Index posting chunks (schema 2): the one definition of their layout.

A chunk is the seq u64be of its first event, then the offset (seq - first
seq) of each further event as u16 big-endian, strictly increasing; one block
only, at most `MAX_CHUNK_OFFSETS` offsets and offsets up to `MAX_CHUNK_SPAN`
(ledger/store/layout.py says why). The block preparation writes what
`index_items` returns, `verify` compares stored chunks against it, and readers
expand them with `chunk_seqs`. Pure computation, compiled with the core.
"""

from __future__ import annotations

import struct
from bisect import bisect_right

from ledger.errors import IntegrityError

_U64 = struct.Struct(">Q")


#: Offsets a chunk holds after its first seq: 8 + 2 * 251 = 510 bytes, within
#: the 511 bytes LMDB allows a dupsort value.
MAX_CHUNK_OFFSETS = 251
#: The largest offset a u16 holds.
MAX_CHUNK_SPAN = 0xFFFF
# _CHUNKS[n] packs and unpacks a chunk of n offsets.
_CHUNKS = [struct.Struct(f">Q{n}H") for n in range(MAX_CHUNK_OFFSETS + 1)]


def posting_chunks(seqs: list[int]) -> list[bytes]:
    """The chunks of one index key's seqs in ONE block (strictly increasing, not empty).

    This is the one definition of the chunk layout: `prepare_block` writes what
    it returns and `verify` compares the stored chunks against it.
    """
    first = seqs[0]
    n = len(seqs)
    # The common case, one chunk for the key's whole block, without the loop.
    if n <= MAX_CHUNK_OFFSETS + 1 and seqs[-1] - first <= MAX_CHUNK_SPAN:
        if n == 1:
            return [_U64.pack(first)]
        return [_CHUNKS[n - 1].pack(first, *[s - first for s in seqs[1:]])]
    out = []
    i = 0
    while i < n:
        first = seqs[i]
        # The chunk ends at whichever limit comes first: its count or its span.
        j = bisect_right(seqs, first + MAX_CHUNK_SPAN, i + 1, min(n, i + 1 + MAX_CHUNK_OFFSETS))
        out.append(_CHUNKS[j - i - 1].pack(first, *[s - first for s in seqs[i + 1:j]]))
        i = j
    return out


def index_items(groups: dict[bytes, list[int]]) -> list[tuple[bytes, bytes]]:
    """(key, chunk) pairs of one block's index entries, in key order then seq order.

    `groups` maps each key to its seqs in the block, strictly increasing. Sorted
    keys keep the bytes and the writer's page touches independent of dict order.
    """
    return [(key, chunk) for key, seqs in sorted(groups.items())
            for chunk in posting_chunks(seqs)]


def chunk_seqs(chunk: bytes) -> list[int]:
    """The seqs a stored chunk lists (raises `IntegrityError` if it is no chunk)."""
    n, odd = divmod(len(chunk) - 8, 2)
    if n < 0 or odd or n > MAX_CHUNK_OFFSETS:
        raise IntegrityError(f"index entry of {len(chunk)} bytes is no posting chunk; "
                             "the store is damaged")
    first, *offsets = _CHUNKS[n].unpack(chunk)
    return [first, *[first + o for o in offsets]]


def chunk_last(chunk: bytes) -> int:
    """The last seq a well-formed stored chunk lists."""
    first = int(_U64.unpack_from(chunk, 0)[0])
    return first + int.from_bytes(chunk[-2:], "big") if len(chunk) > 8 else first
