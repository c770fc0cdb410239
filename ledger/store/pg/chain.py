"""`PgChain`: a PostgreSQL replica read through the same seam as the LMDB store.

It implements `ledger.store.reader.ChainReader` with the answers `ChainStore`
gives for the same chain: the same block headers (decoded from the stored
header bytes), the same event bytes, the same index walk (the LMDB posting
chunks are rows here: queries cost O(result)), the same writer signatures
of the blocks, the same branch and journal records (their msgpack bytes,
copied), the same errors with the same words.

Reads run in autocommit statements; `pinned()` holds one REPEATABLE READ,
READ ONLY transaction for a run of reads, so a reader never sees a block
half-replicated nor a rollback half-mirrored (each is one transaction of the
replicator). It works the same on the primary and on a streaming standby.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import IsolationLevel

from ledger.errors import NotFound, StoreError
from ledger.events.codec import Envelope, decode
from ledger.store.blocks import (
    BlockHeader,
    batches,
    check_events,
    decode_checked_block,
    decode_header,
    split_by_block,
    take_run,
)
from ledger.store.chain import Snapshot, SnapshotInfo
from ledger.store.layout import MAX_CHUNK_SPAN, Head, chunk_seqs, index_key, unpack_record
from ledger.store.pg.connect import connect, describe, pg_errors
from ledger.store.pg.schema import SCHEMA, check_readable
from ledger.store.pg.writer import INDEX_IDS
from ledger.store.reads import matches

#: Seqs fetched per round trip when an index walk has a limit.
_FETCH = 2048


class PgChain:
    """A replica's chain, read-only (see module docstring)."""

    def __init__(self, conn: psycopg.Connection[Any], dsn: str) -> None:
        self.conn = conn
        self.dsn = dsn
        self._depth = 0
        with self._errors("reading the replica's identity"):
            check_readable(conn, dsn)
            meta = dict(conn.execute(f"SELECT key, value FROM {SCHEMA}.meta").fetchall())
        if "chain_id" not in meta:
            raise StoreError(f"the replica at {describe(dsn)} is not bound to a ledger yet "
                             "(the replicator writes its first block there)")
        self.chain_id: str = meta["chain_id"]
        self.config: dict[str, Any] = dict(meta.get("config") or {})
        gen = meta.get("genesis_hash")
        self._genesis = bytes.fromhex(gen) if gen else None

    @classmethod
    def open(cls, dsn: str) -> PgChain:
        """Connect read-only to a replica (primary or standby). Raises `StoreUnavailable`,
        `CommandInvalid` for a malformed DSN, `StoreError` if it holds no replica."""
        conn = connect(dsn, application="perpledger-reader", autocommit=True, read_only=True)
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        try:
            return cls(conn, dsn)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()

    def __enter__(self) -> PgChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def spec(self) -> str:
        return self.dsn

    def _errors(self, doing: str) -> Any:
        return pg_errors(self.dsn, doing)

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """One REPEATABLE READ, READ ONLY transaction for the reads inside (re-entrant)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._errors("reading a consistent snapshot of the replica"), \
                    self.conn.transaction():
                yield
        finally:
            self._depth = 0

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._errors("reading the replica"):
            return self.conn.execute(sql, params).fetchall()

    # -- head and identity ------------------------------------------------------------

    @property
    def head(self) -> Head:
        rows = self._rows(f"SELECT height, seq, hash, time FROM {SCHEMA}.tracking WHERE id = 1")
        if not rows:
            raise StoreError(f"the replica at {describe(self.dsn)} has no tracking row; "
                             "run the replicator against it")
        h, s, hsh, t = rows[0]
        return Head(int(h), int(s), bytes(hsh), int(t))

    @property
    def genesis_hash(self) -> bytes | None:
        return self._genesis

    # -- blocks ----------------------------------------------------------------------

    def block(self, height: int, *, branch: int | None = None) -> BlockHeader:
        """One block header (raises `NotFound`, worded as the LMDB store words it)."""
        if branch is not None:
            self.branch(branch)
        rows = self._rows(f"SELECT header FROM {SCHEMA}.blocks WHERE branch = %s AND "
                          "height = %s", (branch or 0, height)) if height >= 0 else []
        if not rows:
            where = "the canonical chain" if branch is None else f"branch {branch}"
            raise NotFound(f"no block at height {height} on {where}")
        return decode_header(bytes(rows[0][0]))

    def blocks(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[BlockHeader]:
        if branch is not None:
            self.branch(branch)
        lo = max(from_height or 0, 0)
        hi = (1 << 62) if to_height is None else to_height
        rows = self._rows(f"SELECT header FROM {SCHEMA}.blocks WHERE branch = %s AND height "
                          "BETWEEN %s AND %s ORDER BY height", (branch or 0, lo, hi))
        return [decode_header(bytes(r[0])) for r in rows]

    def block_signatures(self, lo: int, hi: int, *, branch: int | None = None
                         ) -> dict[int, tuple[str, bytes]]:
        """The writer's signatures replicated with the blocks in [lo, hi] (schema 3)."""
        rows = self._rows(f"SELECT height, writer_key, writer_sig FROM {SCHEMA}.blocks WHERE "
                          "branch = %s AND height BETWEEN %s AND %s AND writer_sig IS NOT "
                          "NULL", (branch or 0, lo, hi))
        return {int(h): (str(k), bytes(sig)) for h, k, sig in rows}

    def _datas(self, branch: int | None, lo_seq: int, hi_seq: int) -> list[bytes]:
        rows = self._rows(f"SELECT data FROM {SCHEMA}.events WHERE branch = %s AND seq "
                          "BETWEEN %s AND %s ORDER BY seq", (branch or 0, lo_seq, hi_seq))
        return [bytes(r[0]) for r in rows]

    def _split(self, headers: list[BlockHeader], branch: int | None
               ) -> list[tuple[BlockHeader, list[bytes]]]:
        if not headers:
            return []
        return split_by_block(headers, self._datas(branch, headers[0].first_seq,
                                                   headers[-1].last_seq))

    def read_blocks(self, from_height: int, to_height: int, *, branch: int | None = None,
                    max_events: int = 8192, stop_at: Collection[int] = ()
                    ) -> list[tuple[BlockHeader, list[bytes]]]:
        """Whole blocks from `from_height` on, in one snapshot (see ChainStore.read_blocks)."""
        with self.pinned():
            group = take_run(self.blocks(from_height, to_height, branch=branch), max_events,
                             stop_at)
            return self._split(group, branch)

    def iter_block_bytes(self, from_height: int | None = None, to_height: int | None = None,
                         *, branch: int | None = None, batch_events: int = 8192,
                         ) -> Iterator[tuple[BlockHeader, list[bytes]]]:
        """Whole blocks as stored bytes, each block's events hash checked."""
        for group in batches(self.blocks(from_height, to_height, branch=branch), batch_events):
            for hdr, datas in self._split(group, branch):
                check_events(hdr, datas)
                yield hdr, datas

    def iter_blocks(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None, batch_events: int = 8192,
                    ) -> Iterator[tuple[BlockHeader, list[Envelope]]]:
        """Whole blocks with their decoded events, each block's events hash checked."""
        for hdr, datas in self.iter_block_bytes(from_height, to_height, branch=branch,
                                                batch_events=batch_events):
            yield hdr, decode_checked_block(hdr, datas)

    def iter_events(self, from_height: int | None = None, to_height: int | None = None, *,
                    branch: int | None = None) -> Iterator[Envelope]:
        for _, envs in self.iter_blocks(from_height, to_height, branch=branch):
            yield from envs

    def events(self, from_height: int | None = None, to_height: int | None = None, *,
               branch: int | None = None) -> list[Envelope]:
        return list(self.iter_events(from_height, to_height, branch=branch))

    # -- events by index -------------------------------------------------------------------

    def event_bytes(self, seqs: Collection[int], *, branch: int | None = None
                    ) -> dict[int, bytes]:
        if not seqs:
            return {}
        rows = self._rows(f"SELECT seq, data FROM {SCHEMA}.events WHERE branch = %s AND "
                          "seq = ANY(%s)", (branch or 0, list(seqs)))
        return {int(s): bytes(d) for s, d in rows}

    def _seq_range(self, from_height: int | None, to_height: int | None,
                   branch: int | None) -> tuple[int, int]:
        lo = -1 if from_height is None else from_height
        hi = (1 << 62) if to_height is None else to_height
        rows = self._rows(f"SELECT min(first_seq), max(first_seq + count - 1) FROM "
                          f"{SCHEMA}.blocks WHERE branch = %s AND height BETWEEN %s AND %s",
                          (branch or 0, lo, hi))
        if not rows or rows[0][0] is None:
            return 1, 0
        return int(rows[0][0]), int(rows[0][1])

    def events_by(self, *, account: str | None = None, market: str | None = None,
                  type_code: int | None = None, from_height: int | None = None,
                  to_height: int | None = None, branch: int | None = None,
                  limit: int | None = None) -> list[Envelope]:
        """Events matching account / market / type in a height range, as `ChainStore`
        answers: the most selective index given drives the walk, O(result)."""
        if branch is not None:
            self.branch(branch)
        if limit is not None and limit <= 0:
            return []
        if account == "" or market == "":
            return []
        with self.pinned():
            lo, hi = self._seq_range(from_height, to_height, branch)
            if lo > hi:
                return []
            if account is not None:
                driver: tuple[str, str | int] | None = ("account", account)
            elif market is not None:
                driver = ("market", market)
            elif type_code is not None:
                driver = ("type", type_code)
            else:
                driver = None
            if driver is None:
                end = hi if limit is None else min(hi, lo + limit - 1)
                return [decode(d, s) for s, d in sorted(self.event_bytes(
                    range(lo, end + 1), branch=branch).items())]
            seqs = self._indexed_seqs(driver[0], index_key(*driver), lo, hi, branch)
            out: list[Envelope] = []
            for i in range(0, len(seqs), _FETCH):
                part = seqs[i:i + _FETCH]
                # The other filters go to the server on the filter columns, so only the
                # events that can match travel and are decoded; `matches` still decides.
                rows = self._rows(
                    f"SELECT seq, data FROM {SCHEMA}.events WHERE branch = %s AND "
                    "seq = ANY(%s) AND (%s::int2 IS NULL OR type_code = %s) AND "
                    "(%s::text IS NULL OR %s = ANY(accounts)) AND "
                    "(%s::text IS NULL OR %s = ANY(markets))",
                    (branch or 0, part, type_code, type_code, account, account, market,
                     market))
                raws = {int(s): bytes(d) for s, d in rows}
                for seq in part:
                    raw = raws.get(seq)
                    if raw is None:
                        continue
                    env = decode(raw, seq)
                    if not matches(env, account, market, type_code):
                        continue
                    out.append(env)
                    if limit is not None and len(out) >= limit:
                        return out
            return out

    def _indexed_seqs(self, name: str, key: bytes, lo: int, hi: int,
                      branch: int | None) -> list[int]:
        # A chunk spans at most MAX_CHUNK_SPAN seqs, so one starting that far below lo
        # is the earliest that can list a seq in range.
        rows = self._rows(f"SELECT chunk FROM {SCHEMA}.index_chunks WHERE branch = %s AND "
                          "idx = %s AND key = %s AND first_seq BETWEEN %s AND %s ORDER BY "
                          "first_seq", (branch or 0, INDEX_IDS[name], key,
                                        lo - MAX_CHUNK_SPAN, hi))
        return [s for (chunk,) in rows for s in chunk_seqs(bytes(chunk)) if lo <= s <= hi]

    # -- snapshots, branches, journal -----------------------------------------------------

    def snapshots(self) -> list[SnapshotInfo]:
        rows = self._rows(f"SELECT height, state_hash, time, size FROM {SCHEMA}.snapshots "
                          "ORDER BY height")
        return [SnapshotInfo(int(h), bytes(sh), int(t), int(sz)) for h, sh, t, sz in rows]

    def snapshot(self, height: int) -> Snapshot:
        rows = self._rows(f"SELECT height, state_hash, time, data FROM {SCHEMA}.snapshots "
                          "WHERE height = %s", (height,))
        if not rows:
            raise NotFound(f"no snapshot at height {height}")
        h, sh, t, data = rows[0]
        return Snapshot(int(h), bytes(sh), int(t), bytes(data))

    def nearest_snapshot(self, at_or_below: int) -> SnapshotInfo | None:
        rows = self._rows(f"SELECT height, state_hash, time, size FROM {SCHEMA}.snapshots "
                          "WHERE height <= %s ORDER BY height DESC LIMIT 1", (at_or_below,))
        if not rows:
            return None
        h, sh, t, sz = rows[0]
        return SnapshotInfo(int(h), bytes(sh), int(t), int(sz))

    def branches(self) -> list[dict[str, Any]]:
        return [unpack_record(bytes(r[0])) for r in self._rows(
            f"SELECT record FROM {SCHEMA}.branches ORDER BY branch")]

    def branch(self, branch: int) -> dict[str, Any]:
        rows = self._rows(f"SELECT record FROM {SCHEMA}.branches WHERE branch = %s",
                          (branch,))
        if not rows:
            known = ", ".join(str(b["branch"]) for b in self.branches()) or "none"
            raise NotFound(f"no archived branch {branch} (known branches: {known})")
        return dict(unpack_record(bytes(rows[0][0])))

    def next_branch_id(self) -> int:
        """The id the next branch mirrored here will have: branch ids start at 1, every
        truncation takes the next (ledger/store/archive.py) and none is ever dropped. It
        trails the ledger's until the replicator has mirrored its rollbacks."""
        return max((int(b["branch"]) for b in self.branches()), default=0) + 1

    def journal(self, *, after: int = 0) -> list[dict[str, Any]]:
        return [unpack_record(bytes(r[0])) for r in self._rows(
            f"SELECT record FROM {SCHEMA}.journal WHERE id > %s ORDER BY id", (after,))]

    def height_of_seq(self, seq: int, *, branch: int | None = None) -> int:
        rows = self._rows(f"SELECT height FROM {SCHEMA}.events WHERE branch = %s AND seq = %s",
                          (branch or 0, seq))
        if not rows:
            raise NotFound(f"no event with seq {seq}")
        return int(rows[0][0])
