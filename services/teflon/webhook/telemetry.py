"""Every Prometheus instrument the webhook exports, created on one registry per app.

A registry per app (instead of the global default) lets each test start from zero and assert exact
values. Labels are bounded: rule and priority come from the rules Falco loads, namespace can be switched
off for clusters with many namespaces, and pod names or UIDs are never labels.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

NO_NAMESPACE = ""
OVERFLOW = "_other"

log = logging.getLogger(__name__)

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


class Telemetry:
    """The webhook's instruments and the small helpers that keep label values bounded."""

    def __init__(self, registry: CollectorRegistry, *, namespace_label: bool = True) -> None:
        self.registry = registry
        self.namespace_label = namespace_label
        # Rule names, sources and namespaces arrive in alerts; whoever can reach ingest must not be
        # able to grow /metrics without bound.
        self._rules = BoundedLabel("rule", 1000)
        self._sources = BoundedLabel("source", 100)
        self._namespaces = BoundedLabel("namespace", 5000)
        ProcessCollector(registry=registry)
        self.alerts = Counter(
            "teflon_webhook_alerts_total",
            "Falco alerts accepted, by rule, priority, source and namespace",
            ["rule", "priority", "source", "namespace"],
            registry=registry,
        )
        self.actions = Counter(
            "teflon_webhook_actions_total",
            "Response decisions by action, result (applied, dry_run, skipped, ...), mode and namespace",
            ["action", "result", "mode", "namespace"],
            registry=registry,
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
