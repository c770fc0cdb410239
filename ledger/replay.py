"""Replay stored blocks into an Engine, checking the state hash at every block.

Used by the restart protocol (G8), rebuild jobs and rollback: the same
`evolve` the live path's events went through (`apply_block_bytes`, which also
checks each block's events hash on the way in), so a replay that disagrees
with a header names the exact height of the divergence.
"""

from __future__ import annotations

from collections.abc import Callable

from ledger.core.engine import Engine
from ledger.core.refold import apply_block_bytes
from ledger.errors import VerificationFailed
from ledger.store.reader import ChainReader


def restore(store: ChainReader, *, at_or_below: int) -> tuple[Engine, int]:
    """An engine restored from the newest snapshot at or below a height, and that height.

    The snapshot's own hash, the hash of the state it decodes to, and the block
    header at its height must all agree; otherwise `VerificationFailed`.
    Without a snapshot, an empty engine at height -1 (replay from genesis).
    """
    info = store.nearest_snapshot(at_or_below)
    if info is None:
        return Engine(), -1
    snap = store.snapshot(info.height)
    try:
        engine = Engine.from_snapshot(snap.data)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError) as exc:
        raise VerificationFailed(info.height, f"the snapshot's bytes do not restore to a state "
                                 f"({type(exc).__name__}); the store is damaged") from None
    header = store.block(info.height)
    got = engine.state_hash()
    if got != snap.state_hash or got != header.state_hash:
        raise VerificationFailed(
            info.height,
            f"snapshot restores to state hash {got.hex()[:16]}, block header says "
            f"{header.state_hash.hex()[:16]}")
    return engine, info.height


def replay(store: ChainReader, engine: Engine, from_height: int, to_height: int, *,
           branch: int | None = None, check: bool = True,
           progress: Callable[[int, int], None] | None = None) -> int:
    """Fold blocks [from_height, to_height] into `engine`; returns events applied.

    With `check`, the state hash after each block must equal its header's.
    """
    applied = 0
    if from_height > to_height:
        return 0
    for hdr, datas in store.iter_block_bytes(from_height, to_height, branch=branch):
        got = apply_block_bytes(engine, hdr.height, hdr.first_seq, datas)
        applied += len(datas)
        if check and got != hdr.state_hash:
            raise VerificationFailed(
                hdr.height,
                f"replayed state hash {got.hex()[:16]} differs from the header's "
                f"{hdr.state_hash.hex()[:16]}")
        if progress is not None:
            progress(hdr.height, len(datas))
    return applied


def restore_exact(store: ChainReader, height: int) -> Engine:
    """The engine at exactly `height`, from the nearest snapshot, hash-checked per block."""
    engine, base = restore(store, at_or_below=height)
    replay(store, engine, base + 1, height, check=True)
    return engine
