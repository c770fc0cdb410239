"""Parquet exports for auditors: the audit rows as typed, exact columns (pyarrow).

The rows are the ones `Auditor.export` writes as JSON Lines (statement lines,
fills, funding ticks, liquidations, events); Parquet keeps them typed:

- every integer column is `int64`, or `decimal128(38, 0)` when it is scaled by
  the funding scale S = 1e12 (`*index*`, `idx`, `dust*`, `premium_acc`), whose
  cumulative values can outgrow int64. Never a float: an integer that fits
  neither type is refused, naming the column.
- nested values (a liquidation's positions, an event's payload) are JSON text
  with their integers exact, for DuckDB's `json_extract`. Where a column holds
  nested values in some rows and integers in others (a statement line's
  `realized_qq` is one integer for a fill, a per-market map for a
  liquidation), the nested ones go to a sibling `<name>_json` column and the
  integer column holds null there.
- every file has `branch` (the branch asked, null for the canonical chain) and
  `height` as its first two columns.

The column types follow from the column names and values, so the same export
of the same ledger writes the same schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ledger.errors import CommandInvalid
from projections.progress import ProgressBar

#: what `audit export --format parquet` writes, as the JSON export names it
PARQUET_EXPORTS = ("statement", "fills", "funding", "liquidations", "events")
DECIMAL = pa.decimal128(38, 0)
_INT64 = (-(2**63), 2**63 - 1)
_DECIMAL_MAX = 10**38 - 1
_SCALED_PARTS = ("index", "dust", "premium_acc")


def is_scaled(name: str) -> bool:
    """Whether a column holds a value scaled by S = 1e12 (stored as decimal128)."""
    return (name == "idx" or name.startswith("idx_") or name.endswith("_idx")
            or any(p in name for p in _SCALED_PARTS))


def column_type(name: str, values: list[Any]) -> pa.DataType:
    """The Arrow type of one column (see module docstring); `CommandInvalid` if a
    column mixes kinds or holds an integer too large for decimal128(38, 0)."""
    kinds = {_kind(v) for v in values if v is not None}
    if not kinds:
        return pa.int64() if name in ("branch", "height", "seq") else pa.string()
    if len(kinds) > 1:
        raise CommandInvalid(f"parquet export: column {name!r} mixes "
                             f"{', '.join(sorted(kinds))} values")
    kind = kinds.pop()
    if kind == "int":
        ints = [v for v in values if v is not None]
        if any(abs(v) > _DECIMAL_MAX for v in ints):
            raise CommandInvalid(f"parquet export: column {name!r} holds an integer wider "
                                 "than 38 digits")
        if is_scaled(name) or any(not _INT64[0] <= v <= _INT64[1] for v in ints):
            return DECIMAL
        return pa.int64()
    return {"bool": pa.bool_(), "str": pa.string(), "json": pa.string()}[kind]


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, str):
        return "str"
    if isinstance(v, dict | list | tuple):
        return "json"
    raise CommandInvalid(f"parquet export: cannot store a {type(v).__name__} value "
                         "(integers, text and nested JSON only; never a float)")


def to_table(rows: Iterable[dict[str, Any]], *, branch: int | None,
             progress: ProgressBar | None = None) -> pa.Table:
    """Rows as an Arrow table: `branch`, `height`, then the rows' keys in first-seen order."""
    names: dict[str, None] = {"branch": None, "height": None}
    got: list[dict[str, Any]] = []
    nested: set[str] = set()
    scalar: set[str] = set()
    for row in rows:
        got.append(row)
        for k, v in row.items():
            names.setdefault(k, None)
            if v is not None:
                (nested if isinstance(v, dict | list | tuple) else scalar).add(k)
        if progress is not None:
            progress.advance(1)
    for name in sorted(nested & scalar):
        side = name + "_json"
        names[side] = None
        got = [_split(row, name, side) for row in got]
    columns: dict[str, list[Any]] = {}
    for name in names:
        if name == "branch":
            columns[name] = [branch] * len(got)
            continue
        vals = [row.get(name) for row in got]
        columns[name] = [json.dumps(v) if isinstance(v, dict | list | tuple) else v
                         for v in vals]
    fields = [pa.field(n, column_type(n, [row.get(n) for row in got] if n != "branch"
                                      else columns[n])) for n in names]
    arrays = [pa.array(columns[f.name], type=f.type) for f in fields]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _split(row: dict[str, Any], name: str, side: str) -> dict[str, Any]:
    v = row.get(name)
    if not isinstance(v, dict | list | tuple):
        return row
    out = dict(row)
    out[name] = None
    out[side] = v
    return out


def write_parquet(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str], *,
                  what: str, branch: int | None, progress: bool = False,
                  total: int = 0) -> int:
    """Write `rows` of export `what` to a Parquet file (zstd); return the row count."""
    if what not in PARQUET_EXPORTS:
        raise CommandInvalid(f"parquet export what must be one of {', '.join(PARQUET_EXPORTS)}"
                             f", was {what!r}")
    bar = ProgressBar(progress, f"export {what}", total)
    try:
        table = to_table(rows, branch=branch, progress=bar)
    finally:
        bar.close()
    meta = {b"perpledger.export": what.encode(),
            b"perpledger.branch": b"" if branch is None else str(branch).encode()}
    table = table.replace_schema_metadata(meta)
    pq.write_table(table, path, compression="zstd")
    return int(table.num_rows)


def funding_rows(funding: Any, markets: Iterable[str], **kw: Any) -> Iterator[dict[str, Any]]:
    """Funding ticks of every market in `markets`, each row naming its market
    (`funding` is `Auditor.funding`)."""
    for mkt in markets:
        for tick in funding(mkt, **kw)["ticks"]:
            yield {"market": mkt, **tick}
