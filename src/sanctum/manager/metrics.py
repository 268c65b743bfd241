"""Prometheus metrics of one manager app, in the app's own registry (never the global one).

Separate registries keep several apps in one process (tests, benchmarks) from mixing their
numbers. Other parts add their metrics to :attr:`ManagerMetrics.registry` (for example
attestation outcomes).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ManagerMetrics"]

#: Bound of the label-children cache (an odd method name must not grow it without limit).
_MAX_CACHED_CHILDREN = 4096


class ManagerMetrics:
    """HTTP request counters and latency histogram."""

    def __init__(self) -> None:
        """Create the registry and the HTTP metrics."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sanctum_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sanctum_http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        # The label children of each (method, route, status), looked up once: ``labels()``
        # validates and joins the label values on every call. Route templates and methods are
        # bounded sets (unmatched paths share the template "unmatched"), so this stays small.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            if len(self._children) < _MAX_CACHED_CHILDREN:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
