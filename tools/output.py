"""Rendering: rich tables for people, one JSON document (or JSON Lines) for machines."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from projections.units import usd as usd  # the one dollar rendering (re-exported)

console = Console()
err_console = Console(stderr=True)


def dump_json(obj: Any) -> None:
    """Print one JSON document (integers stay integers; bytes must already be hex)."""
    sys.stdout.write(json.dumps(obj, sort_keys=False, default=_default) + "\n")
    sys.stdout.flush()


def dump_jsonl(rows: Iterable[Any]) -> None:
    """Print one JSON object per line (streams)."""
    write = sys.stdout.write
    for row in rows:
        write(json.dumps(row, default=_default) + "\n")
    sys.stdout.flush()


def _default(o: Any) -> Any:
    if isinstance(o, bytes):
        return o.hex()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"cannot render {type(o).__name__} as JSON")


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *,
          right: Sequence[str] = ()) -> None:
    """Print a rich table; columns named in `right` are right-aligned (numbers)."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for c in columns:
        # fold, never ellipsize: a cut-off amount would misread as a different number
        t.add_column(c, justify="right" if c in right else "left", overflow="fold")
    for row in rows:
        t.add_row(*[_cell(v) for v in row])
    console.print(t)


def kv(title: str, pairs: Sequence[tuple[str, Any]]) -> None:
    """Print a two-column key/value table."""
    table(title, ["field", "value"], [(k, v) for k, v in pairs])


def _cell(v: Any) -> str:
    if isinstance(v, bytes):
        return v.hex()[:16]
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def short(h: bytes | str | None) -> str:
    if h is None:
        return ""
    s = h.hex() if isinstance(h, bytes) else h
    return s[:16]
