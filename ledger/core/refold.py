"""The rebuild fold over stored bytes: evolve a block without decoding inert events.

`evolve` ignores every IN event but BeginBlock and a handful of OUT events
(rejections, BlockCommitted, SnapshotTaken): in a simulated chain about half
the log. Their type code sits at a fixed place in the stored bytes, so the
fold reads it there and decodes only events whose evolve does something. The
result equals `Engine.apply_block` over the decoded envelopes: no inert evolve
reads or writes state, and `state.seq` is set before each active event and to
the block's last seq at its end, as `apply_envelope` leaves it.

Only for bytes a block's events hash has proven (they passed the codec's
checks at append): an unknown type code is always decoded, so it still fails
loudly in `decode_verified`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ledger.core.evolve import EVOLVE, _noop
from ledger.events.codec import CODE_AT, decode_record
from ledger.events.record import BY_CODE
from ledger.gcpause import gc_paused

if TYPE_CHECKING:
    from ledger.core.engine import Engine

#: 1 where a type code's evolve must run (and unknown codes, which must fail).
ACTIVE = bytes(0 if code in BY_CODE and EVOLVE.get(BY_CODE[code]) is _noop else 1
               for code in range(256))


def apply_block_bytes(engine: Engine, height: int, first_seq: int,
                      datas: Sequence[bytes]) -> bytes:
    """Fold one block's stored events (seqs from `first_seq`) into `engine`; the state hash."""
    st = engine.state
    st.height = height
    active = ACTIVE
    code_at = CODE_AT
    evolve = EVOLVE
    with gc_paused(engine.pause_gc):
        seq = first_seq - 1
        for data in datas:
            seq += 1
            if active[data[code_at[data[0]]]]:
                ev = decode_record(data)
                st.seq = seq
                evolve[type(ev)](st, ev)
        st.seq = seq
        return engine.hasher.current(st)
