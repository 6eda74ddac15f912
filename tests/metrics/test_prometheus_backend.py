"""The prometheus backend against a real Prometheus server scraping a real exporter.

The module starts Debian's ``prometheus`` on 127.0.0.1 with a temporary config that scrapes a
``prometheus_client`` exporter every second, waits until the exporter's series are queryable, and asks
through the backend exactly as the server does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from teflon.metrics.backends import BackendError, Target
from teflon.metrics.backends.prometheus import prometheus_backend
from teflon.metrics.config import MetricDef, PrometheusBackend
from teflon.metrics.resources import RESOURCE_TYPES
from teflon.metrics.selectors import parse_selector
from teflon.metrics.telemetry import Telemetry
from tests.harness.ports import free_port

PODS = RESOURCE_TYPES["pods"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed; `make tools` installs it (scripts/apt-packages.txt)")
    registry = CollectorRegistry()
    requests = Gauge("demo_requests_per_second", "demo", ["namespace", "pod", "code"], registry=registry)
    requests.labels("shop", "web-1", "200").set(12.5)
    requests.labels("shop", "web-1", "500").set(0.5)
    requests.labels("shop", "web-2", "200").set(3)
    requests.labels("blog", "web-1", "200").set(99)
    exporter_port = free_port()
    http_server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited: {(tmp / 'prometheus.log').read_text()[-2000:]}")
            try:
                doc = httpx.get(
                    f"{url}/api/v1/query", params={"query": "count(demo_requests_per_second)"}
                ).json()
                if doc["data"]["result"] and doc["data"]["result"][0]["value"][1] == "4":
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not scrape the exporter within 60 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
        http_server.shutdown()
        thread.join(timeout=5)


def metric(query: str, **kw: object) -> MetricDef:
    return MetricDef.model_validate(
        {"name": "rps", "backend": "prometheus", "resources": ["pods"], "query": query, **kw}
    )


SUM_BY_POD = (
    "sum by (pod) (demo_requests_per_second"
    '{namespace="{{ .namespace }}", pod=~"{{ .names }}", {{ .selector }}})'
)


async def test_values_per_pod_come_from_real_prometheus(prometheus: str, telemetry: Telemetry) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    try:
        values = await backend.fetch(metric(SUM_BY_POD), Target(PODS, "shop", ("web-1", "web-2", "web-3")))
    finally:
        await backend.aclose()
    assert values == {"web-1": 13.0, "web-2": 3.0}
    assert (
        telemetry.registry.get_sample_value(
            "teflon_metrics_backend_duration_seconds_count", {"backend": "prometheus"}
        )
        == 1
    )


async def test_the_metric_label_selector_becomes_label_matchers(
    prometheus: str, telemetry: Telemetry
) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    try:
        only_errors = await backend.fetch(
            metric(SUM_BY_POD), Target(PODS, "shop", ("web-1", "web-2"), parse_selector("code in (500, 503)"))
        )
        not_ok = await backend.fetch(
            metric(SUM_BY_POD), Target(PODS, "shop", ("web-1", "web-2"), parse_selector("code!=200"))
        )
    finally:
        await backend.aclose()
    assert only_errors == {"web-1": 0.5}
    assert not_ok == {"web-1": 0.5}


@pytest.mark.parametrize(
    "hostile",
    ['web-1"} or demo_requests_per_second{pod=~".+', "web-1|web-2", ".*", 'web-1\\"})'],
)
async def test_object_names_cannot_inject_promql(prometheus: str, telemetry: Telemetry, hostile: str) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    try:
        values = await backend.fetch(metric(SUM_BY_POD), Target(PODS, "shop", (hostile,)))
        ns_values = await backend.fetch(metric(SUM_BY_POD), Target(PODS, hostile, ("web-1",)))
    finally:
        await backend.aclose()
    assert values == {}
    assert ns_values == {}


async def test_a_single_unlabelled_series_answers_a_named_object(
    prometheus: str, telemetry: Telemetry
) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    query = 'sum(demo_requests_per_second{namespace="{{ .namespace }}", pod=~"{{ .names }}"})'
    try:
        values = await backend.fetch(metric(query), Target(PODS, "blog", ("web-1",)))
    finally:
        await backend.aclose()
    assert values == {"web-1": 99.0}


async def test_several_series_for_one_object_are_an_error_not_a_guess(
    prometheus: str, telemetry: Telemetry
) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    query = 'demo_requests_per_second{namespace="{{ .namespace }}", pod=~"{{ .names }}"}'
    try:
        with pytest.raises(BackendError, match="several series"):
            await backend.fetch(metric(query), Target(PODS, "shop", ("web-1",)))
    finally:
        await backend.aclose()


async def test_invalid_promql_is_a_backend_error_with_prometheus_message(
    prometheus: str, telemetry: Telemetry
) -> None:
    backend = prometheus_backend(PrometheusBackend(url=prometheus), telemetry)
    try:
        with pytest.raises(BackendError, match=r"HTTP 400.*parse error"):
            await backend.fetch(metric("sum(((demo"), Target(PODS, "shop", ("web-1",)))
    finally:
        await backend.aclose()
    assert (
        telemetry.registry.get_sample_value(
            "teflon_metrics_backend_errors_total", {"backend": "prometheus", "reason": "error"}
        )
        == 1
    )


async def test_a_silent_backend_times_out_as_an_error(telemetry: Telemetry) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        backend = prometheus_backend(
            PrometheusBackend.model_validate({"url": f"http://127.0.0.1:{port}", "timeoutSeconds": 0.3}),
            telemetry,
        )
        started = time.monotonic()
        try:
            with pytest.raises(BackendError, match=r"no answer within 0\.3s|ReadTimeout"):
                await backend.fetch(metric("up"), Target(PODS, "shop", ("web-1",)))
        finally:
            await backend.aclose()
    assert time.monotonic() - started < 2


async def test_bearer_token_file_and_headers_are_sent(tmp_path: Path, telemetry: Telemetry) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    backend = prometheus_backend(
        PrometheusBackend.model_validate(
            {
                "url": "http://prom.example:9090",
                "bearerTokenFile": str(token),
                "headers": {"X-Scope-OrgID": "team-a"},
            }
        ),
        telemetry,
        http=httpx.AsyncClient(transport=httpx.MockTransport(answer)),
    )
    try:
        await backend.fetch(metric("up"), Target(PODS, "shop", ("web-1",)))
        token.write_text("rotated")
        await backend.fetch(metric("up"), Target(PODS, "shop", ("web-1",)))
    finally:
        await backend.aclose()
    assert [r.headers["authorization"] for r in seen] == ["Bearer s3cret", "Bearer rotated"]
    assert seen[0].headers["x-scope-orgid"] == "team-a"
    assert seen[0].url.path == "/api/v1/query"
