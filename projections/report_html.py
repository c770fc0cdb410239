"""The incident report as one self-contained HTML page: inline CSS, PNG figures as
data URIs, no script, no external reference, so it reads the same offline.

Every number on the page is rendered from an integer of the incident document
(`projections.incident`) by `projections.units`, inside
`<span class="n" data-path="..." data-raw="...">`: `data-path` names where in
the document (the `report incident --json` output) the integer lives, and
`data-raw` is the integer itself. A test walks those spans and checks each
against the JSON; nothing on the page is computed here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from projections import figures as fg
from projections import units as un

CSS = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px auto;padding:0 18px;
max-width:1020px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:14px;margin:16px 0 6px}
table{border-collapse:collapse;font-size:12px;margin:6px 0 12px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.r,th.r{text-align:right}.n{font-variant-numeric:tabular-nums}
.ok{color:#2ca02c;font-weight:bold}.bad{color:#d62728;font-weight:bold}
.sub{color:#666;font-size:12px}img{display:block;margin:6px 0;border:1px solid #eee}
code{font-size:11px}
"""


class Page:
    """HTML builder whose numbers carry their document path and raw integer."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def html(self) -> str:
        return "".join(self.parts)


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def num(path: str, raw: int | None, text: str) -> str:
    """A number on the page: its rendering, its document path and its raw integer."""
    if raw is None:
        return ""
    return (f'<span class="n" data-path="{esc(path)}" data-raw="{raw}">'
            f"{esc(text)}</span>")


def cell(path: str, key: str, v: Any) -> str:
    """A table cell for a plan or register field: dollars for `_qq`, integers grouped."""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, int):
        return num(path, v, un.usd(v) if key.endswith("_qq") else un.decimal(v, 0))
    if isinstance(v, dict | list):
        return f"<code>{esc(v)}</code>"
    return esc(v)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]],
           right: Sequence[int] = ()) -> str:
    head = "".join(f'<th class="{"r" if i in right else ""}">{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"r" if i in right else ""}">{c}</td>'
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def incident_markers(doc: Mapping[str, Any], mkt: str | None = None) -> list[fg.Marker]:
    """Vertical lines for the figures: bad ticks, the rollback's snapshot, the recovery."""
    hs = doc["heights"]
    out = [fg.Marker(hs["first_suspect"], "first suspect height", "event")]
    if doc["kind"] == "rollback":
        out.append(fg.Marker(hs["snapshot"], f"rollback to snapshot {hs['snapshot']}",
                             "rollback"))
        if hs["recovery"] is not None:
            out.append(fg.Marker(hs["recovery"], f"recovery block {hs['recovery']}",
                                 "recovery"))
    for m in doc["markets"]:
        if mkt is None or m["mkt"] == mkt:
            for t in m["bad_ticks"]:
                if t.get("height") is not None:
                    out.append(fg.Marker(int(t["height"]), "bad funding tick", "bad"))
    return out


def figures_for(doc: Mapping[str, Any], units: Mapping[str, un.MarketUnits]
                ) -> dict[str, bytes]:
    """Every figure of the report, by name (`funding:BTC-PERP`, `liquidations`, ...)."""
    lo, hi = doc["window"]["from_height"], doc["window"]["to_height"]
    out: dict[str, bytes] = {}
    labels = {"chain": "canonical chain", "branch": f"branch {doc['branch']} (rolled back)",
              "counterfactual": "counterfactual (guards on)"}
    hs = doc["heights"]
    ends = {labels["chain"]: hs["head"], labels["branch"]: hs["last_suspect"]}
    for m in doc["markets"]:
        mkt = m["mkt"]
        marks = incident_markers(doc, mkt)
        at = m["at_window_start"]
        out[f"funding:{mkt}"] = fg.funding_figure(
            mkt, units.get(mkt), {labels[k]: v for k, v in m["funding"].items()}, marks,
            lo=lo, hi=hi, start=at["funding_index"], ends=ends)
        out[f"mark:{mkt}"] = fg.mark_figure(
            mkt, units.get(mkt), {labels[k]: v for k, v in m["mark"].items()}, marks,
            lo=lo, hi=hi, start=at["mark_st"], ends=ends)
    liqs = {labels[k]: {r["height"]: r["count"] for r in v}
            for k, v in doc["liquidations"].items() if k != "totals"}
    out["liquidations"] = fg.liquidations_figure(
        liqs, incident_markers(doc, "-"), lo=doc["heights"]["first_suspect"] - 1, hi=hi)
    return out


