"""What happened in an incident, as one JSON document: the data of `report incident`.

Two shapes of incident (SPEC section 13):

- **rollback** (`branch=B`): the archived branch B, the snapshot it was cut
  back to, the recovery block, the refunds; the counterfactual is B's corrected
  re-execution (projections.counterfactual), and the plan is the refund plan.
- **compensation** (`from_height=H`, no rollback): the canonical chain from the
  first suspect height H; the plan is the compensation plan (`compensate plan`)
  unless the caller passes one in.

Everything is read through the audit queries and the library's own plan
functions (`projections.whatif.whatif`, `projections.refunds.plan_refunds`):
the report computes nothing that the CLI cannot show with `--json`. The plan
goes in as its `to_json()`, rendered generically (whatever per-line fields and
`harm_by_cause` keys it has), so a richer plan needs no change here.

Bad ticks: the plan's `corrections` of funding ticks when it lists them;
otherwise each applied tick that set a non-zero index to zero (what guard G3
refuses), and each tick the guards refused (status `rejected`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.errors import CommandInvalid, NotFound
from ledger.store.reader import ChainReader
from projections.audit import Auditor
from projections.catalog import branches_json, journal_json, snapshots_json
from projections.series import funding_series, liquidation_counts, mark_series
from projections.units import units_from_events

#: blocks shown before the first suspect height
DEFAULT_WINDOW = 30
#: chain events that belong on the timeline, with who/why fields
TIMELINE_TYPES = ("RolledBack", "ModeChanged", "GuardsSet", "MarketHalted", "MarketResumed",
                  "FundingTickRejected", "FundingResumed")


def counts_json(counts: Mapping[int, int]) -> list[dict[str, int]]:
    """{height: n} as rows (JSON keys cannot be integers)."""
    return [{"height": h, "count": n} for h, n in sorted(counts.items())]


def verify_json(store: ChainReader, branch: int | None = None) -> dict[str, Any]:
    """What `ledgerctl verify [--branch B] --json` prints (without --reexecute)."""
    from projections.verification import verify_structure

    return verify_structure(store, branch=branch, guarded=False)


def build_incident(au: Auditor, *, branch: int | None = None, from_height: int | None = None,
                   window: int = DEFAULT_WINDOW, plan: Mapping[str, Any] | None = None,
                   whatif_doc: Mapping[str, Any] | None = None,
                   counterfactual_liquidations: Mapping[int, int] | None = None,
                   ) -> dict[str, Any]:
    """The incident document (see module docstring). With `branch`, the plan and the
    counterfactual default to the library's refund plan and what-if of that branch.
    Every part is read from one consistent view of the store."""
    with au.store.pinned():
        return _build_incident(au, branch, from_height, window, plan, whatif_doc,
                               counterfactual_liquidations)


def _build_incident(au: Auditor, branch: int | None, from_height: int | None, window: int,
                    plan: Mapping[str, Any] | None, whatif_doc: Mapping[str, Any] | None,
                    counterfactual_liquidations: Mapping[int, int] | None) -> dict[str, Any]:
    if (branch is None) == (from_height is None):
        raise CommandInvalid("report incident needs exactly one of --branch B (after a "
                             "rollback) or --from-height H (compensation without rollback)")
    if window < 0:
        raise CommandInvalid(f"--window must be 0 or more, was {window}")
    store = au.store
    head = store.head.height
    rec: dict[str, Any] | None = None
    if branch is not None:
        rows = [b for b in branches_json(store) if b["branch"] == branch]
        if not rows:
            known = ", ".join(str(b["branch"]) for b in branches_json(store)) or "none"
            raise CommandInvalid(f"--branch {branch} is not an archived branch "
                                 f"(archived branches: {known})")
        rec = rows[0]
        suspect = int(rec["first_height"])
        base = int(rec["base_height"])
        last = int(rec["last_height"])
    else:
        assert from_height is not None
        if not 1 <= from_height <= head:
            raise CommandInvalid(f"--from-height must be between 1 and the head {head}, "
                                 f"was {from_height}")
        suspect = from_height
        snap = store.nearest_snapshot(from_height - 1)
        base = snap.height if snap is not None else 0
        last = head
    lo = max(0, suspect - 1 - window)
    hi_chain = head
    hi = max(last, head)

    if plan is None or whatif_doc is None:
        # The library's own plan of the remedy, and the what-if of the same counterfactual.
        from projections.compensation import plan_compensation
        from projections.refunds import plan_refunds
        from projections.whatif import compare_worlds

        remedy = (plan_refunds(store, branch) if branch is not None
                  else plan_compensation(store, suspect))
        wi = compare_worlds(remedy.cf)
        whatif_doc = whatif_doc or wi.to_json()
        if plan is None:
            plan = remedy.to_json()
        if counterfactual_liquidations is None:
            cf: dict[int, int] = {}
            for h in wi.counterfactual.liquidated.values():
                cf[h] = cf.get(h, 0) + 1
            counterfactual_liquidations = cf

    units = units_from_events(au.events)
    recovery = _recovery_height(store, branch) if branch is not None else None
    at_lo = {m["mkt"]: m for m in au.state(at_height=lo)["markets"]}
    markets = []
    for mkt in sorted(units):
        funding = {"chain": funding_series(au, mkt, lo, hi_chain)}
        mark = {"chain": mark_series(au, mkt, lo, hi_chain)}
        if branch is not None:
            funding["branch"] = funding_series(au, mkt, lo, last, branch)
            mark["branch"] = mark_series(au, mkt, lo, last, branch)
        bad = _bad_ticks(mkt, funding["branch" if branch is not None else "chain"], plan,
                         suspect)
        start = at_lo.get(mkt, {})
        markets.append({"mkt": mkt, "symbol": units[mkt].symbol, "bad_ticks": bad,
                        "at_window_start": {"height": lo,
                                            "funding_index": start.get("funding_index"),
                                            "mark_st": start.get("mark_st")},
                        "funding": funding, "mark": mark})
    markets.sort(key=lambda m: (not m["bad_ticks"], m["mkt"]))

    liqs: dict[str, Any] = {"chain": counts_json(liquidation_counts(au, suspect, hi_chain))}
    if branch is not None:
        liqs["branch"] = counts_json(liquidation_counts(au, suspect, last, branch))
    if counterfactual_liquidations is not None:
        liqs["counterfactual"] = counts_json(counterfactual_liquidations)
    liqs["totals"] = {k: sum(r["count"] for r in v) for k, v in liqs.items()}

    doc: dict[str, Any] = {
        "kind": "rollback" if branch is not None else "compensation",
        "branch": branch,
        "from_height": suspect,
        "window": {"from_height": lo, "to_height": hi},
        "heights": {"snapshot": base, "first_suspect": suspect, "last_suspect": last,
                    "recovery": recovery, "head": head},
        "branch_record": rec,
        "timeline": _timeline(au, branch, lo, last),
        "markets": markets,
        "liquidations": liqs,
        "whatif": None if whatif_doc is None else {
            k: v for k, v in whatif_doc.items() if k != "accounts"},
        "plan": None if plan is None else dict(plan),
        "plan_by_cause": by_cause(plan) if plan is not None else [],
        "hashes": _hashes(au, branch, base),
    }
    return doc


def _recovery_height(store: ChainReader, branch: int) -> int | None:
    from projections.refunds import recovery_height

    try:
        return recovery_height(store, branch)
    except NotFound:
        return None


def _bad_ticks(mkt: str, ticks: list[dict[str, Any]], plan: Mapping[str, Any] | None,
               suspect: int) -> list[dict[str, Any]]:
    corrections = (plan or {}).get("corrections")
    if corrections is not None:
        # a correction names the input's seq; the tick it caused sits in the same block
        height_of = {t["seq"]: t["height"] for t in ticks}
        by_seq = sorted(height_of.items())
        out = []
        for c in corrections:
            if c.get("mkt") != mkt or "Funding" not in str(c.get("type")):
                continue
            h = c.get("height", height_of.get(c["seq"]))
            if h is None:  # the IN command's seq: the first tick after it
                h = next((ht for s, ht in by_seq if s > c["seq"]), None)
            out.append({"height": h, "seq": c["seq"], "published": c.get("published"),
                        "used": c.get("used"), "why": "corrected in the counterfactual"})
        return out
    out = []
    for t in ticks:
        if t["height"] < suspect:
            continue
        if t["status"] == "applied" and t.get("new_index") == 0 and t.get("prev_index"):
            out.append({"height": t["height"], "seq": t["seq"], "published": 0,
                        "used": None, "why": "index set to zero (guard G3 refuses this)"})
        elif t["status"] != "applied":
            out.append({"height": t["height"], "seq": t["seq"],
                        "published": t.get("published_index"), "used": None,
                        "why": f"refused by the guards: {t.get('reason', t['status'])}"})
    return out


def by_cause(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Plan totals by cause: from the lines' `harm_by_cause` when the plan has it;
    otherwise split by the plan's own `bogus_liquidation` flag."""
    lines = plan.get("lines") or []
    totals: dict[str, list[int]] = {}
    for ln in lines:
        causes = ln.get("harm_by_cause")
        if causes is None:
            key = "bogus liquidation" if ln.get("bogus_liquidation") else "other harm"
            causes = {key: ln.get("harm_qq", 0)}
        for cause, amount in causes.items():
            t = totals.setdefault(cause, [0, 0])
            t[0] += int(amount)
            t[1] += 1 if amount else 0
    return [{"cause": c, "total_qq": t[0], "accounts": t[1]} for c, t in totals.items()]


