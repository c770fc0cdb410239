"""The operator journal: who did what, why and when, beside the chain.

The journal is operator metadata, not chain state: it records the wall clock
(`recorded_at`, UTC) beside the chain's own head height, head hash and block
time. An operator action that writes a block (a refund, a mode change, a
rollback's recovery block) journals it in the SAME write transaction as the
block, so the record exists if and only if the block does.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ledger.store.layout import Dbs, Txn, pack_record, read_head, read_u64, u64


@dataclass(frozen=True)
class JournalEntry:
    """One operator action to record: what (action), who, why, and its details."""

    action: str
    operator: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def journal_put(txn: Txn, dbs: Dbs, entry: JournalEntry) -> int:
    """Append one record inside the caller's write transaction; returns its id.

    `head_height`/`head_hash` are the head as of this point of the transaction,
    so a record written after its block names that block.
    """
    cur = txn.cursor(dbs.journal)
    next_id = read_u64(cur.key()) + 1 if cur.last() else 1
    head = read_head(txn, dbs)
    record = {
        "id": next_id,
        "action": entry.action,
        "operator": entry.operator,
        "reason": entry.reason,
        "head_height": head.height,
        "head_hash": head.hash.hex(),
        "block_time": head.time,
        "recorded_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "details": entry.details,
    }
    txn.put(u64(next_id), pack_record(record), db=dbs.journal,
            append=True)
    return next_id
