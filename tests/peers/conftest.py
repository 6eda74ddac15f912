"""A real falcosidekick in front of a real teflon ingest, both on 127.0.0.1.

* ``sidekick_binary`` (session): falcosidekick built by ``scripts/peers.sh`` from its pinned release
  archive, cached by the archive's sha256 (a warm run pays nothing; a cold one builds it, ~6 minutes of
  one core). Without the archive directory the tests fail under CI and are skipped elsewhere, as the
  cluster fixture does for the local control plane.
* ``teflon``: ``await teflon(settings, actions=...)`` serves the webhook's ingest app with uvicorn on a
  free 127.0.0.1 port, its ``WebhookService`` started, and returns a ``Teflon``.
* ``sidekick``: ``await sidekick(url)`` starts falcosidekick with only its generic ``webhook`` output,
  pointed at ``url``, and returns a ``Sidekick``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry

from teflon.webhook.actions import ClusterActions
from teflon.webhook.app import WebhookApp, create_app
from teflon.webhook.settings import Settings
from tests.harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
MISSING_ARCHIVE = 2  # scripts/peers.sh's exit code when the release archive is not there


@pytest.fixture(scope="session")
def sidekick_binary() -> Path:
    built = subprocess.run(
        [str(ROOT / "scripts" / "peers.sh"), "falcosidekick"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if built.returncode == MISSING_ARCHIVE and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"falcosidekick cannot be built here (CI would fail): {built.stderr.strip()}")
    assert built.returncode == 0, f"scripts/peers.sh falcosidekick failed:\n{built.stderr[-4000:]}"
    return Path(built.stdout.strip().splitlines()[-1])


class Teflon:
    """A running webhook: its ingest URL and its registry (the counters the tests assert on)."""

    def __init__(self, app: WebhookApp, url: str) -> None:
        self.app, self.url = app, url

    @property
    def registry(self) -> CollectorRegistry:
        return self.app.registry

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [
            (dict(s.labels), s.value)
            for metric in self.registry.collect()
            for s in metric.samples
            if s.name == name
        ]

    def total(self, name: str) -> float:
        return sum(value for _labels, value in self.samples(name))

    async def drain(self) -> None:
        await self.app.service.queue.join()


StartTeflon = Callable[..., Awaitable[Teflon]]


@pytest.fixture
async def teflon() -> AsyncIterator[StartTeflon]:
    running: list[tuple[WebhookApp, uvicorn.Server, asyncio.Task[None], socket.socket]] = []

    async def start(settings: Settings, *, actions: ClusterActions | None = None) -> Teflon:
        app = create_app(settings, actions=actions, registry=CollectorRegistry())
        await app.service.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app.ingest, host="127.0.0.1", port=port, log_config=None, lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        running.append((app, server, task, sock))
        for _ in range(500):
            if server.started:
                return Teflon(app, f"http://127.0.0.1:{port}")
            await asyncio.sleep(0.01)
        raise AssertionError("uvicorn did not start teflon's ingest within 5 s")

    yield start
    for app, server, task, sock in running:
        server.should_exit = True
        await task
        sock.close()
        await app.service.stop()


class Sidekick:
    """A running falcosidekick: Falco posts alerts to ``url``; it forwards them to its webhook output."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.url, self.log = proc, f"http://127.0.0.1:{port}", log

    async def post(self, body: bytes) -> int:
        """Post one alert as Falco's http_output does; falcosidekick's status code."""
        async with httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(self.url + "/", content=body, headers={"Content-Type": "application/json"})
        return resp.status_code

    async def webhook_outputs(self) -> dict[str, float]:
        """``falcosecurity_falcosidekick_outputs_total`` of the webhook output, by status (ok, error)."""
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.get(self.url + "/metrics")).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            name = "falcosecurity_falcosidekick_outputs_total{"
            if line.startswith(name) and 'destination="webhook"' in line:
                labels, value = line.rsplit(" ", 1)
                status = labels.split('status="', 1)[1].split('"', 1)[0]
                found[status] = found.get(status, 0.0) + float(value)
        return found


StartSidekick = Callable[[str], Awaitable[Sidekick]]


@pytest.fixture
async def sidekick(sidekick_binary: Path, tmp_path: Path) -> AsyncIterator[StartSidekick]:
    started: list[Sidekick] = []

    async def start(webhook_url: str) -> Sidekick:
        port = free_port()
        log = tmp_path / f"falcosidekick-{port}.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "LISTENADDRESS": "127.0.0.1",
            "LISTENPORT": str(port),
            # The generic webhook output, and only it: a non-empty address enables it.
            "WEBHOOK_ADDRESS": webhook_url,
            "WEBHOOK_MINIMUMPRIORITY": "debug",
        }
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(sidekick_binary), env=env, stdout=out, stderr=asyncio.subprocess.STDOUT
            )
        running = Sidekick(proc, port, log)
        started.append(running)
        async with httpx.AsyncClient(timeout=1) as http:
            for _ in range(300):
                if proc.returncode is not None:
                    raise AssertionError(f"falcosidekick exited {proc.returncode}:\n{log.read_text()}")
                try:
                    if (await http.get(running.url + "/ping")).status_code == 200:
                        return running
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"falcosidekick did not answer /ping within 30 s:\n{log.read_text()}")

    yield start
    for running in started:
        if running.proc.returncode is None:
            running.proc.terminate()
        try:
            await asyncio.wait_for(running.proc.wait(), timeout=10)
        except TimeoutError:
            running.proc.kill()
            await running.proc.wait()
