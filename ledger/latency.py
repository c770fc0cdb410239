"""Append latency of the single writer, kept where a read-only metrics server can see it.

The sequencer times each durable block append (engine excluded: the LMDB
write transaction and its sync) and adds it to a fixed-bucket histogram. The
histogram is cumulative across writer processes and lives beside the chain
in `<data>/metrics/append_latency.json`: loaded when a writer opens,
atomically replaced (write, fsync, rename) at most once a second and on close.
`ledgerctl serve` exposes it as `perpledger_append_latency_seconds`.

Operator metadata, like the journal: the state machine never sees it, and a
failure to write it is logged and never stops an append.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("ledger.latency")

#: bucket upper bounds in seconds (Prometheus `le`), the last one is +Inf
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
             10.0)
_BUCKETS_NS = tuple(int(b * 1e9) for b in BUCKETS_S)
FILE = Path("metrics") / "append_latency.json"
FLUSH_EVERY_NS = 1_000_000_000


def latency_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / FILE


def read_latency(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stored histogram: `{"buckets": [count per bound..., +Inf], "sum_ns", "count"}`
    (counts per bucket, not cumulative), or None if no writer has recorded one."""
    try:
        doc: dict[str, Any] = json.loads(latency_path(data_dir).read_text())
    except (OSError, ValueError):
        return None
    if len(doc.get("buckets", [])) != len(BUCKETS_S) + 1:
        return None
    return doc


class AppendLatency:
    """The writer's histogram (see module docstring)."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.path = latency_path(data_dir)
        old = read_latency(data_dir)
        self.buckets: list[int] = list(old["buckets"]) if old else [0] * (len(BUCKETS_S) + 1)
        self.sum_ns: int = int(old["sum_ns"]) if old else 0
        self.count: int = int(old["count"]) if old else 0
        self._dirty = False
        self._flushed_at = time.monotonic_ns()

    def observe(self, ns: int) -> None:
        """Record one append that took `ns` nanoseconds."""
        i = 0
        while i < len(_BUCKETS_NS) and ns > _BUCKETS_NS[i]:
            i += 1
        self.buckets[i] += 1
        self.sum_ns += ns
        self.count += 1
        self._dirty = True
        if time.monotonic_ns() - self._flushed_at >= FLUSH_EVERY_NS:
            self.flush()

    def flush(self) -> None:
        """Replace the stored histogram with this one (atomic; errors are only logged)."""
        if not self._dirty:
            return
        self._flushed_at = time.monotonic_ns()
        doc = {"buckets": self.buckets, "sum_ns": self.sum_ns, "count": self.count,
               "bounds_s": list(BUCKETS_S)}
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(exist_ok=True)
            with open(tmp, "w") as fh:
                fh.write(json.dumps(doc))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError as exc:
            log.warning("append latency not recorded", path=str(self.path), error=str(exc))
