"""The replica's own versioned schema, in the PostgreSQL schema `perpledger`.

Each migration is a numbered list of statements run in ONE transaction with
its row in `schema_version`, under an advisory lock, so two replicators
starting at once migrate once and a crash mid-migration leaves the old
version. A database at a newer version than this code knows is refused
(`SchemaTooNew`): an old replicator must never write rows a newer layout
reads differently. Adding a replicated table or column later is one more
migration here and one more writer, not a rewrite.

Chain tables (one row per stored thing; `branch` 0 is the canonical chain,
`b` archived branch `b`, exactly as in LMDB):

  blocks        header fields as columns, plus the stored header bytes
  events        seq, height, type code, accounts, markets (the filter
                columns) and the stored event bytes
  index_chunks  the LMDB index posting chunks (layout.py): (index, key,
                first seq) -> chunk, so queries walk them in O(result)
  snapshots     height -> state hash, block time, size, canonical bytes
  branches      archived branch records (msgpack, as in LMDB) + columns
  journal       operator actions (msgpack, as in LMDB) + columns
  meta          chain id, config, genesis hash, the LMDB schema version
  tracking      the replicated head: height, seq, block hash, time (1 row)

Migration 3 adds the writer's signature of each block (key id and
Ed25519 signature, as LMDB's block_sigs holds them) as two columns of
`blocks`, so a rollback's archive moves them with their headers and a
replica's `verify` checks the chain's authority as the ledger's does.

Audit read models (migration 2; `ns` is the namespace, as `branch`):
stmt_lines, funding_ticks, liquidations, with the LMDB read models' own
value bytes plus columns for SQL, and `fold_states`, the replicator's
saved audit fold states (restart and rollback points).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ledger.errors import StoreError
from ledger.store.pg.connect import describe

SCHEMA = "perpledger"
#: Advisory lock keys (two int4s: "perpledger", purpose), per database.
LOCK_NS = 0x7065_7270
MIGRATE_LOCK = 1
REPLICATOR_LOCK = 2


class SchemaTooNew(StoreError):
    """The database holds a replica schema from a newer perpledger."""


MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "chain tables: blocks, events, index chunks, snapshots, branches, journal", [
        f"""CREATE TABLE {SCHEMA}.meta (
            key text PRIMARY KEY,
            value jsonb NOT NULL)""",
        f"""CREATE TABLE {SCHEMA}.tracking (
            id smallint PRIMARY KEY CHECK (id = 1),
            height bigint NOT NULL,
            seq bigint NOT NULL,
            hash bytea NOT NULL,
            time bigint NOT NULL,
            replicated_at timestamptz NOT NULL DEFAULT now())""",
        f"""CREATE TABLE {SCHEMA}.blocks (
            branch integer NOT NULL,
            height bigint NOT NULL,
            time bigint NOT NULL,
            first_seq bigint NOT NULL,
            count integer NOT NULL,
            prev_hash bytea NOT NULL,
            events_hash bytea NOT NULL,
            state_hash bytea NOT NULL,
            hash bytea NOT NULL,
            header bytea NOT NULL,
            PRIMARY KEY (branch, height))""",
        f"""CREATE TABLE {SCHEMA}.events (
            branch integer NOT NULL,
            seq bigint NOT NULL,
            height bigint NOT NULL,
            type_code smallint NOT NULL,
            accounts text[] NOT NULL,
            markets text[] NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (branch, seq))""",
        f"""CREATE TABLE {SCHEMA}.index_chunks (
            branch integer NOT NULL,
            idx smallint NOT NULL,
            key bytea NOT NULL,
            first_seq bigint NOT NULL,
            chunk bytea NOT NULL,
            PRIMARY KEY (branch, idx, key, first_seq))""",
        f"CREATE INDEX index_chunks_by_seq ON {SCHEMA}.index_chunks (branch, first_seq)",
        f"""CREATE TABLE {SCHEMA}.snapshots (
            height bigint PRIMARY KEY,
            state_hash bytea NOT NULL,
            time bigint NOT NULL,
            size bigint NOT NULL,
            data bytea NOT NULL)""",
        f"""CREATE TABLE {SCHEMA}.branches (
            branch integer PRIMARY KEY,
            base_height bigint NOT NULL,
            first_height bigint NOT NULL,
            last_height bigint NOT NULL,
            reason text NOT NULL,
            operator text NOT NULL,
            record bytea NOT NULL)""",
        f"""CREATE TABLE {SCHEMA}.journal (
            id bigint PRIMARY KEY,
            action text NOT NULL,
            operator text NOT NULL,
            reason text NOT NULL,
            head_height bigint NOT NULL,
            recorded_at text NOT NULL,
            record bytea NOT NULL)""",
    ]),
    (2, "audit read models: statement lines, funding ticks, liquidations, fold states", [
        f"""CREATE TABLE {SCHEMA}.stmt_lines (
            ns integer NOT NULL,
            acct text NOT NULL,
            height bigint NOT NULL,
            seq bigint NOT NULL,
            k bigint NOT NULL,  -- the u32 index of a line within its event
            kind text NOT NULL,
            delta_qq numeric NOT NULL,
            balance_qq numeric NOT NULL,
            mkt text,
            value bytea NOT NULL,
            PRIMARY KEY (ns, acct, height, seq, k))""",
        f"""CREATE TABLE {SCHEMA}.funding_ticks (
            ns integer NOT NULL,
            mkt text NOT NULL,
            height bigint NOT NULL,
            seq bigint NOT NULL,
            status text NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (ns, mkt, height, seq))""",
        f"""CREATE TABLE {SCHEMA}.liquidations (
            ns integer NOT NULL,
            height bigint NOT NULL,
            seq bigint NOT NULL,
            acct text NOT NULL,
            value bytea NOT NULL,
            PRIMARY KEY (ns, height, seq))""",
        f"""CREATE TABLE {SCHEMA}.fold_states (
            height bigint PRIMARY KEY,
            hash bytea NOT NULL,
            blob bytea NOT NULL)""",
    ]),
    (3, "the writer's block signatures beside each header", [
        # NULL on an unsigned (legacy) chain's blocks, and on a replica's blocks from
        # before this migration until the replicator backfills them from the ledger.
        f"ALTER TABLE {SCHEMA}.blocks ADD COLUMN writer_key text, ADD COLUMN writer_sig bytea",
    ]),
]

#: The newest schema version this code writes and reads.
SCHEMA_VERSION = MIGRATIONS[-1][0]


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of the database (0: no replica schema there)."""
    row = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.schema_version",)).fetchone()
    if row is None or row[0] is None:
        return 0
    got = conn.execute(f"SELECT max(version) FROM {SCHEMA}.schema_version").fetchone()
    return int(got[0]) if got and got[0] is not None else 0