def _timeline(au: Auditor, branch: int | None, lo: int, last: int) -> list[dict[str, Any]]:
    """Operator actions (journal) and the chain's own markers, by height."""
    rows: list[dict[str, Any]] = []
    for j in journal_json(au.store):
        if j["head_height"] < lo:
            continue
        rows.append({"height": j["head_height"], "where": "journal", "what": j["action"],
                     "who": j["operator"], "why": j["reason"], "seq": None,
                     "journal_id": j["id"]})
    spaces: list[tuple[str, int | None, int]] = [("chain", None, au.store.head.height)]
    if branch is not None:
        spaces.append((f"branch {branch}", branch, last))
    for where, br, top in spaces:
        for t in TIMELINE_TYPES:
            for ev in au.events(type_name=t, from_height=lo, to_height=top, branch=br):
                if br is not None and ev["height"] <= au.store.branch(br)["base_height"]:
                    continue  # the shared history is listed once, under "chain"
                p = ev["payload"]
                what = t + _what(p)
                rows.append({"height": ev["height"], "where": where, "what": what,
                             "who": p.get("operator") or p.get("by") or "",
                             "why": p.get("reason", ""), "seq": ev["seq"],
                             "journal_id": None})
        refunds = au.events(type_name="RefundIssued", from_height=lo, to_height=top,
                            branch=br) if br is None else []
        per: dict[int, list[int]] = {}
        for ev in refunds:
            per.setdefault(ev["height"], []).append(ev["payload"]["amount_qq"])
        for h, amounts in sorted(per.items()):
            rows.append({"height": h, "where": where, "what": "RefundIssued",
                         "who": "", "why": "", "seq": None, "journal_id": None,
                         "count": len(amounts), "amount_qq": sum(amounts)})
    rows.sort(key=lambda r: (r["height"], r["seq"] is None, r["seq"] or 0,
                             r["journal_id"] or 0))
    return rows


