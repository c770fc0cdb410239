"""The ledger's catalogue as JSON rows: head, snapshots, archived branches, journal.

One shape for each, shared by `ledgerctl branches|snapshots|journal --json`,
the HTTP API and the incident report, so all three show the same fields.
Read through `ChainStore`'s public methods only.
"""

from __future__ import annotations

from typing import Any

from ledger.store.chain import ChainStore


def head_json(store: ChainStore) -> dict[str, Any]:
    """The head: height, block time, seq and hash (comlink's `/height` plus the hash)."""
    head = store.head
    return {"height": head.height, "time": head.time, "seq": head.seq, "hash": head.hash.hex()}


def snapshots_json(store: ChainStore) -> list[dict[str, Any]]:
    """Snapshots: height, state hash, size in bytes and block time, by height."""
    return [{"height": s.height, "state_hash": s.state_hash.hex(), "size": s.size,
             "time": s.time} for s in store.snapshots()]


def branches_json(store: ChainStore) -> list[dict[str, Any]]:
    """Archived branches: heights, event and block counts, reason, operator, head."""
    return [{"branch": b["branch"], "base_height": b["base_height"],
             "first_height": b["first_height"], "last_height": b["last_height"],
             "events": b["events"], "blocks": b["blocks"], "reason": b["reason"],
             "operator": b["operator"], "head_time": b["head_time"],
             "head_hash": bytes(b["head_hash"]).hex()} for b in store.branches()]


def journal_json(store: ChainStore) -> list[dict[str, Any]]:
    """Operator actions, oldest first (who, why, when, heights and hashes involved)."""
    return store.journal()
