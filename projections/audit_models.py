"""The audit read models, folded from OUT events alone: statements, funding, liquidations.

Three read models, maintained by the runner in one pass (`AuditProjection`):

- **Statement lines**, per account: one line for every event that moves the
  account's settled balance (deposits, withdrawals, fills with fee and realized
  P&L, the fee income of FEES, funding settlements, liquidations and vault
  takeovers, deleveragings, socialized losses, refunds paid and received,
  external flows carried forward across a rollback). Each line has its seq,
  height, the balance delta in qq and the balance after it, so
  `opening + sum(deltas) == closing` holds line by line. Fill and funding
  lines store only what their event does not say (role, position after);
  queries join the event at `seq` for the rest. FEES gets one `fee_income`
  line per run of fills (per block, by market), not one per fill.
- **Funding history**, per market: every `FundingTicked` (index before and
  after, rate, premium, dt, oracle) and every `FundingTickRejected`, each with
  the market's cumulative settled funding at that point (`settled_cum_qq`), so
  the funding moved between two ticks is a subtraction.
- **Liquidation register**: every `Liquidated` with its positions, fee,
  deficit and the balance deltas it caused, plus the `Deleveraged` and
  `SocializedLossApplied` events that completed it.

The fold mirrors `ledger.core.evolve` for balances and position costs only
(and uses the same `fill_realized`), so it needs no engine and no snapshot:
it is an independent computation the tests check against the engine. Its
state (balances, positions, funding totals) is small and is saved as a blob
with every checkpoint. Only the event types below are decoded; the rest are
skipped by their type code without being unpacked.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import msgpack

from ledger.core.positions import fill_realized
from ledger.core.state import FEES, LIQ_VAULT
from ledger.events import outcomes as o
from ledger.events.codec import CODE_AT, decode_verified
from ledger.events.enums import LiquidationMethod, Side
from ledger.store.blocks import BlockHeader
from projections.readmodels import (
    T_FUNDING,
    T_LIQS,
    T_STMT,
    ReadModels,
    Txn,
    put_entries,
    put_hx,
    s8,
    u32,
    u64,
    unpack,
)

STATE_VERSION = 1

# Kinds of statement lines (stable strings: they are stored and exported).
DEPOSIT = "deposit"
WITHDRAWAL = "withdrawal"
FILL = "fill"
FEE_INCOME = "fee_income"
FUNDING = "funding"
LIQUIDATION = "liquidation"
TAKEOVER = "liquidation_takeover"
DELEVERAGE = "deleverage"
SOCIALIZED = "socialized_loss"
REFUND = "refund"
REFUND_PAID = "refund_paid"
CARRIED = "carried_forward"
#: `role` of a fill line's detail ([role, position after]).
TAKER = 0
MAKER = 1
#: kinds whose stored detail is flat fields, not one dict
_FLAT_KINDS = frozenset((FILL, FUNDING))
KINDS = (DEPOSIT, WITHDRAWAL, FILL, FEE_INCOME, FUNDING, LIQUIDATION, TAKEOVER, DELEVERAGE,
         SOCIALIZED, REFUND, REFUND_PAID, CARRIED)


class StatementLine(NamedTuple):
    """One balance movement of one account."""

    acct: str
    height: int
    seq: int
    kind: str
    delta_qq: int
    balance_qq: int
    mkt: str | None
    #: the kind's own fields: a dict, or for fills [role, position after] and for
    #: funding [position], whose other fields are the event's
    detail: Any

    @property
    def joins_event(self) -> bool:
        """Fill and funding lines take their details from the event at `seq`."""
        return self.kind in (FILL, FUNDING)

    def to_json(self, event: Any = None) -> dict[str, Any]:
        """The line as JSON; fill and funding lines need their event (see `joins_event`)."""
        doc: dict[str, Any] = {"acct": self.acct, "height": self.height, "seq": self.seq,
                               "kind": self.kind, "delta_qq": self.delta_qq,
                               "balance_qq": self.balance_qq, "mkt": self.mkt}
        if self.kind == FILL:
            role, position = self.detail
            doc["role"] = "taker" if role == TAKER else "maker"
            if event is not None:
                taker = role == TAKER
                buy = (event.taker_side == Side.BUY) == taker
                doc.update(side="BUY" if buy else "SELL", qty_bq=event.qty_bq,
                           price_st=event.price_st, value_qq=event.value_qq,
                           fee_qq=event.taker_fee_qq if taker else event.maker_fee_qq,
                           realized_qq=(event.taker_realized_qq if taker
                                        else event.maker_realized_qq),
                           counterparty=event.maker if taker else event.taker,
                           order_id=event.taker_order if taker else event.maker_order)
            doc["position_bq"] = position
        elif self.kind == FUNDING:
            if event is not None:
                doc.update(idx_from=event.idx_from, idx_to=event.idx_to, dust=event.dust)
            doc["position_bq"] = self.detail[0]
        else:
            doc.update(self.detail)
        return doc


def stmt_key(ns: int, acct: str, height: int, seq: int, k: int) -> bytes:
    return u32(ns) + s8(acct) + u64(height) + u64(seq) + u32(k)


def funding_key(ns: int, mkt: str, height: int, seq: int) -> bytes:
    return u32(ns) + s8(mkt) + u64(height) + u64(seq)


def liq_key(ns: int, height: int, seq: int) -> bytes:
    return u32(ns) + u64(height) + u64(seq)


def decode_line(key: bytes, value: bytes) -> StatementLine:
    """A stored statement line back into a `StatementLine`.

    Stored value: `(kind, delta, balance, mkt, *detail)`, where detail is
    `role, position` for a fill, `position` for funding, else one dict.
    """
    _ns, acct, height, seq, _k = split_stmt_key(key)
    return line_from(acct, height, seq, value)


def split_stmt_key(key: bytes) -> tuple[int, str, int, int, int]:
    """(namespace, account, height, seq, k) of a statement line's key (`stmt_key`)."""
    n = key[4]
    p = 5 + n
    return (int.from_bytes(key[:4], "big"), key[5:p].decode(),
            int.from_bytes(key[p:p + 8], "big"), int.from_bytes(key[p + 8:p + 16], "big"),
            int.from_bytes(key[p + 16:p + 20], "big"))