def _what(p: Mapping[str, Any]) -> str:
    bits = []
    for k in ("mkt", "scope", "mode", "target_height", "branch_id", "enabled"):
        if k in p:
            bits.append(f"{k}={p[k]}")
    return f" ({', '.join(bits)})" if bits else ""


def _hashes(au: Auditor, branch: int | None, base: int) -> dict[str, Any]:
    store = au.store
    snaps = [s for s in snapshots_json(store) if s["height"] == base]
    out: dict[str, Any] = {"snapshot": snaps[0] if snaps else None}
    if branch is not None:
        rb = [j for j in journal_json(store) if j["action"] == "truncate"
              and (j.get("details") or {}).get("branch") == branch]
        d = rb[0]["details"] if rb else {}
        out["rollback"] = {k: d.get(k) for k in ("snapshot_state_hash", "recovery_state_hash",
                                                 "from_head_hash", "new_head_hash",
                                                 "events_archived")}
        out["verify"] = {"chain": verify_json(store), "branch": verify_json(store, branch)}
    else:
        out["rollback"] = None
        out["verify"] = {"chain": verify_json(store)}
    try:
        out["head"] = {"height": store.head.height, "hash": store.head.hash.hex(),
                       "state_hash": store.block(store.head.height).state_hash.hex()}
    except NotFound:
        out["head"] = None
    return out
