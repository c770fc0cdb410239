"""Audit queries: the Python API behind `ledgerctl audit ...`.

    from projections.audit import Auditor

    with Auditor.open("ledger-data") as au:        # catches the read models up first
        au.account("u00012", at_height=1200)       # state at 1200 + statement lines
        au.fills(account="u00012", from_height=1000, to_height=1200)
        au.funding("BTC-PERP")                     # ticks, index, rate, settlements
        au.liquidations(from_height=1000)          # the liquidation register
        au.events(type_name="Liquidated", branch=1)
        au.state(at_height=1200)                   # per market OI, index, mark, mode
        au.export("statement", "csv", sys.stdout, account="u00012")

Every method returns plain JSON-able values; amounts are integers in their
fixed-point units (`_qq`, `_bq`, `_st`, `_ppm`), never floats. Every method
takes `branch=B` to ask the same of archived branch B: heights up to the
branch's base are the canonical history it shares, heights above it are the
branch's own blocks. Raises `CommandInvalid` for a bad height, range, branch,
market or type name, `NotFound` for an account that does not exist at the
height asked.

Sources: statement lines, funding history and the liquidation register come
from the audit read models (`projections.audit_models`), read through
`projections.audit_source.AuditModels`: in `<data>/readmodels` beside an
LMDB ledger, or in a PostgreSQL replica's tables. Each read is one snapshot
answered as of its checkpoint (`as_of_height`); the checkpoint's block hash
is checked against the chain after the read, so a rollback in between is
noticed and the query re-run. States at a height come from the
exchange-state projection (`state_at`). Fills and events come straight from
the chain's indexes. The chain is read only through
`ledger.store.reader.ChainReader`, so the same queries answer the same from
`Auditor.open("ledger-data")` and `Auditor.open("postgresql://...")`; on
PostgreSQL each public query runs in one REPEATABLE READ snapshot. All of it
works while the sequencer (or the replicator) appends in another process.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar, cast

from ledger.errors import CommandInvalid, NotFound
from ledger.events import outcomes as o
from ledger.events.codec import Envelope, decode, envelope_json, to_jsonable
from ledger.events.enums import Side
from ledger.events.record import BY_NAME
from ledger.store.reader import ChainReader, is_pg_spec
from projections.audit_models import FILL, StatementLine, code
from projections.audit_source import AuditModels, AuditView, LmdbAuditModels
from projections.checkpoints import Checkpoint
from projections.exchange_state import state_at
from projections.readmodels import CANONICAL, ReadModels
from projections.summaries import account_state, exchange_summary

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
EXPORTS = ("statement", "fills", "funding", "liquidations", "events")
FORMATS = ("jsonl", "csv")


def _pinned(method: F) -> F:
    """Answer a query from one consistent view of the store (one PostgreSQL snapshot; a
    no-op on LMDB, whose reads each are one and are re-checked where they combine)."""

    @functools.wraps(method)
    def wrapper(self: Auditor, *args: Any, **kwargs: Any) -> Any:
        with self.store.pinned():
            return method(self, *args, **kwargs)

    return cast(F, wrapper)


class Auditor:
    """Audit queries over one ledger (see module docstring)."""

    def __init__(self, store: ChainReader, models: AuditModels | ReadModels, *,
                 catch_up: bool = True, progress: bool = False) -> None:
        self.store = store
        self.models: AuditModels = (LmdbAuditModels(store, models)
                                    if isinstance(models, ReadModels) else models)
        self._progress = progress
        self._owned = False
        if catch_up:
            self.catch_up()

    @classmethod
    def open(cls, store: str | os.PathLike[str], *, catch_up: bool = True,
             progress: bool = False) -> Auditor:
        """Open a ledger read-only with its audit read models: a data directory (the read
        models there are caught up first unless told not to) or a PostgreSQL replica
        URL (`postgresql://...`), whose read models the replicator keeps current.

        On a read-only directory the read models cannot catch up: they answer as of
        their checkpoint (`lag` says how many blocks behind the head that is).
        """
        chain: ChainReader
        models: AuditModels
        if is_pg_spec(store):
            from projections.audit_pg import open_pg_auditor_parts

            chain, models = open_pg_auditor_parts(str(store))
        else:
            from ledger.store.chain import ChainStore

            lmdb_chain = ChainStore.open(store)
            try:
                rm = ReadModels.open_for_reading(store)
                if rm.mode == "readonly":
                    catch_up = False
                models = LmdbAuditModels(lmdb_chain, rm)
            except BaseException:
                lmdb_chain.close()
                raise
            chain = lmdb_chain
        try:
            au = cls(chain, models, catch_up=catch_up, progress=progress)
        except BaseException:
            models.close()
            chain.close()
            raise
        au._owned = True
        return au

    def close(self) -> None:
        if self._owned:
            self.models.close()
            self.store.close()
            self._owned = False

    def __enter__(self) -> Auditor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def catch_up(self) -> None:
        """Fold new blocks into the read models where they are folded on demand (LMDB:
        the audit read models and the exchange-state projection, skipped if another
        runner is busy; a replica's are kept current by its replicator)."""
        self.models.catch_up(progress=self._progress)

    @property
    def lag(self) -> int:
        """Blocks the canonical read models are behind the head (0: caught up)."""
        return max(0, self.store.head.height - self.as_of.height)

    @property
    def as_of(self) -> Checkpoint:
        """The canonical read models' checkpoint (height -1: nothing folded yet)."""
        return self.models.read(lambda view: view.checkpoint())

    # -- argument checks ---------------------------------------------------------------

    def check_branch(self, branch: int | None) -> dict[str, Any] | None:
        """The branch record, or `CommandInvalid` naming the known branches."""
        if branch is None:
            return None
        try:
            return self.store.branch(branch)
        except NotFound as exc:
            raise CommandInvalid(str(exc)) from None

    def top(self, branch: int | None) -> int:
        """The highest height of the canonical chain or of a branch."""
        rec = self.check_branch(branch)
        return self.store.head.height if rec is None else int(rec["last_height"])

    def height_range(self, from_height: int | None, to_height: int | None,
                     branch: int | None) -> tuple[int, int]:
        """[lo, hi] of a query on `branch` (default: genesis to its top), checked."""
        top = self.top(branch)
        for value, name in ((from_height, "--from-height"), (to_height, "--to-height")):
            if value is not None and not 0 <= value <= top:
                raise CommandInvalid(f"{name} must be a height between 0 and {top}, was {value}")
        lo = 0 if from_height is None else from_height
        hi = top if to_height is None else to_height
        if lo > hi:
            raise CommandInvalid(f"--from-height {lo} is above --to-height {hi}")
        return lo, hi

    def _at(self, at_height: int | None, branch: int | None) -> int:
        top = self.top(branch)
        if at_height is None:
            return top
        if not 0 <= at_height <= top:
            where = "the head" if branch is None else f"branch {branch}'s last height"
            raise CommandInvalid(f"--at-height must be between 0 and {where} {top}, "
                                 f"was {at_height}")
        return at_height

    def _segments(self, lo: int, hi: int, branch: int | None) -> list[tuple[int, int, int]]:
        """(namespace, lo, hi) pieces of a height range: the canonical part and, for a
        branch, its own part above the base (whose read models are built on demand)."""
        if branch is None:
            return [(CANONICAL, lo, hi)]
        rec = self.check_branch(branch)
        assert rec is not None
        base = int(rec["base_height"])
        out = []
        if lo <= base:
            self._require_ancestry(branch, rec)
            out.append((CANONICAL, lo, min(hi, base)))
        if hi > base:
            self.models.ensure_branch(branch)
            out.append((branch, max(lo, base + 1), hi))
        return out

    def _require_ancestry(self, branch: int, rec: dict[str, Any]) -> None:
        base = int(rec["base_height"])
        try:
            ok = self.store.block(base).hash == bytes(rec["base_hash"])
        except NotFound:
            ok = False
        if not ok:
            raise NotFound(f"branch {branch}: its base block {base} is no longer on the "
                           "canonical chain, so its shared history cannot be read from it")

    def _read(self, fn: Callable[[AuditView], T]) -> tuple[Checkpoint, T]:
        """Run `fn` in one read-model snapshot; re-run it if a rollback moved the chain
        under the read (the checkpoint's block is then no longer canonical)."""
        for _ in range(3):
            ck, out = self.models.read(lambda view: (view.checkpoint(), fn(view)))
            if ck.height < 0 or self._canonical(ck):
                return ck, out
            self.catch_up()
        raise NotFound("the read models keep falling off the canonical chain; "
                       "run `ledgerctl rebuild` and retry")

    def _canonical(self, ck: Checkpoint) -> bool:
        try:
            return self.store.block(ck.height).hash == ck.hash
        except NotFound:
            return False

    # -- statement lines -------------------------------------------------------------

    @_pinned
    def statement(self, acct: str, *, from_height: int | None = None,
                  to_height: int | None = None, branch: int | None = None,
                  limit: int | None = None) -> dict[str, Any]:
        """An account's statement lines in a height range, with opening and closing balance.

        `opening_balance_qq + sum(delta_qq) == closing_balance_qq`; each line's
        `balance_qq` is the balance after it. Canonical lines stop at the read
        models' checkpoint (`as_of_height`). With `limit`, the last `limit` lines.
        """
        lo, hi = self.height_range(from_height, to_height, branch)
        segs = self._segments(lo, hi, branch)
        shared = self._shared_below(branch)

        def read(view: AuditView) -> tuple[list[StatementLine], int]:
            first_ns, first_lo, _ = segs[0]
            opening = view.balance_before(first_ns, acct, first_lo,
                                          None if first_ns == CANONICAL else shared)
            got: list[StatementLine] = []
            for ns, a, b in segs:
                got.extend(view.lines(ns, acct, a, b))
            return got, opening

        ck, (lines, open_bal) = self._read(read)
        if limit is not None:
            lines = lines[-limit:] if limit > 0 else []
        events = self._events_at([ln for ln in lines if ln.joins_event], branch)
        rows = [ln.to_json(events.get(ln.seq)) for ln in lines]
        if lines:
            first = lines[0]
            open_bal = first.balance_qq - first.delta_qq
        closing = lines[-1].balance_qq if lines else open_bal
        return {"acct": acct, "branch": branch, "from_height": lo, "to_height": hi,
                "as_of_height": ck.height, "opening_balance_qq": open_bal,
                "closing_balance_qq": closing, "total_delta_qq": closing - open_bal,
                "lines": rows}

    def _shared_below(self, branch: int | None) -> int | None:
        """For a branch: one above its base, the bound of the canonical history it shares
        (canonical lines above the base belong to the chain that replaced it)."""
        rec = self.check_branch(branch)
        return None if rec is None else int(rec["base_height"]) + 1

    def _events_at(self, lines: list[StatementLine], branch: int | None) -> dict[int, Any]:
        """The events at the lines' seqs (canonical or, above a branch's base, archived)."""
        if not lines:
            return {}
        rec = self.check_branch(branch)
        base = -1 if rec is None else int(rec["base_height"])
        own = [ln.seq for ln in lines if rec is not None and ln.height > base]
        shared = [ln.seq for ln in lines if rec is None or ln.height <= base]
        raws = self.store.event_bytes(shared)
        if own:
            raws.update(self.store.event_bytes(own, branch=branch))
        kinds = {ln.seq: ln.kind for ln in lines}
        out = {}
        for seq, raw in raws.items():
            ev = decode(raw, seq).event
            # A rollback between the two reads could put another event there.
            if isinstance(ev, o.Filled if kinds[seq] == FILL else o.FundingSettled):
                out[seq] = ev
        return out

    @_pinned
    def balance_at(self, acct: str, height: int, branch: int | None = None) -> int | None:
        """The statement's balance after `height` (None if the read models are behind it)."""
        segs = self._segments(0, height, branch)
        ns, _, hi = segs[-1]
        shared = self._shared_below(branch) if len(segs) > 1 else None

        def fn(view: AuditView) -> int:
            return view.balance_before(ns, acct, hi + 1, shared)

        ck, bal = self._read(fn)
        if branch is None and height > ck.height:
            return None
        return bal

    # -- account ---------------------------------------------------------------------

    @_pinned
    def account(self, acct: str, *, at_height: int | None = None,
                from_height: int | None = None, to_height: int | None = None,
                branch: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """An account at a height (balance, positions, open orders, account value and
        margin, by time travel) and its statement lines in a height range.

        `at_height` defaults to the head (or the branch's last height); the
        statement range defaults to 0..at_height. `statement_balance_qq` is the
        read model's own balance at that height: it must equal `balance_qq`.
        Raises `NotFound` if the account does not exist at that height.
        """
        h = self._at(at_height, branch)
        engine = state_at(self.store, h, branch, rm=self.models.readmodels)
        if acct not in set(engine.accounts()):
            raise NotFound(f"account {acct!r} does not exist at height {h}"
                           + ("" if branch is None else f" of branch {branch}"))
        doc = account_state(engine, acct)
        doc.update(acct=acct, branch=branch, height=h,
                   statement_balance_qq=self.balance_at(acct, h, branch))
        doc["statement"] = self.statement(
            acct, from_height=from_height, to_height=h if to_height is None else to_height,
            branch=branch, limit=limit)
        return doc

    # -- fills, events -----------------------------------------------------------------

    @_pinned
    def events(self, *, account: str | None = None, market: str | None = None,
               type_name: str | None = None, from_height: int | None = None,
               to_height: int | None = None, branch: int | None = None,
               limit: int | None = None) -> list[dict[str, Any]]:
        """Events by account, market and type in a height range (index-driven)."""
        code = None
        if type_name is not None:
            cls = BY_NAME.get(type_name)
            if cls is None:
                raise CommandInvalid(f"unknown event type {type_name!r} "
                                     "(e.g. Filled, Liquidated, FundingTicked)")
            code = cls.TYPE_CODE
        return [envelope_json(e) for e in self._chain_events(
            account, market, code, from_height, to_height, branch, limit)]

    def _chain_events(self, account: str | None, market: str | None, code: int | None,
                      from_height: int | None, to_height: int | None, branch: int | None,
                      limit: int | None) -> list[Envelope]:
        lo, hi = self.height_range(from_height, to_height, branch)
        out: list[Envelope] = []
        rec = self.check_branch(branch)
        pieces: list[tuple[int | None, int, int]] = []
        if rec is None:
            pieces.append((None, lo, hi))
        else:
            base = int(rec["base_height"])
            if lo <= base:
                self._require_ancestry(branch or 0, rec)
                pieces.append((None, lo, min(hi, base)))
            if hi > base:
                pieces.append((branch, max(lo, base + 1), hi))
        for chain_branch, a, b in pieces:
            left = None if limit is None else limit - len(out)
            if left is not None and left <= 0:
                break
            out.extend(self.store.events_by(account=account, market=market, type_code=code,
                                            from_height=a, to_height=b, branch=chain_branch,
                                            limit=left))
        return out

    @_pinned
    def fills(self, *, account: str | None = None, market: str | None = None,
              from_height: int | None = None, to_height: int | None = None,
              branch: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Fills with fees and realized P&L per side; with `account`, its side and delta."""
        rows = []
        for env in self._chain_events(account, market, code(o.Filled), from_height,
                                      to_height, branch, limit):
            ev = env.event
            row: dict[str, Any] = {"seq": env.seq, "height": env.height,
                                   **to_jsonable(ev)}
            if account is not None:
                taker = ev.taker == account
                row["role"] = "taker" if taker else "maker"
                row["side"] = ev.taker_side.name if taker else (
                    Side.SELL if ev.taker_side == Side.BUY else Side.BUY).name
                row["fee_qq"] = ev.taker_fee_qq if taker else ev.maker_fee_qq
                row["realized_qq"] = ev.taker_realized_qq if taker else ev.maker_realized_qq
                row["delta_qq"] = row["realized_qq"] - row["fee_qq"]
            rows.append(row)
        return rows

    # -- funding ---------------------------------------------------------------------

    @_pinned
    def funding(self, market: str, *, from_height: int | None = None,
                to_height: int | None = None, branch: int | None = None) -> dict[str, Any]:
        """A market's funding history: every tick (index before and after, rate, premium,
        dt, oracle; rejected ticks with the reason) and the settlements in the range."""
        lo, hi = self.height_range(from_height, to_height, branch)
        if not self._chain_events(None, market, code(o.MarketListed), None, None, branch,
                                  1):
            raise CommandInvalid(f"unknown market {market!r}")
        segs = self._segments(lo, hi, branch)

        def read(view: AuditView) -> list[dict[str, Any]]:
            return [t for ns, a, b in segs for t in view.funding_ticks(ns, market, a, b)]

        ck, ticks = self._read(read)
        by_acct: dict[str, int] = {}
        paid = received = dust = count = 0
        for env in self._chain_events(None, market, code(o.FundingSettled), lo, hi,
                                      branch, None):
            ev = env.event
            count += 1
            by_acct[ev.acct] = by_acct.get(ev.acct, 0) + ev.amount_qq
            dust += ev.dust
            if ev.amount_qq < 0:
                paid += ev.amount_qq
            else:
                received += ev.amount_qq
        applied = [t for t in ticks if t["status"] == "applied"]
        return {"market": market, "branch": branch, "from_height": lo, "to_height": hi,
                "as_of_height": ck.height, "ticks": ticks,
                "applied": len(applied), "rejected": len(ticks) - len(applied),
                "first_index": applied[0]["prev_index"] if applied else None,
                "last_index": applied[-1]["new_index"] if applied else None,
                "settlements": {"count": count, "total_qq": paid + received, "paid_qq": paid,
                                "received_qq": received, "dust": dust,
                                "by_account": dict(sorted(by_acct.items()))}}

    # -- liquidations ------------------------------------------------------------------

    @_pinned
    def liquidations(self, *, account: str | None = None, market: str | None = None,
                     from_height: int | None = None, to_height: int | None = None,
                     branch: int | None = None) -> list[dict[str, Any]]:
        """The liquidation register: each liquidation with its positions, fee, deficit,
        balance deltas and the deleveragings and socialized losses that completed it.
        `account` matches the liquidated account or an ADL counterparty."""
        lo, hi = self.height_range(from_height, to_height, branch)
        segs = self._segments(lo, hi, branch)

        def read(view: AuditView) -> list[dict[str, Any]]:
            return [r for ns, a, b in segs for r in view.liquidations(ns, a, b)]

        _, recs = self._read(read)
        return [r for r in recs if _liq_matches(r, account, market)]

    # -- state -----------------------------------------------------------------------

    @_pinned
    def state(self, *, at_height: int | None = None, branch: int | None = None
              ) -> dict[str, Any]:
        """The exchange at a height: per market open interest, oracle, mark, index, modes;
        vault and fee balances; totals (balances, external flows, dust, bad debt)."""
        h = self._at(at_height, branch)
        engine = state_at(self.store, h, branch, rm=self.models.readmodels)
        doc = {"height": h, "branch": branch, "state_hash": engine.state_hash().hex()}
        doc.update(exchange_summary(engine))
        return doc

    # -- export ------------------------------------------------------------------------

    @_pinned
    def export(self, what: str, fmt: str, out: IO[str], *, account: str | None = None,
               market: str | None = None, type_name: str | None = None,
               from_height: int | None = None, to_height: int | None = None,
               branch: int | None = None) -> int:
        """Write rows of `what` (statement, fills, funding, liquidations, events) as JSON
        Lines or CSV to `out`; return the row count. Nested values are JSON in CSV cells."""
        if what not in EXPORTS:
            raise CommandInvalid(f"export what must be one of {', '.join(EXPORTS)}, was {what!r}")
        if fmt not in FORMATS:
            raise CommandInvalid(f"--format must be jsonl or csv, was {fmt!r}")
        rows = self._export_rows(what, account, market, type_name, from_height, to_height,
                                 branch)
        n = 0
        if fmt == "jsonl":
            for row in rows:
                out.write(json.dumps(row) + "\n")
                n += 1
            return n
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            flat = {k: json.dumps(v) if isinstance(v, dict | list) else v
                    for k, v in row.items()}
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(flat), extrasaction="ignore",
                                        restval="")
                writer.writeheader()
            writer.writerow(flat)
            n += 1
        return n

    def rows(self, what: str, *, account: str | None = None, market: str | None = None,
             type_name: str | None = None, from_height: int | None = None,
             to_height: int | None = None, branch: int | None = None
             ) -> Iterator[dict[str, Any]]:
        """The rows `export` writes for `what`, as dicts (for other writers: Parquet)."""
        if what not in EXPORTS:
            raise CommandInvalid(f"export what must be one of {', '.join(EXPORTS)}, was {what!r}")
        return self._export_rows(what, account, market, type_name, from_height, to_height,
                                 branch)

    def _export_rows(self, what: str, account: str | None, market: str | None,
                     type_name: str | None, from_height: int | None, to_height: int | None,
                     branch: int | None) -> Iterator[dict[str, Any]]:
        if what == "statement":
            if account is not None:
                yield from self.statement(account, from_height=from_height,
                                          to_height=to_height, branch=branch)["lines"]
            else:
                yield from self._all_lines(from_height, to_height, branch)
        elif what == "fills":
            yield from self.fills(account=account, market=market, from_height=from_height,
                                  to_height=to_height, branch=branch)
        elif what == "funding":
            if market is None:
                raise CommandInvalid("export funding needs --market")
            for tick in self.funding(market, from_height=from_height, to_height=to_height,
                                     branch=branch)["ticks"]:
                yield {"market": market, **tick}
        elif what == "liquidations":
            yield from self.liquidations(account=account, market=market,
                                         from_height=from_height, to_height=to_height,
                                         branch=branch)
        else:
            yield from self.events(account=account, market=market, type_name=type_name,
                                   from_height=from_height, to_height=to_height,
                                   branch=branch)

    def _all_lines(self, from_height: int | None, to_height: int | None,
                   branch: int | None) -> Iterator[dict[str, Any]]:
        """Every account's lines in a range, by height and seq (a scan of the namespace)."""
        lo, hi = self.height_range(from_height, to_height, branch)
        segs = self._segments(lo, hi, branch)

        def read(view: AuditView) -> list[StatementLine]:
            got = [ln for ns, a, b in segs for ln in view.all_lines(ns, a, b)]
            got.sort(key=lambda ln: (ln.height, ln.seq, ln.acct))
            return got

        _, lines = self._read(read)
        events = self._events_at([ln for ln in lines if ln.joins_event], branch)
        for ln in lines:
            yield ln.to_json(events.get(ln.seq))


# -- helpers ---------------------------------------------------------------------------


def _liq_matches(rec: dict[str, Any], account: str | None, market: str | None) -> bool:
    if account is not None and rec["acct"] != account and all(
            d["offset"] != account for d in rec["deleveraged"]):
        return False
    return market is None or any(p["mkt"] == market for p in rec.get("positions", [])) or any(
        d["mkt"] == market for d in rec["deleveraged"])
