"""Fixtures for the metrics server: telemetry on a fresh registry, and a fully wired API app on fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry

from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import AuthConfig, Authenticator, Authorizer, StaticAuthConfig, UserInfo
from teflon.metrics.config import MetricsConfig, parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.telemetry import Telemetry

from .fakes import FakeAccess, FakeBackend, FakeObjects, FakeTokens

NOW = datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)

CONFIG = """
backends:
  teflon: {service: teflon-webhook, namespace: teflon}
  prometheus: {url: "http://127.0.0.1:1"}
metrics:
  - name: http_requests_per_second
    backend: prometheus
    resources: [pods, services, deployments.apps, nodes]
    query: sum by (pod) (rate(http_requests_total{namespace="{{ .namespace }}"}[2m]))
    windowSeconds: 120
  - name: queue_depth
    backend: prometheus
    resources: [namespaces]
    query: sum(queue_depth{namespace="{{ .namespace }}",{{ .selector }}})
    external: true
    emptyAs: zero
"""


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry(CollectorRegistry())


@dataclass
class Api:
    client: httpx.AsyncClient
    objects: FakeObjects
    teflon: FakeBackend
    prometheus: FakeBackend
    access: FakeAccess
    telemetry: Telemetry
    config: MetricsConfig


@pytest.fixture
async def api(telemetry: Telemetry) -> AsyncIterator[Api]:
    """The API app on fakes; token ``hpa`` is an allowed user, ``eve`` an authenticated one refused."""
    config = parse_config(CONFIG)
    objects = FakeObjects()
    teflon, prometheus = FakeBackend(), FakeBackend()
    access = FakeAccess(allow={"system:serviceaccount:kube-system:horizontal-pod-autoscaler"})
    tokens = FakeTokens(
        {
            "hpa": UserInfo(
                "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                groups=("system:serviceaccounts",),
            ),
            "eve": UserInfo("eve", groups=("system:authenticated",)),
            "root": UserInfo("admin", groups=("system:masters",)),
        }
    )
    provider = ConfiguredProvider(
        config, {"teflon": teflon, "prometheus": prometheus}, objects, telemetry, now=lambda: NOW
    )
    components = Components(
        provider=provider,
        authenticator=Authenticator(StaticAuthConfig(AuthConfig()), tokens, telemetry),
        authorizer=Authorizer(access),
        telemetry=telemetry,
        registry=telemetry.registry,
        ready=lambda: True,
    )
    app = create_app(components).api
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://metrics", headers={"Authorization": "Bearer hpa"}
    ) as client:
        yield Api(client, objects, teflon, prometheus, access, telemetry, config)
