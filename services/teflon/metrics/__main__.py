"""``python -m teflon.metrics``: the API server on its HTTPS port and probes/metrics on the ops port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import uvicorn
from prometheus_client import CollectorRegistry

from teflon.common import kube
from teflon.common.logs import setup_logging
from teflon.common.logthrottle import throttle
from teflon.common.serving import bounded_h11, server_limits
from teflon.common.settings import load_settings
from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import (
    AuthConfigSource,
    Authenticator,
    AuthError,
    Authorizer,
)
from teflon.metrics.backends.registry import BackendContext, build_backends
from teflon.metrics.config import ConfigError, load_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.resources import KubeObjects
from teflon.metrics.reviews import KubeAccessReviewer, KubeTokenReviewer
from teflon.metrics.settings import Settings
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import ServerTLS, TLSH11Protocol, https_config

log = logging.getLogger("teflon.metrics")

CERT_CHECK_SECONDS = 30.0


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``serve``: two servers would replace each other's handler."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _refresh_until_loaded(source: AuthConfigSource, every: float) -> None:
    while True:
        try:
            await source.refresh()
            break
        except AuthError as exc:
            log.warning("authentication config not loaded yet; not ready", extra={"error": str(exc)})
            await asyncio.sleep(min(every, 5.0))
    await source.run(every)


async def _watch_cert(server_tls: ServerTLS) -> None:
    while True:
        await asyncio.sleep(CERT_CHECK_SECONDS)
        server_tls.reload_if_changed()


async def serve(settings: Settings) -> None:
    config = load_config(settings.config_file)
    server_tls = ServerTLS(settings.tls_cert_file, settings.tls_key_file)
    client = kube.KubeClient.from_config(settings.kubeconfig or None, timeout=4.0)
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    source = AuthConfigSource(client, on_change=lambda cfg: server_tls.trust_client_cas(cfg.all_cas()))
    backends = build_backends(config, BackendContext(client, telemetry))
    components = Components(
        provider=ConfiguredProvider(config, backends, KubeObjects(client), telemetry),
        authenticator=Authenticator(source, KubeTokenReviewer(client), telemetry),
        authorizer=Authorizer(KubeAccessReviewer(client, ttl=settings.authz_cache_seconds)),
        telemetry=telemetry,
        registry=registry,
        ready=lambda: source.current is not None,
    )
    app = create_app(components)
    limits = server_limits(
        max_connections=settings.max_connections,
        keepalive_seconds=settings.keepalive_seconds,
        shutdown_seconds=settings.shutdown_seconds,
    )
    api = _Server(
        https_config(
            app.api,
            host=settings.host,
            port=settings.port,
            server_tls=server_tls,
            protocol=bounded_h11(settings.request_timeout_seconds, TLSH11Protocol),
            **limits,
        )
    )
    ops = _Server(
        uvicorn.Config(
            app.ops,
            host=settings.host,
            port=settings.ops_port,
            log_config=None,
            http=bounded_h11(settings.request_timeout_seconds),
            **limits,
        )
    )
    # Refusals and protocol errors are logged per request, and anyone who reaches a port can cause them.
    throttle(logging.getLogger("teflon.metrics.auth"), logging.getLogger("uvicorn.error"))
    background = [
        asyncio.create_task(_refresh_until_loaded(source, settings.auth_refresh_seconds)),
        asyncio.create_task(_watch_cert(server_tls)),
    ]
    log.info(
        "metrics server starting",
        extra={"port": settings.port, "ops_port": settings.ops_port, "metrics": len(config.all_metrics())},
    )
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("metrics server stopping")
        api.should_exit = ops.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await asyncio.gather(api.serve(), ops.serve())
    finally:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for backend in backends.values():
            await backend.aclose()
        await client.aclose()


def main() -> int:
    settings = load_settings(Settings, "metrics")
    setup_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except (ConfigError, kube.KubeError, OSError) as exc:
        log.error("metrics server cannot start", extra={"error": str(exc)})  # noqa: TRY400
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
