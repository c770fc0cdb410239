"""How the replicator cuts the chain into PostgreSQL transactions: whole blocks, runs when behind.

The issue's rule, "writes each block in ONE PostgreSQL transaction ... so a
SIGKILL at any instant neither loses nor doubles a block", is read as: no
block is ever split across transactions. A transaction holding a run of
WHOLE consecutive blocks, with the tracking row advanced to the last of them
in the same transaction, keeps every guarantee: the run commits entirely or
not at all, no reader sees half a block or a mix of two branches, tracking
always names the last block committed, and a restart resumes right after it.

So when the replicator is behind (catching up, or a follower that fell
behind the writer) it groups the blocks already committed in LMDB, up to
`GROUP_EVENTS` events or `GROUP_BLOCKS` blocks a transaction (a block
larger than the bound goes alone; both are tunable, `--group-events`,
`--group-blocks`); when it is caught up, the run is the one new block: one
block per transaction, the lowest lag. A run never crosses a rollback: a
branch is mirrored in a transaction of its own and the blocks before it end
at the branch's base.

This module holds only the rule (no PostgreSQL import), so the CLI and the
benchmark that measures a ceiling with the same transactions share it.
"""

from __future__ import annotations

#: A grouped transaction takes whole blocks until it holds this many events ...
GROUP_EVENTS = 8192
#: ... or this many blocks. 1 writes one block per transaction always.
GROUP_BLOCKS = 256


def group_full(events: int, blocks: int, group_events: int, group_blocks: int) -> bool:
    """Whether a run of whole blocks (`events` events in `blocks` blocks) fills one
    transaction: the one rule for where a grouped transaction ends."""
    return events >= group_events or blocks >= group_blocks


def group_sizes(counts: list[int], group_events: int = GROUP_EVENTS,
                group_blocks: int = GROUP_BLOCKS) -> list[int]:
    """The blocks in each transaction of an uninterrupted catch-up over blocks of `counts`
    events each (what the benchmark's ceiling writes per transaction)."""
    sizes: list[int] = []
    events = blocks = 0
    for n in counts:
        events += n
        blocks += 1
        if group_full(events, blocks, group_events, group_blocks):
            sizes.append(blocks)
            events = blocks = 0
    if blocks:
        sizes.append(blocks)
    return sizes
