"""`ledgerctl replicate status`: how far behind the replicator and the streaming replicas are.

- The replicator's lag: the chain's head against the primary's tracking row,
  in blocks and in seconds of block time (the exchange's clock: block times
  are when blocks were cut), plus how long ago the replicator last committed
  and whether one holds the target's replicator lock now.
- Each streaming replica's lag: the primary's view (`pg_stat_replication`:
  state, replay lag, bytes not yet replayed) and the replica's own (its
  tracking height against the primary's, seconds since its last replayed
  transaction while WAL is still waiting to be replayed).
"""

from __future__ import annotations

from typing import Any

from ledger.store.chain import ChainStore
from ledger.store.pg.connect import connect, describe, pg_errors
from ledger.store.pg.schema import LOCK_NS, REPLICATOR_LOCK, SCHEMA, check_readable


def _tracking(conn: Any) -> dict[str, Any]:
    row = conn.execute(f"SELECT height, seq, hash, time, replicated_at, "
                       f"extract(epoch FROM now() - replicated_at) FROM {SCHEMA}.tracking "
                       "WHERE id = 1").fetchone()
    if row is None:
        return {"height": -1, "seq": 0, "hash": "", "time": 0, "replicated_at": None,
                "last_commit_age_s": None}
    return {"height": int(row[0]), "seq": int(row[1]), "hash": bytes(row[2]).hex(),
            "time": int(row[3]), "replicated_at": row[4].isoformat(),
            "last_commit_age_s": round(float(row[5]), 3)}


def replication_status(dsn: str, *, store: ChainStore | None = None,
                       replicas: list[str] | None = None) -> dict[str, Any]:
    """The lag figures of a replication setup (see module docstring), as JSON-able data."""
    conn = connect(dsn, application="perpledger-status", autocommit=True)
    try:
        with pg_errors(dsn, "reading the replication status"):
            check_readable(conn, dsn)
            primary = _tracking(conn)
            holder = conn.execute(
                "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON "
                "a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = %s AND "
                "l.objid = %s AND l.granted", (LOCK_NS, REPLICATOR_LOCK)).fetchone()
            standbys = [
                {"application_name": r[0], "client": r[1], "state": r[2],
                 "replay_lag_s": None if r[3] is None else round(float(r[3]), 3),
                 "replay_behind_bytes": None if r[4] is None else int(r[4])}
                for r in conn.execute(
                    "SELECT application_name, coalesce(client_addr::text, 'local socket'), "
                    "state, extract(epoch FROM replay_lag), "
                    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM "
                    "pg_stat_replication ORDER BY application_name").fetchall()]
    finally:
        conn.close()
    doc: dict[str, Any] = {
        "target": describe(dsn), "replica_height": primary["height"],
        "replicated_at": primary["replicated_at"],
        "last_commit_age_s": primary["last_commit_age_s"],
        "replicator_running": holder is not None,
        "replicator": None if holder is None else f"{holder[1]} (server pid {holder[0]})",
        "standbys_seen_by_primary": standbys}
    if store is not None:
        head = store.head
        doc.update(chain_height=head.height,
                   lag_blocks=head.height - primary["height"],
                   lag_seconds=head.time - primary["time"] if primary["height"] >= 0 else None)
    doc["replicas"] = [_replica(r, primary) for r in replicas or []]
    return doc


def _replica(dsn: str, primary: dict[str, Any]) -> dict[str, Any]:
    conn = connect(dsn, application="perpledger-status", autocommit=True, read_only=True)
    try:
        with pg_errors(dsn, "reading a replica's status"):
            check_readable(conn, dsn)
            mine = _tracking(conn)
            standby, behind, delay = conn.execute(
                "SELECT pg_is_in_recovery(), "
                "pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), "
                "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 ELSE "
                "extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
            ).fetchone() or (False, None, None)
    finally:
        conn.close()
    return {"replica": describe(dsn), "standby": bool(standby),
            "replica_height": mine["height"],
            "lag_blocks": primary["height"] - mine["height"],
            "lag_seconds": (primary["time"] - mine["time"]) if mine["height"] >= 0 else None,
            "replay_delay_s": None if delay is None else round(float(delay), 3),
            "replay_behind_bytes": None if behind is None else int(behind)}
