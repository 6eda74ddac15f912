"""Fixtures for webhook tests: settings, the apps over ASGI or as a real process, real alert fixtures
and a cluster fake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from teflon.webhook.app import WebhookApp, create_app
from teflon.webhook.settings import Settings
from tests.harness.webhook import WebhookProcess

from .fakes import FakeActions

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL_ALERTS = sorted((FIXTURES / "falco-alerts").glob("*.json"))
CONSTRUCTED_ALERTS = sorted((FIXTURES / "webhook" / "alerts").glob("*.json"))


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "namespace": "teflon",
        "pod_name": "teflon-webhook-test",
        "policy_reload_seconds": 0.05,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def fake() -> FakeActions:
    return FakeActions()


class Running:
    """A started ``WebhookApp`` with an HTTP client per port."""

    def __init__(self, app: WebhookApp, ingest: httpx.AsyncClient, ops: httpx.AsyncClient) -> None:
        self.app = app
        self.ingest = ingest
        self.ops = ops

    @property
    def registry(self) -> CollectorRegistry:
        return self.app.registry

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    async def drain(self) -> None:
        await self.app.service.queue.join()


StartApp = Callable[..., Any]


@pytest.fixture
async def start_app() -> AsyncIterator[StartApp]:
    """``await start_app(settings, actions=...)`` -> a running app; everything is stopped afterwards."""
    stack: list[tuple[WebhookApp, httpx.AsyncClient, httpx.AsyncClient]] = []

    async def start(settings: Settings | None = None, *, actions: FakeActions | None = None) -> Running:
        app = create_app(settings or make_settings(), actions=actions, registry=CollectorRegistry())
        await app.service.start()
        ingest = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.ingest), base_url="http://ingest")
        ops = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.ops), base_url="http://ops")
        stack.append((app, ingest, ops))
        return Running(app, ingest, ops)

    yield start
    for app, ingest, ops in stack:
        await ingest.aclose()
        await ops.aclose()
        await app.service.stop()


RunWebhook = Callable[..., WebhookProcess]


@pytest.fixture
def run_webhook(tmp_path: Path) -> Iterator[RunWebhook]:
    """Start ``python -m teflon.webhook`` (no cluster) with extra settings as keyword arguments."""
    started: list[WebhookProcess] = []

    def start(**env: str) -> WebhookProcess:
        hook = WebhookProcess.start(tmp_path, env, name="webhook-under-test")
        started.append(hook)
        return hook

    yield start
    for hook in started:
        hook.kill()