def split_funding_key(key: bytes) -> tuple[int, str, int, int]:
    """(namespace, market, height, seq) of a funding tick's key (`funding_key`)."""
    n = key[4]
    p = 5 + n
    return (int.from_bytes(key[:4], "big"), key[5:p].decode(),
            int.from_bytes(key[p:p + 8], "big"), int.from_bytes(key[p + 8:p + 16], "big"))


def split_liq_key(key: bytes) -> tuple[int, int, int]:
    """(namespace, height, seq) of a liquidation register record's key (`liq_key`)."""
    return (int.from_bytes(key[:4], "big"), int.from_bytes(key[4:12], "big"),
            int.from_bytes(key[12:20], "big"))


def line_from(acct: str, height: int, seq: int, value: bytes) -> StatementLine:
    """A statement line from its key parts and its stored value (any store)."""
    arr = unpack(value)
    kind = arr[0]
    detail = arr[4:] if kind in _FLAT_KINDS else arr[4]
    return StatementLine(acct, height, seq, kind, arr[1], arr[2], arr[3], detail)


#: A statement line as columns: account, height, seq, k, its value (kind, delta, balance,
#: mkt, *detail) and that value's stored bytes.
LineColumns = tuple[str, int, int, int, tuple[Any, ...], bytes]


class Staged(NamedTuple):
    """The read-model entries a fold staged since the last flush, as (key, value) pairs
    of the LMDB layout: what a store other than the read-model environment writes.
    A fold that keeps line columns (`columns=True`) stages its statement lines in
    `line_columns` only, and `lines` stays empty."""

    lines: list[tuple[bytes, bytes]]
    ticks: list[tuple[bytes, bytes]]
    liqs: list[tuple[bytes, bytes]]
    line_columns: list[LineColumns] | None = None


