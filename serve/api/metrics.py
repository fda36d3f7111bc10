"""Prometheus metrics on a per-app registry, cheap enough for a sub-millisecond hot path.

Each request costs one counter increment, one histogram observation and one decision count,
with the labelled children cached in dicts so `labels()` (a lock and a tuple build) runs
once per label combination, not once per request.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
            "rung_model_info", "The served bundle (value 1).", ["name", "version"], registry=reg
        )
        self.reloads = Counter(
            "rung_reloads", "Reload attempts by result.", ["result"], registry=reg
        )
        self.fallback = Gauge(
            "rung_model_fallback",
            "1 while the pointer names a refused bundle and an earlier one serves instead.",
            registry=reg,
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
        self.model_info.clear()
        self.model_info.labels(name, version).set(1)

    def set_fallback(self, on: bool) -> None:
        self.fallback.set(1 if on else 0)

    def reload_result(self, result: str) -> None:
        self.reloads.labels(result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
