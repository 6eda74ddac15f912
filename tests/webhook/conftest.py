"""Fixtures for webhook tests: settings, the apps over ASGI or as a real process, real alert fixtures
and a cluster fake."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from teflon.webhook.app import WebhookApp, create_app
from teflon.webhook.settings import Settings
from tests.harness.ports import free_port

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


class Webhook:
    def __init__(self, proc: subprocess.Popen[str], port: int, ops_port: int) -> None:
        self.proc, self.port, self.ops_port = proc, port, ops_port

    @property
    def ops(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def stop(self) -> tuple[int, list[dict[str, object]]]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


RunWebhook = Callable[..., "Webhook"]


@pytest.fixture
def run_webhook(tmp_path: Path) -> Iterator[RunWebhook]:
    started: list[Webhook] = []

    def start(**env: str) -> Webhook:
        port, ops_port = free_port(), free_port()
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "KUBECONFIG": str(tmp_path / "no-kubeconfig"),  # no cluster, whatever this machine has
            "TEFLON_WEBHOOK_HOST": "127.0.0.1",
            "TEFLON_WEBHOOK_PORT": str(port),
            "TEFLON_WEBHOOK_OPS_PORT": str(ops_port),
            "TEFLON_WEBHOOK_POD_NAME": "webhook-under-test",
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "teflon.webhook"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        hook = Webhook(proc, port, ops_port)
        started.append(hook)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(
                    f"webhook exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
                )
            try:
                if httpx.get(f"{hook.ops}/healthz", timeout=1).status_code == 200:
                    return hook
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("webhook did not come up within 60 s")

    yield start
    for hook in started:
        if hook.proc.poll() is None:
            hook.proc.kill()
            hook.proc.communicate()