_packer = msgpack.Packer(use_bin_type=True)


def _pack(obj: Any) -> bytes:
    return cast(bytes, _packer.pack(obj))


def code(cls: type[Any]) -> int:
    """The type code of a catalogue record class (set by its `@event` decorator)."""
    return int(cast(Any, cls).TYPE_CODE)
#: height, seq, k: k numbers the lines of one event (a RolledBack carrying 10,000
#: flows has 10,000), so it is a u32 like every other count in the layout.
_LINE_KEY = struct.Struct(">QQI").pack
#: hx key suffix (table byte, k byte; k is always 0 for these tables) by table.
_TK = {t: bytes((t, 0)) for t in (T_FUNDING, T_LIQS)}

class AuditProjection:
    """The fold behind the three audit read models (see module docstring)."""

    name = "audit"
    #: keep fold states at rollback-able heights, so a rewind drops little.
    retain_states = True

    def __init__(self, *, columns: bool = False) -> None:
        #: stage each statement line as columns (what a SQL replica writes) instead of
        #: as an LMDB key and value, so no one builds a key only to parse it back.
        self.columns = columns
        #: namespace the staged entries are keyed under (0 canonical, b a branch).
        self.ns = 0
        self._nsb = u32(0)
        self.reset()
        self._handlers: dict[int, Callable[[Any, int, int, bool], None]] = {
            code(o.Deposited): self._deposited,
            code(o.Withdrew): self._withdrew,
            code(o.Filled): self._filled,
            code(o.FundingTicked): self._funding_ticked,
            code(o.FundingTickRejected): self._funding_rejected,
            code(o.FundingSettled): self._funding_settled,
            code(o.Liquidated): self._liquidated,
            code(o.Deleveraged): self._deleveraged,
            code(o.SocializedLossApplied): self._socialized,
            code(o.RolledBack): self._rolled_back,
            code(o.RefundIssued): self._refund,
        }
        self._wanted = bytes(1 if c in self._handlers else 0 for c in range(256))

    # -- state -----------------------------------------------------------------

    def reset(self) -> None:
        """The empty state before genesis."""
        self.bal: dict[str, int] = {}
        #: acct -> mkt -> [size bq, cost qq]
        self.pos: dict[str, dict[str, list[int]]] = {}
        #: mkt -> [cumulative settled funding qq, cumulative dust (x S)]
        self.fund: dict[str, list[int]] = {}
        self._clear_pending()

    def _clear_pending(self) -> None:
        self._lines: list[tuple[bytes, bytes]] = []
        self._columns: list[LineColumns] | None = [] if self.columns else None
        self._ticks: list[tuple[bytes, bytes]] = []
        self._liqs: dict[bytes, dict[str, Any]] = {}
        self._hx: list[tuple[bytes, bytes]] = []
        #: account -> key prefix of its lines, for the accounts written since the last flush
        #: (what the commit's `touch` record names).
        self._akeys: dict[str, bytes] = {}
        self._first_h: int | None = None
        self._last_h = -1
        #: liquidated account -> key of its latest register record in this block.
        self._open_liq: dict[str, bytes] = {}
        #: FEES income of the fills since its last line: [last seq, {mkt: [n, maker, taker]}]
        self._fees: list[Any] | None = None

    def dump(self) -> bytes:
        """The fold state as msgpack."""
        return _pack([STATE_VERSION, self.bal, self.pos, self.fund])

    def load(self, blob: bytes) -> None:
        """Restore the fold state from `dump` bytes."""
        version, bal, pos, fund = unpack(blob)
        if version != STATE_VERSION:
            raise ValueError(f"audit fold state version {version}, expected {STATE_VERSION}")
        self._clear_pending()
        self.bal, self.pos, self.fund = bal, pos, fund

    def balances(self) -> dict[str, int]:
        """Every account's balance as folded so far (a copy)."""
        return dict(self.bal)

    def positions(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Every account's non-flat (size, cost) per market as folded so far."""
        return {a: {m: (p[0], p[1]) for m, p in ps.items() if p[0]}
                for a, ps in self.pos.items()}

    # -- folding ---------------------------------------------------------------

    def set_namespace(self, ns: int) -> None:
        self.ns = ns
        self._nsb = u32(ns)
        self._akeys = {}

    def fold(self, hdr: BlockHeader, datas: Sequence[bytes], write: bool) -> None:
        """Fold one block's stored events; with `write`, stage the read-model entries."""
        height = hdr.height
        seq = hdr.first_seq - 1
        wanted = self._wanted
        handlers = self._handlers
        code_at = CODE_AT
        if write:
            self._hpre = self._nsb + u64(height)
            if self._first_h is None:
                self._first_h = height
            self._last_h = height
        for data in datas:
            seq += 1
            code = data[code_at[data[0]]]
            if wanted[code]:
                handlers[code](decode_verified(data, seq).event, height, seq, write)
        if self._fees is not None:
            self._flush_fees(height)
        self._open_liq.clear()

    def flush(self, txn: Txn, rm: ReadModels, ns: int, *, touch: bool = True) -> None:
        """Write the staged entries (inside the checkpoint's transaction); `touch` also
        records which accounts got lines (what a rewind needs)."""
        if self.columns:
            raise ValueError("a fold that keeps line columns stages for a SQL replica; "
                             "flush needs AuditProjection(columns=False)")
        hx, akeys, first_h, last_h = self._hx, self._akeys, self._first_h, self._last_h
        staged = self.take_staged()
        put_entries(txn, rm, T_STMT, staged.lines)
        put_entries(txn, rm, T_FUNDING, staged.ticks)
        put_entries(txn, rm, T_LIQS, staged.liqs)
        put_hx(txn, rm, hx)
        if touch and akeys and first_h is not None:
            rm.add_touch(txn, ns, first_h, last_h, akeys.values())

    def take_staged(self) -> Staged:
        """Hand over the entries staged since the last flush and forget them."""
        staged = Staged(self._lines, self._ticks,
                        [(k, _pack(rec)) for k, rec in self._liqs.items()], self._columns)
        self._lines = []
        self._columns = [] if self.columns else None
        self._ticks = []
        self._liqs = {}
        self._hx = []
        self._akeys = {}
        self._first_h = None
        return staged

    # -- helpers ---------------------------------------------------------------

    def _move(self, acct: str, delta: int) -> int:
        bal = self.bal.get(acct, 0) + delta
        self.bal[acct] = bal
        return bal

    def _line(self, acct: str, height: int, seq: int, k: int, kind: str, delta: int,
              mkt: str | None, detail: dict[str, Any]) -> None:
        if acct == FEES and self._fees is not None:
            self._flush_fees(height)
        self._put_line(acct, height, seq, k, (kind, delta, self._move(acct, delta), mkt, detail))

    def _put_line(self, acct: str, height: int, seq: int, k: int, value: tuple[Any, ...]
                  ) -> None:
        packed = _pack(value)
        if self._columns is not None:
            self._columns.append((acct, height, seq, k, value, packed))
            return
        pre = self._akeys.get(acct)
        if pre is None:
            pre = self._akeys[acct] = self._nsb + s8(acct)
        self._lines.append((pre + _LINE_KEY(height, seq, k), packed))

    def _entry(self, table: int, store: list[tuple[bytes, bytes]], key: bytes, seq: int,
               value: bytes) -> None:
        store.append((key, value))
        self._hx.append((self._hpre + u64(seq) + _TK[table], key))

    def _flush_fees(self, height: int) -> None:
        fees = self._fees
        assert fees is not None
        self._fees = None
        last_seq, per = fees
        total = sum(m + t for _, m, t in per.values())
        self._line(FEES, height, last_seq, 2, FEE_INCOME, total, None, {
            "fills": sum(n for n, _, _ in per.values()),
            "by_market": {mkt: {"fills": n, "maker_fee_qq": m, "taker_fee_qq": t}
                          for mkt, (n, m, t) in sorted(per.items())}})

    def _apply(self, acct: str, mkt: str, q: int, v: int, realized: int) -> int:
        """Apply (q, v) with its realized P&L to a position; return the new size."""
        ps = self.pos.get(acct)
        if ps is None:
            ps = self.pos[acct] = {}
        p = ps.get(mkt)
        if p is None:
            p = ps[mkt] = [0, 0]
        p[0] += q
        p[1] += v + realized
        return p[0]

    def _size_cost(self, acct: str, mkt: str) -> tuple[int, int]:
        p = self.pos.get(acct, {}).get(mkt)
        return (0, 0) if p is None else (p[0], p[1])

    # -- handlers (one per event type; the balance rules of evolve) --------------

    def _deposited(self, ev: o.Deposited, h: int, seq: int, w: bool) -> None:
        if w:
            self._line(ev.acct, h, seq, 0, DEPOSIT, ev.amount_qq, None, {"ext_ref": ev.ext_ref})
        else:
            self._move(ev.acct, ev.amount_qq)

    def _withdrew(self, ev: o.Withdrew, h: int, seq: int, w: bool) -> None:
        if w:
            self._line(ev.acct, h, seq, 0, WITHDRAWAL, -ev.amount_qq, None,
                       {"ext_ref": ev.ext_ref})
        else:
            self._move(ev.acct, -ev.amount_qq)

    def _filled(self, ev: o.Filled, h: int, seq: int, w: bool) -> None:
        k = ev.qty_bq
        buy = ev.taker_side == Side.BUY
        tq, tv = (k, ev.value_qq) if buy else (-k, -ev.value_qq)
        t_size = self._apply(ev.taker, ev.mkt, tq, tv, ev.taker_realized_qq)
        m_size = self._apply(ev.maker, ev.mkt, -tq, -tv, ev.maker_realized_qq)
        t_delta = ev.taker_realized_qq - ev.taker_fee_qq
        m_delta = ev.maker_realized_qq - ev.maker_fee_qq
        if not w:
            self._move(ev.taker, t_delta)
            self._move(ev.maker, m_delta)
            self._move(FEES, ev.maker_fee_qq + ev.taker_fee_qq)
            return
        # The fill's own fields (qty, price, fee, realized...) are joined from the event at
        # query time; the line keeps what the event does not say: role, position after.
        self._put_line(ev.taker, h, seq, 0, (FILL, t_delta, self._move(ev.taker, t_delta),
                                             ev.mkt, TAKER, t_size))
        self._put_line(ev.maker, h, seq, 1, (FILL, m_delta, self._move(ev.maker, m_delta),
                                             ev.mkt, MAKER, m_size))
        # FEES gets one line per run of fills (at the last one's seq), not one per fill.
        fees = self._fees
        if fees is None:
            fees = self._fees = [seq, {}]
        fees[0] = seq
        per = fees[1].get(ev.mkt)
        if per is None:
            per = fees[1][ev.mkt] = [0, 0, 0]
        per[0] += 1
        per[1] += ev.maker_fee_qq
        per[2] += ev.taker_fee_qq

    def _funding_settled(self, ev: o.FundingSettled, h: int, seq: int, w: bool) -> None:
        f = self.fund.get(ev.mkt)
        if f is None:
            f = self.fund[ev.mkt] = [0, 0]
        f[0] += ev.amount_qq
        f[1] += ev.dust
        if w:
            self._put_line(ev.acct, h, seq, 0, (FUNDING, ev.amount_qq,
                                                self._move(ev.acct, ev.amount_qq), ev.mkt,
                                                self._size_cost(ev.acct, ev.mkt)[0]))
        else:
            self._move(ev.acct, ev.amount_qq)

    def _tick(self, mkt: str, h: int, seq: int, doc: dict[str, Any]) -> None:
        cum = self.fund.get(mkt, [0, 0])
        doc["settled_cum_qq"] = cum[0]
        doc["dust_cum"] = cum[1]
        self._entry(T_FUNDING, self._ticks, funding_key(self.ns, mkt, h, seq), seq, _pack(doc))

    def _funding_ticked(self, ev: o.FundingTicked, h: int, seq: int, w: bool) -> None:
        if w:
            self._tick(ev.mkt, h, seq, {
                "status": "applied", "time": ev.time, "prev_index": ev.prev_index,
                "new_index": ev.new_index, "rate_ppm": ev.rate_ppm,
                "premium_ppm": ev.premium_ppm, "dt": ev.dt, "oracle_st": ev.oracle_st})

    def _funding_rejected(self, ev: o.FundingTickRejected, h: int, seq: int, w: bool) -> None:
        if w:
            self._tick(ev.mkt, h, seq, {
                "status": "rejected", "time": ev.time, "reason": ev.reason,
                "published_index": ev.published_index, "expected_index": ev.expected_index,
                "prev_index": ev.prev_index, "prev_time": ev.prev_time})

    def _liquidated(self, ev: o.Liquidated, h: int, seq: int, w: bool) -> None:
        a_delta = 0
        v_delta = 0
        realized: dict[str, int] = {}
        adl = ev.method == LiquidationMethod.ADL
        if not adl:
            # The vault takes each position over at the mark (evolve's _close_to_vault).
            for lp in ev.positions:
                size, cost = self._size_cost(ev.acct, lp.mkt)
                q, v = -size, -lp.notional_qq
                r = fill_realized(size, cost, q, v)
                self._apply(ev.acct, lp.mkt, q, v, r)
                vsize, vcost = self._size_cost(LIQ_VAULT, lp.mkt)
                vr = fill_realized(vsize, vcost, -q, -v)
                self._apply(LIQ_VAULT, lp.mkt, -q, -v, vr)
                realized[lp.mkt] = r
                a_delta += r
                v_delta += vr
            a_delta -= ev.fee_qq
            v_delta += ev.fee_qq
            if ev.method == LiquidationMethod.VAULT:
                a_delta += ev.deficit_qq
                v_delta -= ev.deficit_qq
        if not w:
            self._move(ev.acct, a_delta)
            self._move(LIQ_VAULT, v_delta)
            return
        method = ev.method.name
        self._line(ev.acct, h, seq, 0, LIQUIDATION, a_delta, None, {
            "method": method, "av_qq": ev.av_qq, "mmr_qq": ev.mmr_qq, "fee_qq": ev.fee_qq,
            "deficit_qq": ev.deficit_qq, "realized_qq": realized})
        if not adl:
            self._line(LIQ_VAULT, h, seq, 1, TAKEOVER, v_delta, None, {
                "liquidated": ev.acct, "method": method, "fee_qq": ev.fee_qq,
                "deficit_qq": ev.deficit_qq, "realized_qq": v_delta - ev.fee_qq + (
                    ev.deficit_qq if ev.method == LiquidationMethod.VAULT else 0)})
        key = liq_key(self.ns, h, seq)
        self._hx.append((self._hpre + u64(seq) + _TK[T_LIQS], key))
        self._liqs[key] = {
            "acct": ev.acct, "height": h, "seq": seq, "method": method, "av_qq": ev.av_qq,
            "mmr_qq": ev.mmr_qq, "fee_qq": ev.fee_qq, "deficit_qq": ev.deficit_qq,
            "positions": [{"mkt": p.mkt, "size_bq": p.size_bq, "notional_qq": p.notional_qq,
                           "mark_st": p.mark_st, "mmr_qq": p.mmr_qq,
                           "bankruptcy_value_qq": p.bankruptcy_value_qq,
                           "bankruptcy_price_st": p.bankruptcy_price_st}
                          for p in ev.positions],
            "acct_delta_qq": a_delta, "vault_delta_qq": v_delta,
            "deleveraged": [], "socialized": []}
        self._open_liq[ev.acct] = key

    def _deleveraged(self, ev: o.Deleveraged, h: int, seq: int, w: bool) -> None:
        size, cost = self._size_cost(ev.liquidated, ev.mkt)
        q, v = -ev.qty_bq, -ev.value_qq
        r = fill_realized(size, cost, q, v)
        a_size = self._apply(ev.liquidated, ev.mkt, q, v, r)
        o_size = self._apply(ev.offset, ev.mkt, ev.qty_bq, ev.value_qq, ev.offset_realized_qq)
        if not w:
            self._move(ev.liquidated, r)
            self._move(ev.offset, ev.offset_realized_qq)
            return
        common = {"qty_bq": ev.qty_bq, "value_qq": ev.value_qq}
        self._line(ev.liquidated, h, seq, 0, DELEVERAGE, r, ev.mkt, {
            "role": "liquidated", "counterparty": ev.offset, **common, "realized_qq": r,
            "position_bq": a_size})
        self._line(ev.offset, h, seq, 1, DELEVERAGE, ev.offset_realized_qq, ev.mkt, {
            "role": "offset", "counterparty": ev.liquidated, **common,
            "realized_qq": ev.offset_realized_qq, "position_bq": o_size})
        self._attach(ev.liquidated, h, seq, "deleveraged", {
            "seq": seq, "mkt": ev.mkt, "offset": ev.offset, "qty_bq": ev.qty_bq,
            "value_qq": ev.value_qq, "liquidated_realized_qq": r,
            "offset_realized_qq": ev.offset_realized_qq})

    def _socialized(self, ev: o.SocializedLossApplied, h: int, seq: int, w: bool) -> None:
        if not w:
            self._move(LIQ_VAULT, -ev.vault_paid_qq)
            self._move(ev.acct, ev.vault_paid_qq)
            return
        detail = {"amount_qq": ev.amount_qq, "vault_paid_qq": ev.vault_paid_qq,
                  "bad_debt_qq": ev.bad_debt_qq}
        self._line(ev.acct, h, seq, 0, SOCIALIZED, ev.vault_paid_qq, None,
                   {"role": "liquidated", **detail})
        self._line(LIQ_VAULT, h, seq, 1, SOCIALIZED, -ev.vault_paid_qq, None,
                   {"role": "vault", "liquidated": ev.acct, **detail})
        self._attach(ev.acct, h, seq, "socialized", {"seq": seq, **detail})

    def _attach(self, acct: str, h: int, seq: int, field: str, item: dict[str, Any]) -> None:
        """Add a follow-up event to the liquidation it completes (same block)."""
        key = self._open_liq.get(acct)
        if key is None:
            # No Liquidated before it in this block: register the event on its own.
            key = liq_key(self.ns, h, seq)
            self._hx.append((self._hpre + u64(seq) + _TK[T_LIQS], key))
            self._liqs[key] = {"acct": acct, "height": h, "seq": seq, "method": None,
                               "deleveraged": [], "socialized": []}
            self._open_liq[acct] = key
        self._liqs[key][field].append(item)

    def _rolled_back(self, ev: o.RolledBack, h: int, seq: int, w: bool) -> None:
        for k, f in enumerate(ev.flows):
            if w:
                self._line(f.acct, h, seq, k, CARRIED, f.amount_qq, None, {
                    "ext_ref": f.ext_ref, "orig_seq": f.orig_seq, "branch": ev.branch_id,
                    "target_height": ev.target_height})
            else:
                self._move(f.acct, f.amount_qq)

    def _refund(self, ev: o.RefundIssued, h: int, seq: int, w: bool) -> None:
        if not w:
            self._move(ev.source, -ev.amount_qq)
            self._move(ev.acct, ev.amount_qq)
            return
        self._line(ev.source, h, seq, 0, REFUND_PAID, -ev.amount_qq, None,
                   {"to": ev.acct, "ref": ev.ref})
        self._line(ev.acct, h, seq, 1, REFUND, ev.amount_qq, None,
                   {"source": ev.source, "ref": ev.ref})
