"""Every Prometheus instrument the webhook exports, created on one registry per app.

A registry per app (instead of the global default) lets each test start from zero and assert exact
values. Labels are bounded twice: each label taking values from alerts (rule, source, namespace) has its
own cap on distinct values, and each labelled family has a cap on its series (``max_series``) above
those, because 1,000 rules times 5,000 namespaces would still be five million series. Namespace can be
switched off for clusters with many namespaces, and pod names or UIDs are never labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.process_collector import ProcessCollector

NO_NAMESPACE = ""
OVERFLOW = "_other"

log = logging.getLogger(__name__)

# A `_created` series per counter series doubles /metrics and says nothing a scrape needs.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class BoundedLabel:
    """Passes label values through until ``limit`` distinct ones were seen, then answers ``_other``."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._seen: set[str] = set()

    def value(self, raw: str) -> str:
        if raw in self._seen:
            return raw
        if len(self._seen) >= self.limit:
            if OVERFLOW not in self._seen:
                self._seen.add(OVERFLOW)
                log.warning(
                    "label value limit reached; further values are counted as _other",
                    extra={"label": self.name, "limit": self.limit},
                )
            return OVERFLOW
        self._seen.add(raw)
        return raw


class CappedCounter:
    """A labelled counter of at most ``max_series`` series, plus the overflow series later sets go to.

    ``overflow`` maps a label tuple to the one it is counted under once the cap is reached (the same few
    ``_other`` series), so counts are never lost, only merged. Reaching the cap is logged once.
    """

    def __init__(
        self,
        counter: Counter,
        max_series: int,
        overflow: Callable[[tuple[str, ...]], tuple[str, ...]],
    ) -> None:
        self.counter = counter
        self.name = next(iter(counter.describe())).name
        self.max_series = max_series
        self._overflow = overflow
        self._seen: set[tuple[str, ...]] = set()
        self._warned = False

    def labels(self, *values: str) -> Counter:
        key = tuple(values)
        if key not in self._seen:
            if len(self._seen) >= self.max_series:
                key = self._overflow(key)
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "series limit reached; further label sets are counted as _other",
                        extra={"metric": self.name, "limit": self.max_series},
                    )
            self._seen.add(key)
        return self.counter.labels(*key)

    @property
    def series(self) -> int:
        return len(self._seen)

    def collect(self) -> Iterable[Metric]:
        return self.counter.collect()


class Telemetry:
    """The webhook's instruments and the small helpers that keep label values bounded."""

    def __init__(
        self, registry: CollectorRegistry, *, namespace_label: bool = True, max_series: int = 1000
    ) -> None:
        self.registry = registry
        self.namespace_label = namespace_label
        # Rule names, sources and namespaces arrive in alerts; whoever can reach ingest must not be
        # able to grow /metrics without bound.
        self._rules = BoundedLabel("rule", 1000)
        self._sources = BoundedLabel("source", 100)
        self._namespaces = BoundedLabel("namespace", 5000)
        ProcessCollector(registry=registry)
        self.alerts = CappedCounter(
            Counter(
                "teflon_webhook_alerts_total",
                "Falco alerts accepted, by rule, priority, source and namespace",
                ["rule", "priority", "source", "namespace"],
                registry=registry,
            ),
            max_series,
            lambda key: (OVERFLOW, key[1], OVERFLOW, OVERFLOW),
        )
        self.actions = CappedCounter(
            Counter(
                "teflon_webhook_actions_total",
                "Response decisions by action, result (applied, dry_run, skipped, ...), mode and namespace",
                ["action", "result", "mode", "namespace"],
                registry=registry,
            ),
            max_series,
            lambda key: (*key[:3], OVERFLOW),
        )
        self.skips = Counter(
            "teflon_webhook_skips_total",
            "Actions not taken, by the protection or limit that stopped them",
            ["reason"],
            registry=registry,
        )
        self.rejected = Counter(
            "teflon_webhook_alerts_rejected_total",
            "Alerts or request bodies refused at ingest, by reason",
            ["reason"],
            registry=registry,
        )
        self.streams_open = Gauge(
            "teflon_webhook_streams_open", "Alert streams (/v1/falco/stream) open now", registry=registry
        )
        self.streams = Counter(
            "teflon_webhook_streams_total",
            "Alert streams by how they ended: completed, cut (sender gone), shutdown, refused (at the limit)",
            ["result"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "teflon_webhook_queue_depth", "Alerts waiting to be processed", registry=registry
        )
        self.queue_capacity = Gauge(
            "teflon_webhook_queue_capacity", "Size of the alert queue", registry=registry
        )
        self.action_latency = Histogram(
            "teflon_webhook_action_latency_seconds",
            "Time from receiving an alert to the Kubernetes API call for its action being done",
            ["action"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.circuit_open = Gauge(
            "teflon_webhook_circuit_breaker_open",
            "1 while the circuit breaker has stopped all enforcement, else 0",
            registry=registry,
        )
        self.tracked = Gauge(
            "teflon_webhook_rate_tracked_objects",
            "Objects with windowed alert counts held in memory, by scope",
            ["scope"],
            registry=registry,
        )
        self.rate_evictions = Counter(
            "teflon_webhook_rate_evictions_total",
            "Tracked objects dropped: expired (unseen for the TTL) or cap (memory limit reached)",
            ["reason"],
            registry=registry,
        )
        self.policy_loaded = Gauge(
            "teflon_webhook_policy_loaded", "1 once a valid policy is in force", registry=registry
        )
        self.policy_enforce = Gauge(
            "teflon_webhook_policy_enforce", "1 when the global policy mode is enforce", registry=registry
        )
        self.policy_errors = Counter(
            "teflon_webhook_policy_reload_errors_total",
            "Policy files that could not be loaded (the previous policy stayed in force)",
            registry=registry,
        )
        self.events_failed = Counter(
            "teflon_webhook_events_failed_total",
            "Kubernetes Events that could not be recorded",
            registry=registry,
        )
        self.node_mismatch = Counter(
            "teflon_webhook_node_mismatch_total",
            "Alerts naming a pod that runs on another node than the reporting Falco (suspicious)",
            registry=registry,
        )

    def ns(self, namespace: str | None) -> str:
        """The namespace label value, or empty when namespace labels are switched off."""
        if not self.namespace_label:
            return NO_NAMESPACE
        return self._namespaces.value(namespace or NO_NAMESPACE)

    def alert_labels(self, rule: str, priority: str, source: str, namespace: str | None) -> tuple[str, ...]:
        """Label values for ``alerts_total``, each capped in how many distinct values it may take."""
        return (self._rules.value(rule), priority, self._sources.value(source), self.ns(namespace))
