"""Prometheus metrics on a per-app registry, cheap enough for a sub-millisecond hot path.

Each request costs one counter increment, one histogram observation and one decision count,
with the labelled children cached in dicts so `labels()` (a lock and a tuple build) runs
once per label combination, not once per request.

Across uvicorn workers (`rung serve --workers N`, N > 1) the values live in
prometheus-client's multiprocess mode: `rung serve` gives every run a fresh
PROMETHEUS_MULTIPROC_DIR, each worker writes its values to files there, and /metrics on any
worker merges all of them (counters and histograms summed; `rung_model_info` per worker, with
a `pid` label; `rung_model_fallback` the max over live workers). One worker keeps the plain
in-memory values, which are faster on the hot path.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Handler time on one core is tens of microseconds; the tail buckets catch batches and stalls.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The service's metrics. One instance per app, so tests can build many apps."""

    def __init__(self) -> None:
        # prometheus-client picks file-backed values at import when the variable is set
        self.multiprocess = prometheus_values.ValueClass is not prometheus_values.MutexValue
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "rung_requests", "Requests by route and HTTP status.", ["route", "status"], registry=reg
        )
        self.latency = Histogram(
            "rung_request_duration_seconds",
            "Time inside the handler, from body read to response built.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.decisions = Counter(
            "rung_decisions", "Tiers decided (batch items count singly).", ["tier"], registry=reg
        )
        self.explored = Counter(
            "rung_explored", "Decisions moved one tier down to explore.", ["tier"], registry=reg
        )
        self.model_info = Gauge(
            "rung_model_info",
            "The served bundle (value 1; 0 for one a worker served before).",
            ["name", "version"],
            registry=reg,
            multiprocess_mode="liveall",
        )
        self._model: tuple[str, str] | None = None
        self.reloads = Counter(
            "rung_reloads", "Reload attempts by result.", ["result"], registry=reg
        )
        self.fallback = Gauge(
            "rung_model_fallback",
            "1 while the pointer names a refused bundle and an earlier one serves instead.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._req: dict[tuple[str, int], Counter] = {}
        self._lat: dict[str, Histogram] = {}
        self._dec: dict[str, Counter] = {}
        self._exp: dict[str, Counter] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        child = self._req.get((route, status))
        if child is None:
            child = self._req[(route, status)] = self.requests.labels(route, str(status))
        child.inc()
        hist = self._lat.get(route)
        if hist is None:
            hist = self._lat[route] = self.latency.labels(route)
        hist.observe(seconds)

    def decided(self, tier: str, explored: bool = False, count: int = 1) -> None:
        child = self._dec.get(tier)
        if child is None:
            child = self._dec[tier] = self.decisions.labels(tier)
        child.inc(count)
        if explored:
            exp = self._exp.get(tier)
            if exp is None:
                exp = self._exp[tier] = self.explored.labels(tier)
            exp.inc()

    def set_model(self, name: str, version: str) -> None:
        if self._model is not None and self.multiprocess:
            self.model_info.labels(*self._model).set(0)  # the file keeps the series: zero it
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)
        self._model = (name, version)

    def set_fallback(self, on: bool) -> None:
        self.fallback.set(1 if on else 0)

    def reload_result(self, result: str) -> None:
        self.reloads.labels(result).inc()

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # every worker's files in PROMETHEUS_MULTIPROC_DIR
        return generate_latest(merged)

    def close(self) -> None:
        """On worker shutdown: drop this worker's live gauges from the merged view."""
        if self.multiprocess:
            from prometheus_client.multiprocess import mark_process_dead

            mark_process_dead(os.getpid())
