"""Benchmark: latency of a ``pods/*`` custom-metrics query over 1,000 pods, from cache and uncached.

Everything runs on 127.0.0.1: the metrics API app served by uvicorn over HTTPS with the certificate-aware
protocol, a client presenting a front-proxy certificate with ``X-Remote-User`` (as the aggregator does),
and two webhook replicas answering ``GET /v1/rates`` with ``teflon.common.wire.RateSnapshot`` counts for
500 pods each. Pods come from an in-memory lister (1,000 pods, label ``app=web``), so the numbers measure
the server (TLS, authentication, routing, replica fan-out, summing, shaping 1,000 items), not an API
server. Access reviews are answered in memory. Client and server share one event loop; the figures
include the client's own work.

    make bench-metrics            # or: .venv/bin/python -m bench.metrics [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry

from teflon.common.wire import RateEntry, RateScope, RateSnapshot, Signal
from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import Attributes, AuthConfig, Authenticator, Authorizer, UserInfo
from teflon.metrics.backends.teflon import StaticReplicas, TeflonRates
from teflon.metrics.config import parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.resources import ResourceType
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import ServerTLS, https_config
from tests.harness.certs import CertificateAuthority
from tests.harness.stats import percentile

PODS = 1000
NAMESPACE = "bench"
CONFIG = """
backends:
  teflon: {service: teflon-webhook, namespace: teflon}
metrics:
  - {name: falco_alerts_per_minute, backend: teflon, resources: [pods], cacheSeconds: 3600}
  - {name: falco_alerts_per_minute_uncached, backend: teflon, resources: [pods], cacheSeconds: 0}
"""


class MemoryPods:
    """``ObjectLister`` with 1,000 pods labelled ``app=web``."""

    def __init__(self) -> None:
        self.names = [f"web-{i:04d}" for i in range(PODS)]

    async def list_names(self, rtype: ResourceType, namespace: str | None, label_selector: str) -> list[str]:
        return list(self.names) if label_selector == "app=web" else []

    async def exists(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        return name in self.names


class AllowAll:
    async def allowed(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        return True, ""


class NoTokens:
    async def review(self, token: str) -> UserInfo | None:
        return None


def replica_app(names: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/rates")
    async def rates(request: Request) -> Response:
        q = request.query_params
        snap = RateSnapshot(
            scope=RateScope(q["scope"]),
            signal=Signal(q["signal"]),
            window_seconds=int(q["window"]),
            generated_at=datetime.now(UTC),
            replica="bench",
            entries=[
                RateEntry(namespace=NAMESPACE, kind="Pod", name=n, count=i % 7) for i, n in enumerate(names)
            ],
        )
        return Response(snap.model_dump_json(), media_type="application/json")

    return app


async def start(config: uvicorn.Config, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            return server, task
        await asyncio.sleep(0.01)
    raise RuntimeError("server did not start")


def bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


async def measure(client: httpx.AsyncClient, url: str, n: int, headers: dict[str, str]) -> list[float]:
    for _ in range(10):  # warm up connections, caches of the code paths
        (await client.get(url, headers=headers)).raise_for_status()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await client.get(url, headers=headers)
        out.append((time.perf_counter() - t0) * 1000)
        resp.raise_for_status()
        if len(resp.json()["items"]) != PODS:
            raise RuntimeError(f"expected {PODS} items, got {len(resp.json()['items'])}")
    return out


async def main(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        serving_ca = CertificateAuthority.create("bench-serving-ca")
        front_ca = CertificateAuthority.create("bench-front-proxy-ca")
        serving = serving_ca.issue(tmp / "localhost", "localhost", dns_names=["localhost"])
        front_proxy = front_ca.issue(
            tmp / "front-proxy-client", "front-proxy-client", server=False, client=True
        )
        server_tls = ServerTLS(str(serving.cert_file), str(serving.key_file))
        auth = AuthConfig(
            requestheader_cas=(front_ca.cert,),
            allowed_names=("front-proxy-client",),
            username_headers=("x-remote-user",),
            group_headers=("x-remote-group",),
        )
        server_tls.trust_client_cas(auth.all_cas())

        names = MemoryPods().names
        replicas = []
        for half in (names[: PODS // 2], names[PODS // 2 :]):
            sock = bound()
            cfg = uvicorn.Config(replica_app(half), log_config=None, lifespan="off", access_log=False)
            replicas.append((await start(cfg, sock), f"http://127.0.0.1:{sock.getsockname()[1]}"))

        telemetry = Telemetry(CollectorRegistry())
        config = parse_config(CONFIG)
        assert config.backends.teflon is not None  # noqa: S101 - the config above has it
        backend = TeflonRates(config.backends.teflon, StaticReplicas([u for _, u in replicas]), telemetry)
        static_auth = type("Static", (), {"current": auth})()
        components = Components(
            provider=ConfiguredProvider(config, {"teflon": backend}, MemoryPods(), telemetry),
            authenticator=Authenticator(static_auth, NoTokens(), telemetry),
            authorizer=Authorizer(AllowAll()),
            telemetry=telemetry,
            registry=telemetry.registry,
            ready=lambda: True,
        )
        sock = bound()
        api_cfg = https_config(
            create_app(components).api,
            host="127.0.0.1",
            port=sock.getsockname()[1],
            server_tls=server_tls,
            lifespan="off",
            access_log=False,
        )
        api, api_task = await start(api_cfg, sock)
        ctx = ssl.create_default_context(cadata=serving_ca.cert_pem.decode())
        ctx.load_cert_chain(front_proxy.cert_file, front_proxy.key_file)
        base = f"https://localhost:{sock.getsockname()[1]}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}"
        headers = {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}
        results: dict[str, Any] = {"pods": PODS, "requests": requests}
        async with httpx.AsyncClient(verify=ctx, timeout=30) as client:
            for mode, metric in (
                ("cached", "falco_alerts_per_minute"),
                ("uncached", "falco_alerts_per_minute_uncached"),
            ):
                samples = await measure(
                    client, f"{base}/pods/*/{metric}?labelSelector=app%3Dweb", requests, headers
                )
                results[mode] = {
                    "p50_ms": round(percentile(samples, 50), 2),
                    "p99_ms": round(percentile(samples, 99), 2),
                    "max_ms": round(max(samples), 2),
                }
        api.should_exit = True
        await api_task
        for (server, task), _ in replicas:
            server.should_exit = True
            await task
        await backend.aclose()
        return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="measured requests per mode")
    args = parser.parse_args()
    res = asyncio.run(main(args.requests))
    print(
        f"pods/* over {res['pods']} pods, {res['requests']} sequential requests per mode "
        "(HTTPS, front-proxy auth)"
    )
    for mode in ("cached", "uncached"):
        r = res[mode]
        print(
            f"  {mode:9s} p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   max {r['max_ms']:8.2f} ms"
        )
    print(json.dumps(res))
