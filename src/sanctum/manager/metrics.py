"""Prometheus metrics of one manager app, in the app's own registry (never the global one).

Separate registries keep several apps in one process (tests, benchmarks) from mixing their
numbers. Other parts add their metrics to :attr:`ManagerMetrics.registry` (for example
attestation outcomes).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["ManagerMetrics"]


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

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
