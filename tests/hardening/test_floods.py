"""The memory and slowness rows of the attack table, over sockets, against the real server processes.

Each test floods one server the way the table in docs/hardening.md says and holds it to the same
bar: resident memory stays under 60 % of the chart's memory limit during the flood and after it,
``/metrics`` stays under 1 MB, and ``/healthz`` is never held up the way a blocked event loop holds
it (the 100 ms target is recorded, not asserted: see ``HEALTH_TARGET_SECONDS``). The figures of the
last run are written to ``build/hardening/floods.json`` (docs/hardening.md quotes them).
"""

from __future__ import annotations

import json
import os
import re
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.certs import CertificateAuthority
from tests.harness.falco import alert_doc
from tests.harness.ports import free_port

from .floods import (
    REPO,
    Server,
    Watch,
    chart_memory_limit,
    closed_within,
    connect,
    flood,
    send_request,
    stall,
    start,
)

MB = 1_000_000
REQUEST_SECONDS = 2.0
# The target: /healthz within 100 ms throughout (docs/hardening.md records p90, p99 and the slowest
# answer of every run). What this suite asserts is the defence itself: before it, one scrape held the
# event loop for 5.9 s. A timing bar tight enough to be the target fails on a loaded CI machine for
# reasons that are not the server's, so the assertion is looser than the target it reports against.
HEALTH_TARGET_SECONDS = 0.1
MAX_HEALTH_SECONDS = 0.5
MAX_METRICS_BYTES = 1_000_000
FIGURES: dict[str, dict[str, Any]] = {}
_METHOD = re.compile(rb'method="([^"]*)"')


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Iterator[None]:
    yield
    out = REPO / "build" / "hardening" / "floods.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    ports = {"ingest": free_port(), "ops": free_port()}
    server = start(
        "teflon.webhook",
        {
            "TEFLON_WEBHOOK_HOST": "127.0.0.1",
            "TEFLON_WEBHOOK_PORT": str(ports["ingest"]),
            "TEFLON_WEBHOOK_OPS_PORT": str(ports["ops"]),
            "TEFLON_WEBHOOK_KUBECONFIG": str(tmp_path_factory.mktemp("webhook") / "none"),
            "TEFLON_WEBHOOK_REQUEST_TIMEOUT_SECONDS": str(REQUEST_SECONDS),
        },
        ports,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("metrics")
    pair = CertificateAuthority.create("flood-ca").issue(tmp / "serving", "metrics", ips=["127.0.0.1"])
    kubeconfig = tmp / "kubeconfig"
    # An API server where nothing listens: the server runs, unauthenticated requests get nowhere.
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    ports = {"api": free_port(), "ops": free_port()}
    server = start(
        "teflon.metrics",
        {
            "TEFLON_METRICS_HOST": "127.0.0.1",
            "TEFLON_METRICS_PORT": str(ports["api"]),
            "TEFLON_METRICS_OPS_PORT": str(ports["ops"]),
            "TEFLON_METRICS_KUBECONFIG": str(kubeconfig),
            "TEFLON_METRICS_TLS_CERT_FILE": str(pair.cert_file),
            "TEFLON_METRICS_TLS_KEY_FILE": str(pair.key_file),
            "TEFLON_METRICS_REQUEST_TIMEOUT_SECONDS": str(REQUEST_SECONDS),
        },
        ports,
    )
    yield server
    server.stop()


def held(server: Server, component: str, watch: Watch, attack: str, **figures: Any) -> None:
    """Assert the bar for ``server`` after ``attack`` and record its figures."""
    limit = chart_memory_limit(component)
    status, page = server.get("/metrics")
    assert status == 200
    after = int(Path(f"/proc/{server.pid}/status").read_text().split("VmRSS:")[1].split()[0]) * 1024
    FIGURES[f"{component}: {attack}"] = {
        "peak_rss_mib": round(watch.peak_rss / 2**20, 1),
        "rss_after_mib": round(after / 2**20, 1),
        "limit_mib": limit // 2**20,
        "metrics_bytes": len(page),
        "slowest_healthz_ms": round(watch.slowest_health * 1000, 1),
        "p99_healthz_ms": round(watch.health_percentile(0.99) * 1000, 1),
        "p90_healthz_ms": round(watch.health_percentile(0.9) * 1000, 1),
        "healthz_checks": len(watch.latencies),
        "healthz_p90_within_target": watch.health_percentile(0.9) < HEALTH_TARGET_SECONDS,
        "load_average_1m": round(os.getloadavg()[0], 1),
        **figures,
    }
    assert server.proc.poll() is None, f"{component} died during {attack}"
    assert watch.failed_checks == []
    assert len(watch.latencies) > 0
    assert watch.peak_rss < 0.6 * limit, FIGURES[f"{component}: {attack}"]
    assert after < 0.6 * limit
    assert len(page) < MAX_METRICS_BYTES
    # On a quiet machine every answer is well inside the 100 ms target; on a loaded 2-core machine the
    # scheduler alone delays single answers past it, so the assertion is the looser bar above and
    # the figures say whether the target held (docs/hardening.md).
    assert watch.health_percentile(0.9) < MAX_HEALTH_SECONDS, FIGURES[f"{component}: {attack}"]


def alert(namespace: str = "default", pod: str = "web-1", rule: str = "Terminal shell in container") -> bytes:
    doc = alert_doc(
        namespace, pod, rule=rule, priority="Warning", output="A shell was spawned in a container"
    )
    return json.dumps(doc).encode()


def test_megabyte_pod_names(webhook: Server) -> None:
    body = alert(pod="a" * MB)
    with Watch(webhook).running() as watch:
        answers = flood(lambda _i: send_request(webhook.ports["ingest"], body=body), range(100))
    assert answers == {422: 100}
    status, rates = webhook.get("/v1/rates?scope=pod")
    assert status == 200
    assert json.loads(rates)["entries"] == []
    held(webhook, "webhook", watch, "100 requests with a 1 MB pod name", answers=answers)


def test_megabyte_namespaces(webhook: Server) -> None:
    body = alert(namespace="a" * MB)
    with Watch(webhook).running() as watch:
        answers = flood(lambda _i: send_request(webhook.ports["ingest"], body=body), range(60))
    assert answers == {422: 60}
    held(webhook, "webhook", watch, "60 requests with a 1 MB namespace", answers=answers)


def test_distinct_rule_and_namespace_pairs(webhook: Server) -> None:
    def batch(i: int) -> bytes:
        alerts: list[bytes] = []
        size = 0
        while size < 420_000:
            n = len(alerts)
            one = alert(namespace=f"ns-{i}-{n}", rule=f"rule {i} {n} " + "r" * 200)
            alerts.append(one)
            size += len(one) + 1
        return b"[" + b",".join(alerts) + b"]"

    bodies = [batch(i) for i in range(40)]
    with Watch(webhook).running() as watch:
        answers = flood(lambda body: send_request(webhook.ports["ingest"], body=body), bodies)
    # Accepted, or refused whole or in part once the queue's byte budget is spent: never a crash.
    assert set(answers) <= {202, 503}
    assert answers.get(202, 0) > 0
    pairs = sum(body.count(b'"rule"') for body in bodies)
    held(webhook, "webhook", watch, f"40 requests of 420 KB: {pairs:,} distinct rule x namespace pairs")


def test_stalled_bodies_and_idle_connections_are_closed(webhook: Server) -> None:
    with Watch(webhook).running() as watch:
        stalled = [stall(webhook.ports["ingest"], declared=1_048_576, sent=1_000_000) for _ in range(200)]
        idle = [connect(webhook.ports["ingest"]) for _ in range(300)]
        closed = sum(closed_within(s, REQUEST_SECONDS + 3) for s in stalled + idle)
        for s in stalled + idle:
            s.close()
    assert closed == 500
    held(
        webhook,
        "webhook",
        watch,
        "200 bodies stalled after 1,000,000 of 1,048,576 bytes, 300 idle connections",
        closed_within_seconds=REQUEST_SECONDS + 3,
    )


def methods_flood(server: Server, component: str, port: str, tls: Any = None) -> None:
    methods = [f"M{i:05d}" + "X" * 12_000 for i in range(1500)]
    path = "/" if port == "ingest" else "/healthz"
    with Watch(server).running() as watch:
        answers = flood(lambda m: send_request(server.ports[port], method=m, path=path, tls=tls), methods)
    # Each reaches the app as `other`, which no route takes.
    assert answers == {405: 1500}
    status, page = server.get("/metrics")
    assert status == 200
    assert set(_METHOD.findall(page)) <= {b"GET", b"POST", b"HEAD", b"other"}
    held(server, component, watch, f"1,500 requests with distinct 12 KB HTTP methods ({port} port)")


def test_http_methods_on_webhook_ingest(webhook: Server) -> None:
    methods_flood(webhook, "webhook", "ingest")


def test_http_methods_on_webhook_ops(webhook: Server) -> None:
    methods_flood(webhook, "webhook", "ops")


def insecure_tls() -> ssl.SSLContext:
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    return tls


def test_http_methods_on_metrics_api(metrics: Server) -> None:
    methods_flood(metrics, "metrics", "api", tls=insecure_tls())


def test_http_methods_on_metrics_ops(metrics: Server) -> None:
    methods_flood(metrics, "metrics", "ops")


def test_idle_connections_to_the_metrics_server_are_closed(metrics: Server) -> None:
    with Watch(metrics).running() as watch:
        # TLS connections finish their handshake first: before it, asyncio's 60 s handshake timeout holds.
        idle = [connect(metrics.ports["api"], insecure_tls()) for _ in range(150)]
        idle += [connect(metrics.ports["ops"]) for _ in range(150)]
        closed = sum(closed_within(s, REQUEST_SECONDS + 3) for s in idle)
        for s in idle:
            s.close()
    assert closed == 300
    held(metrics, "metrics", watch, "300 idle connections (150 TLS to the API port, 150 to the ops port)")