def check_readable(conn: psycopg.Connection[Any], dsn: str) -> int:
    """The version of an existing replica schema this code can read, else `StoreError`."""
    version = current_version(conn)
    if version == 0:
        raise StoreError(f"{describe(dsn)} holds no perpledger replica (run `ledgerctl "
                         "replicate --to ...` against its primary first)")
    _refuse_newer(version, dsn)
    if version < SCHEMA_VERSION:
        raise StoreError(f"the replica at {describe(dsn)} has schema version {version}, this "
                         f"perpledger reads {SCHEMA_VERSION}; run `ledgerctl replicate` once "
                         "to migrate it")
    return version


def _refuse_newer(version: int, dsn: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"the replica at {describe(dsn)} has schema version {version}, "
                           f"newer than this perpledger's {SCHEMA_VERSION}; upgrade perpledger "
                           "(it never writes a schema it does not know)")


def migrate(conn: psycopg.Connection[Any], dsn: str, *, to: int = SCHEMA_VERSION) -> list[int]:
    """Create or upgrade the replica schema to version `to`; the versions applied.

    Each migration and its `schema_version` row commit together; an advisory
    transaction lock serialises concurrent migrators. Raises `SchemaTooNew`.
    """
    applied = []
    for version, description, statements in MIGRATIONS:
        if version > to:
            break
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NS, MIGRATE_LOCK))
            have = current_version(conn)
            _refuse_newer(have, dsn)
            if have >= version:
                continue
            if version == 1:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
                conn.execute(f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
                    version integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())""")
            for sql in statements:
                conn.execute(sql)
            conn.execute(f"INSERT INTO {SCHEMA}.schema_version (version, description) "
                         "VALUES (%s, %s)", (version, description))
            applied.append(version)
    return applied
