"""Whatever arrives at ingest, what the webhook stores, counts and logs stays bounded (in process, fast).

Each test mounts one row of the attack table in docs/hardening.md against the apps ``create_app``
builds; ``test_floods.py`` repeats them over sockets against the real processes and measures memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from teflon.common.logthrottle import RepeatFilter
from teflon.common.serving import OTHER_METHOD, BoundedMethods
from teflon.webhook.alert import MAX_RULE_CHARS, AlertRejected, RejectReason, parse_one
from teflon.webhook.app import create_app
from teflon.webhook.settings import Settings
from teflon.webhook.telemetry import OVERFLOW, Telemetry
from tests.harness.falco import alert_doc

RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
MB = 1_000_000


def alert(**fields: Any) -> dict[str, Any]:
    rule = fields.pop("rule", "Terminal shell in container")
    source = fields.pop("source", "syscall")
    return alert_doc("default", "web-1", rule=rule, priority="Warning", source=source, fields=fields)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("k8s.pod.name", "a" * MB, "k8s.pod.name"),
        ("k8s.ns.name", "a" * MB, "namespace"),
        ("k8s.ns.name", "default/../kube-system", "namespace"),
        ("k8s.pod.name", "Web-1", "k8s.pod.name"),
        ("k8s.ns.name", "a" * 64, "namespace"),  # one past a DNS-1123 label
        ("k8s.pod.name", "a" * 254, "k8s.pod.name"),  # one past a DNS-1123 subdomain
        ("ka.target.namespace", "x" * MB, "namespace"),
    ],
)
def test_an_alert_naming_no_possible_kubernetes_object_is_refused_with_a_short_reason(
    field: str, value: str, named: str
) -> None:
    doc = alert(**{field: value})
    if field == "ka.target.namespace":
        del doc["output_fields"]["k8s.ns.name"]
    with pytest.raises(AlertRejected) as caught:
        parse_one(doc, received=RECEIVED)
    assert caught.value.reason is RejectReason.INVALID_ALERT
    assert caught.value.detail.startswith(named)
    assert len(caught.value.detail) < 300  # the refusal names the field, never echoes a megabyte


@pytest.mark.parametrize(
    ("doc", "named"),
    [
        (alert(rule="R" * (MAX_RULE_CHARS + 1)), "rule"),
        (alert(source="s" * 65), "source"),
        ({**alert(), "hostname": "h" * 254}, "hostname"),
    ],
)
def test_rule_source_and_hostname_lengths_are_capped(doc: dict[str, Any], named: str) -> None:
    with pytest.raises(AlertRejected) as caught:
        parse_one(doc, received=RECEIVED)
    assert caught.value.detail.startswith(named)


def test_the_longest_names_kubernetes_allows_are_accepted() -> None:
    got = parse_one(
        alert(**{"k8s.ns.name": "n" * 63, "k8s.pod.name": ".".join(["p" * 63] * 4)[:253].rstrip(".")}),
        received=RECEIVED,
    )
    assert got.namespace == "n" * 63
    assert got.pod is not None
    assert len(got.pod) <= 253


async def test_distinct_rule_and_namespace_pairs_stop_at_the_series_cap_and_lose_no_count() -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(registry, max_series=500)
    for i in range(20_000):
        labels = telemetry.alert_labels(f"rule-{i}", "warning", "syscall", f"ns-{i}")
        telemetry.alerts.labels(*labels).inc()
    samples = [s for m in telemetry.alerts.collect() for s in m.samples if s.name.endswith("_total")]
    assert len(samples) <= 500 + 1  # the cap, and the one overflow series of this priority
    assert sum(s.value for s in samples) == 20_000
    overflow = registry.get_sample_value(
        "teflon_webhook_alerts_total",
        {"rule": OVERFLOW, "priority": "warning", "source": OVERFLOW, "namespace": OVERFLOW},
    )
    assert overflow is not None
    assert overflow > 19_000
    assert len(generate_latest(registry)) < 1_000_000


async def test_with_the_default_caps_the_longest_labels_keep_metrics_under_a_megabyte() -> None:
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    for i in range(20_000):
        rule = f"{i:06d}".ljust(MAX_RULE_CHARS, "r")
        namespace = f"{i:06d}".ljust(63, "n")
        telemetry.alerts.labels(*telemetry.alert_labels(rule, "critical", "s" * 64, namespace)).inc()
        telemetry.actions.labels("label", "dry_run", "dry_run", telemetry.ns(namespace)).inc()
    assert len(generate_latest(registry)) < 1_000_000


def settings(**overrides: Any) -> Settings:
    return Settings(namespace="teflon", pod_name="teflon-webhook-test", **overrides)


async def test_alerts_in_flight_are_bounded_in_bytes_not_only_in_count() -> None:
    app = create_app(settings(queue_max_bytes=1024 * 1024, queue_size=100_000))
    app.service.accepting = True  # no workers: everything accepted stays queued
    body = json.dumps([alert(output="x" * 20_000) for _ in range(20)]).encode()
    transport = httpx.ASGITransport(app=app.ingest)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        answers = [await client.post("/", content=body) for _ in range(5)]
    accepted = sum(r.json().get("accepted", 0) for r in answers)
    assert [r.status_code for r in answers][:2] == [202, 202]
    assert answers[-1].status_code == 503
    assert answers[-1].json()["error"] == "queue_full"
    assert app.service.memory.used <= 1024 * 1024
    assert app.service.queue.qsize() == accepted < 100


async def test_a_body_refused_midway_gives_back_its_bytes() -> None:
    app = create_app(settings(max_body_bytes=64 * 1024))
    app.service.accepting = True

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 10_000

    transport = httpx.ASGITransport(app=app.ingest)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        answer = await client.post("/", content=chunks())
    assert answer.status_code == 413
    assert app.service.memory.used == 0


async def test_unknown_http_methods_are_one_label_value_on_both_webhook_ports() -> None:
    app = create_app(settings())
    ingest = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.ingest), base_url="http://i")
    ops = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.ops), base_url="http://o")
    async with ingest, ops:
        for i in range(300):
            method = f"M{i:04d}" + "X" * 4000
            assert (await ingest.request(method, "/")).status_code == 405
            assert (await ops.request(method, "/metrics")).status_code == 405
        page = (await ops.get("/metrics")).text
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0] for line in page.splitlines() if 'method="' in line
    }
    assert methods == {OTHER_METHOD}
    assert len(page) < 100_000


async def test_the_method_guard_passes_known_methods_unchanged() -> None:
    seen: list[str] = []

    async def app(scope: Any, _receive: Any, _send: Any) -> None:
        seen.append(scope["method"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(_message: Any) -> None:
        return None

    guard = BoundedMethods(app)
    for method in ("GET", "POST", "DELETE", "get", "BREW", "X" * 12_000):
        await guard({"type": "http", "method": method}, nothing, ignore)
    assert seen == ["GET", "POST", "DELETE", OTHER_METHOD, OTHER_METHOD, OTHER_METHOD]


async def test_metrics_are_rendered_off_the_event_loop() -> None:
    app = create_app(settings())
    registry_lock_held = asyncio.Event()
    original = app.registry.collect

    def slow_collect() -> Any:
        registry_lock_held.set()
        time.sleep(0.5)
        return original()

    app.registry.collect = slow_collect  # type: ignore[method-assign]
    ops = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.ops), base_url="http://o")
    async with ops:
        scrape = asyncio.create_task(ops.get("/metrics"))
        await asyncio.wait_for(registry_lock_held.wait(), 2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await ops.get("/healthz")).status_code == 200
        assert loop.time() - started < 0.1
        assert (await scrape).status_code == 200


def test_repeated_refusals_are_logged_a_few_times_per_interval_with_a_count() -> None:
    now = [0.0]
    flt = RepeatFilter(interval=10.0, burst=3, clock=lambda: now[0])

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("teflon.webhook.app", level, __file__, 1, msg, (), None)

    passed = [flt.filter(record("alert rejected")) for _ in range(1000)]
    assert sum(passed) == 3
    assert flt.filter(record("another kind"))
    assert flt.filter(record("alert rejected", logging.ERROR))
    now[0] = 10.0
    first = record("alert rejected")
    assert flt.filter(first)
    assert first.suppressed == 997  # type: ignore[attr-defined]
