"""The metrics server's own Prometheus instruments (``teflon_metrics_*``).

Instruments live on a registry passed in, so each test and each app instance counts on its own.
Labels are bounded: path kind, backend, outcome, metric name (from the config, a fixed set).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Telemetry:
    """Request latency by path kind, backend latency and errors, cache hits and data freshness."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Histogram(
            "teflon_metrics_request_duration_seconds",
            "Latency of API requests by kind of path and HTTP status code.",
            ["kind", "code"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.backend_seconds = Histogram(
            "teflon_metrics_backend_duration_seconds",
            "Latency of backend queries.",
            ["backend"],
            registry=registry,
            buckets=_LATENCY_BUCKETS,
        )
        self.backend_errors = Counter(
            "teflon_metrics_backend_errors_total",
            "Backend queries that failed, by reason (error, timeout, throttled).",
            ["backend", "reason"],
            registry=registry,
        )
        self.cache = Counter(
            "teflon_metrics_cache_requests_total",
            "Value cache lookups by result (hit, miss, shared: joined an in-flight query).",
            ["result"],
            registry=registry,
        )
        self.freshness = Gauge(
            "teflon_metrics_data_timestamp_seconds",
            "Unix time at which the newest value of each metric was fetched from its backend.",
            ["metric"],
            registry=registry,
        )
        self.auth = Counter(
            "teflon_metrics_authentications_total",
            "Authentication outcomes by method (frontproxy, token, clientcert, anonymous).",
            ["method", "result"],
            registry=registry,
        )

    def backend_latency(self, backend: str, seconds: float) -> None:
        self.backend_seconds.labels(backend).observe(seconds)

    def backend_error(self, backend: str, reason: str) -> None:
        self.backend_errors.labels(backend, reason).inc()

    def cache_result(self, result: str) -> None:
        self.cache.labels(result).inc()

    def fresh(self, metric: str) -> None:
        self.freshness.labels(metric).set(time.time())
