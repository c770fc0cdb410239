"""Prometheus metrics of a ledger, read at scrape time by `ledgerctl serve` (`/metrics`).

- `perpledger_head_height`, `perpledger_head_time_seconds` (gauges): the head
  block's height and block time (chain time, Unix seconds).
- `perpledger_blocks_total`, `perpledger_events_total` (counters): head height
  and head seq; `rate()` them.
- `perpledger_blocks_per_second`, `perpledger_events_per_second` (gauges): the
  same rates as this server saw them over its last minute (wall clock).
- `perpledger_append_latency_seconds` (histogram): durable block append time
  in the writer (`ledger/latency.py`), cumulative over writer processes.
- `perpledger_readmodel_lag_blocks{projection}` (gauge): head height minus the
  `exchange` and `audit` projections' checkpoints.
- `perpledger_replicator_lag_blocks{replica}` (gauge): head height minus a
  replica's replicated height, when a replicator records its position
  (`replica_positions`); absent until then.
- `perpledger_snapshot_age_blocks`, `perpledger_snapshot_age_seconds` (gauges):
  blocks and block-time seconds since the newest snapshot.
- `perpledger_guard_rejections_total{guard}` (counter): events the data-check
  guards produced: refused funding ticks by reason, markets halted or moved by
  a guard.
- `perpledger_market_mode{market,perpledger_market_mode}` (stateset): each
  market's effective mode.
- `perpledger_http_requests_total{path,status}`,
  `perpledger_http_request_seconds{path}`: this server's own requests.

Chain-derived values are cached per head block hash: a scrape of an idle
chain reads the head and nothing else.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    StateSetMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ledger.events.enums import Mode
from ledger.latency import BUCKETS_S, read_latency
from projections.audit import Auditor
from projections.checkpoints import get_checkpoint

#: the name under which a replicator records its position in the chain store's
#: checkpoints: `{"height": H, "replica": NAME}` (the contract for stream 12)
REPLICATOR_CHECKPOINT = "replicator"
RATE_WINDOW_S = 60.0
GUARD_EVENTS = ("FundingTickRejected", "MarketHalted", "ModeChanged")


def replica_positions(au: Auditor) -> dict[str, int]:
    """Replicated height per replica, from the replicator's tracking record when one
    is reachable; empty until a replicator records one."""
    try:
        rec = au.store.get_checkpoint(REPLICATOR_CHECKPOINT)
    except Exception:  # noqa: BLE001 - a store without the record has no replica
        return {}
    if not isinstance(rec, dict) or not isinstance(rec.get("height"), int):
        return {}
    return {str(rec.get("replica", "default")): int(rec["height"])}


class _Chain(Collector):
    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Any]:
        yield from self.m.chain_families()


class Metrics:
    """The registry `/metrics` renders (see module docstring)."""

    def __init__(self, au: Auditor,
                 replicas: Callable[[Auditor], dict[str, int]] = replica_positions) -> None:
        self.au = au
        self.replicas = replicas
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("perpledger_http_requests", "HTTP requests answered",
                                ["path", "status"], registry=self.registry)
        self.request_seconds = Histogram("perpledger_http_request_seconds",
                                         "HTTP request time", ["path"],
                                         registry=self.registry)
        self.registry.register(_Chain(self))
        self._samples: deque[tuple[float, int, int]] = deque()
        self._cache_key: bytes | None = None
        self._cached: dict[str, Any] = {}

    @contextmanager
    def request_timer(self, path: str) -> Iterator[Callable[[int], None]]:
        """Time one request; call the yielded function with its status code."""
        route = path if path in ("/metrics",) or path.count("/") <= 2 else \
            "/".join(path.split("/")[:3]) + "/{id}"
        t0 = time.perf_counter()

        def done(status: int) -> None:
            self.requests.labels(route, str(status)).inc()
            self.request_seconds.labels(route).observe(time.perf_counter() - t0)

        yield done

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _rates(self, height: int, seq: int) -> tuple[float, float]:
        now = time.monotonic()
        self._samples.append((now, height, seq))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        t0, h0, s0 = self._samples[0]
        dt = now - t0
        if dt <= 0:
            return 0.0, 0.0
        return (height - h0) / dt, (seq - s0) / dt

    def _chain_state(self) -> dict[str, Any]:
        """Values that change only with the head block, cached on its hash."""
        au = self.au
        head = au.store.head
        if self._cache_key == head.hash:
            return self._cached
        state = au.state()
        guards: dict[str, int] = {}
        for t in GUARD_EVENTS:
            for ev in au.events(type_name=t):
                p = ev["payload"]
                if t == "FundingTickRejected":
                    label = f"funding:{p['reason']}"
                elif str(p.get("by", "")).startswith("guard:"):
                    label = str(p["by"])[len("guard:"):]
                else:
                    continue
                guards[label] = guards.get(label, 0) + 1
        snaps = au.store.snapshots()
        self._cached = {"state": state, "guards": guards,
                        "snapshot": snaps[-1] if snaps else None}
        self._cache_key = head.hash
        return self._cached

    def chain_families(self) -> Iterator[Any]:
        au = self.au
        head = au.store.head
        g = GaugeMetricFamily("perpledger_head_height", "Height of the head block")
        g.add_metric([], head.height)
        yield g
        g = GaugeMetricFamily("perpledger_head_time_seconds", "Block time of the head block")
        g.add_metric([], head.time)
        yield g
        c = CounterMetricFamily("perpledger_blocks", "Blocks on the canonical chain")
        c.add_metric([], max(0, head.height))
        yield c
        c = CounterMetricFamily("perpledger_events", "Events on the canonical chain (head seq)")
        c.add_metric([], max(0, head.seq))
        yield c
        bps, eps = self._rates(head.height, head.seq)
        g = GaugeMetricFamily("perpledger_blocks_per_second",
                              f"Blocks appended per second over the last {RATE_WINDOW_S:.0f} s")
        g.add_metric([], bps)
        yield g
        g = GaugeMetricFamily("perpledger_events_per_second",
                              f"Events appended per second over the last {RATE_WINDOW_S:.0f} s")
        g.add_metric([], eps)
        yield g
        lat = read_latency(au.store.path)
        h = HistogramMetricFamily("perpledger_append_latency_seconds",
                                  "Durable block append time in the writer")
        if lat is not None:
            cum = 0
            buckets = []
            for bound, n in zip((*map(str, BUCKETS_S), "+Inf"), lat["buckets"], strict=True):
                cum += int(n)
                buckets.append((bound, cum))
            h.add_metric([], buckets, lat["sum_ns"] / 1e9)
        yield h
        g = GaugeMetricFamily("perpledger_readmodel_lag_blocks",
                              "Head height minus the projection's checkpoint",
                              labels=["projection"])
        for name in ("exchange", "audit"):
            ck = get_checkpoint(au.rm, name)
            g.add_metric([name], head.height - ck.height)
        yield g
        g = GaugeMetricFamily("perpledger_replicator_lag_blocks",
                              "Head height minus the replica's replicated height",
                              labels=["replica"])
        for replica, at in sorted(self.replicas(au).items()):
            g.add_metric([replica], head.height - at)
        yield g
        cached = self._chain_state()
        snap = cached["snapshot"]
        g = GaugeMetricFamily("perpledger_snapshot_age_blocks",
                              "Blocks since the newest snapshot")
        s = GaugeMetricFamily("perpledger_snapshot_age_seconds",
                              "Block-time seconds since the newest snapshot")
        if snap is not None:
            g.add_metric([], head.height - snap.height)
            s.add_metric([], head.time - snap.time)
        yield g
        yield s
        c = CounterMetricFamily("perpledger_guard_rejections",
                                "Events produced by the data-check guards", labels=["guard"])
        for label, n in sorted(cached["guards"].items()):
            c.add_metric([label], n)
        yield c
        st = StateSetMetricFamily("perpledger_market_mode", "Effective mode of each market",
                                  labels=["market"])
        for m in cached["state"]["markets"]:
            st.add_metric([m["mkt"]], {mode.name: m["effective_mode"] == mode.name
                                       for mode in Mode})
        yield st
