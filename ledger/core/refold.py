"""The rebuild fold over stored bytes: evolve a block without decoding inert events.

This is what `rebuild`, replay (restart, time travel) and the exchange-state
projection run per block: decode typed (msgspec) only what evolve uses, apply
it, fold the state hash once per block for the caller to compare with the
header's.

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
    """Fold one block's stored events (seqs from `first_seq`) into `engine`; the state hash.

    The bytes are those of a block whose events hash verified, so each fill in
    them was checked against invariant 7 when it was decided (matching refuses a
    fill that leaves AV' < IMR'), and the state hash returned here is compared
    with the header's by every caller: the fold does not re-audit fills
    (`ExchangeState.audit_fills`), which would cost an account-value sum per
    fill side that grows.
    """
    st = engine.state
    st.height = height
    with gc_paused(engine.pause_gc):
        st.audit_fills = False
        try:
            seq = first_seq - 1
            for data in datas:
                seq += 1
                if ACTIVE[data[CODE_AT[data[0]]]]:
                    ev = decode_record(data)
                    st.seq = seq
                    EVOLVE[type(ev)](st, ev)
            st.seq = seq
        finally:
            st.audit_fills = True
        return engine.block_hash()
