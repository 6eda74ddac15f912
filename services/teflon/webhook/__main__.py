"""``python -m teflon.webhook``: serve ingest and ops on their ports until SIGTERM, then drain.

Both uvicorn servers run in one event loop with the service they share. Signals are handled here rather
than by uvicorn, because two servers would each replace the other's handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Generator

import uvicorn

from teflon.common.kube import KubeClient, KubeError
from teflon.common.logs import setup_logging
from teflon.common.serving import bounded_h11, server_limits
from teflon.common.settings import load_settings
from teflon.common.tls import ReloadingServerTLS
from teflon.webhook.actions import ClusterActions
from teflon.webhook.app import create_app
from teflon.webhook.kube_actions import KubeClusterActions
from teflon.webhook.settings import Settings
from teflon.webhook.stream import STREAM_PATH, keepalive_listener

log = logging.getLogger("teflon.webhook")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def connect_cluster(settings: Settings) -> ClusterActions | None:
    """Kubernetes access from ``KUBECONFIG`` or the pod's ServiceAccount; None when there is none."""
    try:
        client = KubeClient.from_config(settings.kubeconfig or None)
    except KubeError as exc:
        log.warning("no Kubernetes API configured: dry run decisions only", extra={"error": str(exc)})
        return None
    log.info("kubernetes API configured", extra={"server": client.server})
    return KubeClusterActions(client, reporting_instance=settings.pod_name)


# How often the serving certificate, key and client CA files are checked for a renewal.
TLS_CHECK_SECONDS = 30.0


def server_tls(settings: Settings) -> ReloadingServerTLS | None:
    """The ingest port's TLS (reloaded when its files change), None when it serves plain HTTP."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return ReloadingServerTLS(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


def server_configs(
    settings: Settings, ingest: object, ops: object, reloading: ReloadingServerTLS | None = None
) -> tuple[uvicorn.Config, uvicorn.Config]:
    tls: dict[str, object] = {}
    reloading = reloading or server_tls(settings)
    if reloading is not None:
        context = reloading.context
        tls = {"ssl_context_factory": lambda _config, _default: context}
    common: dict[str, object] = {
        "lifespan": "off",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        **server_limits(
            max_connections=settings.max_connections,
            keepalive_seconds=settings.keepalive_seconds,
            shutdown_seconds=settings.shutdown_seconds,
        ),
    }
    # An alert stream's body lasts as long as its sender likes: only its headers have a deadline.
    ingest_http = bounded_h11(settings.request_timeout_seconds, streaming_paths=frozenset({STREAM_PATH}))
    ops_http = bounded_h11(settings.request_timeout_seconds)
    return (
        uvicorn.Config(ingest, host=settings.host, port=settings.port, http=ingest_http, **common, **tls),  # type: ignore[arg-type]
        uvicorn.Config(ops, host=settings.host, port=settings.ops_port, http=ops_http, **common),  # type: ignore[arg-type]
    )


async def serve(settings: Settings) -> None:
    app = create_app(settings, actions=connect_cluster(settings))
    reloading = server_tls(settings)
    ingest_cfg, ops_cfg = server_configs(settings, app.ingest, app.ops, reloading)
    servers = [_Server(ingest_cfg), _Server(ops_cfg)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        listener = keepalive_listener(settings.host, settings.port)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    async with app.service.running():
        tasks = [
            asyncio.create_task(servers[0].serve(sockets=[listener])),
            asyncio.create_task(servers[1].serve()),
        ]
        watch = asyncio.create_task(reloading.watch(TLS_CHECK_SECONDS)) if reloading else None
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down: no new alerts, draining the queue")
        # Stop ingest first; the ops server keeps answering probes and scrapes while the queue drains.
        # Open alert streams end first (after the lines they received): uvicorn waits for every body.
        app.streams.close()
        servers[0].should_exit = True
        await tasks[0]
        app.service.accepting = False
        if watch is not None:
            watch.cancel()
    servers[1].should_exit = True
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    for task in done:
        if task is not stopped and task.exception() is not None:
            raise SystemExit(f"server failed: {task.exception()}")


def main() -> int:
    settings = load_settings(Settings, "webhook")
    setup_logging(settings.log_level)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