def render(doc: Mapping[str, Any], units: Mapping[str, un.MarketUnits],
           figs: Mapping[str, bytes], *, title: str) -> str:
    """The whole page."""
    p = Page()
    p.add(f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>{esc(title)}</title><style>{CSS}</style></head><body>")
    p.add(f"<h1>{esc(title)}</h1>")
    kind = ("rollback of branch " + str(doc["branch"]) if doc["kind"] == "rollback"
            else "compensation without rollback")
    w = doc["window"]
    span = (_h("window.from_height", w["from_height"]) + ".."
            + _h("window.to_height", w["to_height"]))
    p.add(f'<p class="sub">{esc(kind)}; heights {span}. '
          "Money in dollars, sizes in coins, rendered exactly from the ledger's integers; "
          "each number is the one <code>ledgerctl report incident --json</code> prints."
          "</p>")
    _summary(p, doc)
    _timeline(p, doc)
    _markets(p, doc, figs, units)
    _liquidations(p, doc, figs)
    _plan(p, doc)
    _hashes(p, doc)
    p.add("</body></html>")
    return p.html()


def _h(path: str, v: int | None) -> str:
    return "" if v is None else num(path, v, un.decimal(v, 0))


def _summary(p: Page, doc: Mapping[str, Any]) -> None:
    hs = doc["heights"]
    rows = [("first suspect height", _h("heights.first_suspect", hs["first_suspect"])),
            ("last suspect height", _h("heights.last_suspect", hs["last_suspect"])),
            ("snapshot height" + (" (rollback target)" if doc["kind"] == "rollback" else ""),
             _h("heights.snapshot", hs["snapshot"])),
            ("recovery block", _h("heights.recovery", hs["recovery"])),
            ("head", _h("heights.head", hs["head"]))]
    totals = doc["liquidations"]["totals"]
    for k, label in (("branch", "liquidations on the branch"),
                     ("counterfactual", "liquidations in the counterfactual"),
                     ("chain", "liquidations on the chain since the suspect height")):
        if k in totals:
            rows.append((label, _h(f"liquidations.totals.{k}", totals[k])))
    wi = doc.get("whatif")
    if wi:
        rows.append(("bogus liquidations (branch, not counterfactual)",
                     _h("whatif.bogus_liquidations", wi.get("bogus_liquidations"))))
    plan = doc.get("plan")
    if plan:
        for key in ("accounts_owed", "total_harm_qq", "total_qq", "outstanding_qq",
                    "vault_available_qq"):
            if isinstance(plan.get(key), int):
                rows.append((key.replace("_qq", "").replace("_", " "),
                             cell(f"plan.{key}", key, plan[key])))
    p.add("<h2>Summary</h2>" + _table(["what", "value"], rows, right=[1]))


def _timeline(p: Page, doc: Mapping[str, Any]) -> None:
    rows = []
    for i, r in enumerate(doc["timeline"]):
        what = esc(r["what"])
        if "amount_qq" in r:
            n = _h(f"timeline.{i}.count", r["count"])
            amount = num(f"timeline.{i}.amount_qq", r["amount_qq"], un.usd(r["amount_qq"]))
            what += f": {n} refunds, {amount}"
        rows.append((_h(f"timeline.{i}.height", r["height"]), esc(r["where"]), what,
                     esc(r["who"]), esc(r["why"])))
    p.add("<h2>Timeline</h2><p class=\"sub\">Operator actions from the journal (who and why) "
          "and the chain's own markers, by height.</p>"
          + _table(["height", "where", "what", "who", "why"], rows, right=[0]))


def _markets(p: Page, doc: Mapping[str, Any], figs: Mapping[str, bytes],
             units: Mapping[str, un.MarketUnits]) -> None:
    p.add("<h2>Markets: funding index and mark around the incident</h2>"
          "<p class=\"sub\">Red: bad funding ticks; dashed black: the snapshot the chain "
          "was rolled back to; green: the recovery block.</p>")
    for mi, m in enumerate(doc["markets"]):
        mkt = m["mkt"]
        p.add(f"<h3>{esc(mkt)}</h3>")
        p.add(_img(figs[f"funding:{mkt}"], f"funding index of {mkt}"))
        p.add(_img(figs[f"mark:{mkt}"], f"mark price of {mkt}"))
        mu = units.get(mkt)
        if m["bad_ticks"]:
            rows = []
            for ti, t in enumerate(m["bad_ticks"]):
                base = f"markets.{mi}.bad_ticks.{ti}"
                rows.append((_h(f"{base}.height", t.get("height")), _h(f"{base}.seq", t["seq"]),
                             _index(f"{base}.published", t.get("published"), mu),
                             _index(f"{base}.used", t.get("used"), mu), esc(t["why"])))
            p.add(_table(["height", "seq", "published index", "used index", "why"], rows,
                         right=[0, 1, 2, 3]))


def _index(path: str, v: int | None, mu: un.MarketUnits | None) -> str:
    if v is None:
        return ""
    return num(path, v, un.index(v, mu) if mu else un.decimal(v, 0))


def _liquidations(p: Page, doc: Mapping[str, Any], figs: Mapping[str, bytes]) -> None:
    liqs = doc["liquidations"]
    keys = [k for k in ("branch", "counterfactual", "chain") if k in liqs]
    heights = sorted({r["height"] for k in keys for r in liqs[k]})
    index = {k: {r["height"]: (i, r["count"]) for i, r in enumerate(liqs[k])} for k in keys}
    rows = []
    for h in heights:
        row = [un.decimal(h, 0)]
        for k in keys:
            got = index[k].get(h)
            row.append("0" if got is None else
                       num(f"liquidations.{k}.{got[0]}.count", got[1], un.decimal(got[1], 0)))
        rows.append(row)
    names = {"branch": f"branch {doc['branch']}", "counterfactual": "counterfactual",
             "chain": "canonical chain"}
    p.add("<h2>Liquidations per block</h2>" + _img(figs["liquidations"], "liquidations")
          + _table(["height", *[names[k] for k in keys]], rows,
                   right=list(range(len(keys) + 1))))


def _plan(p: Page, doc: Mapping[str, Any]) -> None:
    plan = doc.get("plan")
    title = "Refunds" if doc["kind"] == "rollback" else "Compensation"
    p.add(f"<h2>{title} by cause</h2>")
    if plan is None:
        p.add("<p class=\"bad\">No compensation plan was given: a compensation without "
              "rollback is planned by <code>ledgerctl assess</code> / <code>compensate "
              "plan</code>; this report shows its table once a plan is passed in.</p>")
        return
    if plan.get("rule"):
        p.add(f"<p class=\"sub\">Rule: {esc(plan['rule'])}</p>")
    rows = [(esc(c["cause"]), num(f"plan_by_cause.{i}.total_qq", c["total_qq"],
                                  un.usd(c["total_qq"])),
             num(f"plan_by_cause.{i}.accounts", c["accounts"], un.decimal(c["accounts"], 0)))
            for i, c in enumerate(doc["plan_by_cause"])]
    p.add(_table(["cause", "harm", "accounts"], rows, right=[1, 2]))
    for note in plan.get("notes") or []:
        p.add(f"<p class=\"sub\">{esc(note)}</p>")
    lines = plan.get("lines") or []
    fields: dict[str, None] = {}
    causes: dict[str, None] = {}
    for ln in lines:
        for k, v in ln.items():
            if k == "harm_by_cause" and isinstance(v, dict):
                for c in v:
                    causes.setdefault(c, None)
            elif k != "rule" and not isinstance(v, dict | list):
                fields.setdefault(k, None)
    headers = [k.replace("_qq", "").replace("_", " ") for k in fields] + [
        f"harm: {c}" for c in causes]
    rows2 = []
    for i, ln in enumerate(lines):
        row = [cell(f"plan.lines.{i}.{k}", k, ln.get(k)) for k in fields]
        for c in causes:
            v = (ln.get("harm_by_cause") or {}).get(c)
            row.append(cell(f"plan.lines.{i}.harm_by_cause.{c}", c + "_qq", v))
        rows2.append(row)
    right = [i for i, k in enumerate(list(fields) + list(causes))
             if any(isinstance(ln.get(k), int) and not isinstance(ln.get(k), bool)
                    for ln in lines) or k in causes]
    p.add(f"<h3>Per account ({len(lines)} lines)</h3>" + _table(headers, rows2, right=right))
    for key in ("corrections", "flagged_flows"):
        items = plan.get(key)
        if items:
            p.add(f"<h3>{esc(key.replace('_', ' '))}</h3>")
            cols = list(dict.fromkeys(k for it in items for k in it))
            p.add(_table(cols, [[cell(f"plan.{key}.{i}.{c}", c, it.get(c)) for c in cols]
                                for i, it in enumerate(items)]))


def _hashes(p: Page, doc: Mapping[str, Any]) -> None:
    hs = doc["hashes"]
    rows: list[tuple[str, str]] = []
    snap = hs.get("snapshot")
    if snap:
        rows.append((f"snapshot state hash at height {snap['height']}",
                     f"<code>{esc(snap['state_hash'])}</code>"))
    for k, v in (hs.get("rollback") or {}).items():
        if isinstance(v, str):
            rows.append((f"rollback: {k.replace('_', ' ')}", f"<code>{esc(v)}</code>"))
    head = hs.get("head")
    if head:
        rows.append(("head block hash", f"<code>{esc(head['hash'])}</code>"))
        rows.append(("head state hash", f"<code>{esc(head['state_hash'])}</code>"))
    for name, v in hs["verify"].items():
        status = ('<span class="ok">verified</span>' if v["ok"]
                  else f'<span class="bad">FAILED at {esc(v["height"])}: {esc(v["reason"])}'
                       "</span>")
        blocks = _h(f"hashes.verify.{name}.blocks", v["blocks"])
        events = _h(f"hashes.verify.{name}.events", v["events"])
        where = "PostgreSQL replica" if v.get("store") == "postgresql" else "LMDB ledger"
        rows.append((f"verify {name} ({where})", f"{status}: {blocks} blocks, {events} events"))
    p.add("<h2>Hashes and verification</h2>" + _table(["what", "value"], rows))


def render_report(doc: Mapping[str, Any], units: Mapping[str, un.MarketUnits], *,
                  title: str | None = None) -> str:
    """The report page for an incident document, figures included."""
    figs = figures_for(doc, units)
    t = title or (f"Incident report: branch {doc['branch']}" if doc["kind"] == "rollback"
                  else f"Incident report: from height {doc['from_height']}")
    return render(doc, units, figs, title=t)
