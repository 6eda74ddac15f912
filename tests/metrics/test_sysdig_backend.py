"""The sysdig backend against a local stand-in faithful to Sysdig's documented Prometheus API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from teflon.metrics.backends import BackendError, Target
from teflon.metrics.backends.promql import render_query
from teflon.metrics.backends.sysdig import NET_HTTP_REQUEST_COUNT_QUERY, sysdig_backend
from teflon.metrics.config import SYSDIG_REGIONS, ConfigError, MetricDef, SysdigBackend, parse_config
from teflon.metrics.resources import RESOURCE_TYPES
from teflon.metrics.selectors import Selector
from teflon.metrics.telemetry import Telemetry

from .sysdig_standin import StandIn, sysdig_standin

SERVICES = RESOURCE_TYPES["services"]
NET_HTTP = MetricDef.model_validate(
    {
        "name": "net.http.request.count",
        "backend": "sysdig",
        "resources": ["services"],
        "query": NET_HTTP_REQUEST_COUNT_QUERY,
    }
)


@pytest.fixture
async def standin() -> AsyncIterator[StandIn]:
    async with sysdig_standin("monitor-token") as s:
        yield s


def config(standin: StandIn, token_file: Path, **kw: object) -> SysdigBackend:
    return SysdigBackend.model_validate({"url": standin.url, "tokenFile": str(token_file), **kw})


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("monitor-token\n")
    return path


async def test_service_http_request_rate_uses_the_documented_mapping(
    standin: StandIn, token_file: Path, telemetry: Telemetry
) -> None:
    standin.series = [
        {"metric": {"kube_service_name": "payments-api"}, "value": "250"},
        {"metric": {"kube_service_name": "other"}, "value": "1"},
    ]
    backend = sysdig_backend(config(standin, token_file), telemetry)
    try:
        values = await backend.fetch(NET_HTTP, Target(SERVICES, "shop", ("payments-api",)))
    finally:
        await backend.aclose()
    assert values == {"payments-api": 250.0}
    assert standin.queries == [
        'sum by (kube_service_name) (sysdig_container_net_http_request_count{kube_namespace_name="shop", '
        'kube_service_name=~"payments\\\\-api"})'
    ]
    assert standin.queries[0] == render_query(
        NET_HTTP_REQUEST_COUNT_QUERY,
        namespace="shop",
        names=("payments-api",),
        selector=Selector(),
        window_seconds=60,
    )
    assert standin.tokens_seen == ["Bearer monitor-token"]


async def test_a_wrong_token_is_an_error(standin: StandIn, tmp_path: Path, telemetry: Telemetry) -> None:
    bad = tmp_path / "bad"
    bad.write_text("expired")
    backend = sysdig_backend(config(standin, bad), telemetry)
    try:
        with pytest.raises(BackendError, match="HTTP 401: invalid API token"):
            await backend.fetch(NET_HTTP, Target(SERVICES, "shop", ("payments-api",)))
    finally:
        await backend.aclose()


async def test_throttling_is_retried_after_the_servers_delay(
    standin: StandIn, token_file: Path, telemetry: Telemetry
) -> None:
    standin.throttle = 2
    standin.series = [{"metric": {"kube_service_name": "payments-api"}, "value": "7.5"}]
    backend = sysdig_backend(config(standin, token_file, maxRetries=2), telemetry)
    try:
        values = await backend.fetch(NET_HTTP, Target(SERVICES, "shop", ("payments-api",)))
    finally:
        await backend.aclose()
    assert values == {"payments-api": 7.5}
    assert len(standin.tokens_seen) == 3
    assert (
        telemetry.registry.get_sample_value(
            "teflon_metrics_backend_errors_total", {"backend": "sysdig", "reason": "throttled"}
        )
        == 2
    )


async def test_throttling_beyond_the_retries_is_an_error(
    standin: StandIn, token_file: Path, telemetry: Telemetry
) -> None:
    standin.throttle = 5
    backend = sysdig_backend(config(standin, token_file, maxRetries=1), telemetry)
    try:
        with pytest.raises(BackendError, match="HTTP 429"):
            await backend.fetch(NET_HTTP, Target(SERVICES, "shop", ("payments-api",)))
    finally:
        await backend.aclose()
    assert len(standin.tokens_seen) == 2


async def test_a_retry_after_beyond_the_deadline_fails_at_once(
    standin: StandIn, token_file: Path, telemetry: Telemetry
) -> None:
    standin.throttle = 1
    standin.retry_after = "30"
    backend = sysdig_backend(config(standin, token_file, timeoutSeconds=1), telemetry)
    try:
        with pytest.raises(BackendError, match="exceed the query deadline"):
            await backend.fetch(NET_HTTP, Target(SERVICES, "shop", ("payments-api",)))
    finally:
        await backend.aclose()
    assert len(standin.tokens_seen) == 1


@pytest.mark.parametrize(("region", "url"), sorted(SYSDIG_REGIONS.items()))
def test_region_presets_resolve_to_the_monitor_api_host(region: str, url: str) -> None:
    cfg = parse_config(f"backends: {{sysdig: {{region: {region}, tokenFile: /t}}}}")
    assert cfg.backends.sysdig is not None
    assert cfg.backends.sysdig.base_url == url


def test_the_us1_region_is_sysdigs_original_saas_host() -> None:
    assert SYSDIG_REGIONS["us1"] == "https://app.sysdigcloud.com"
    assert SYSDIG_REGIONS["eu1"] == "https://eu1.app.sysdig.com"


def test_an_on_premises_url_is_used_instead_of_the_region_and_one_of_them_is_needed() -> None:
    cfg = parse_config("backends: {sysdig: {region: us1, url: 'https://sysdig.example.com/', tokenFile: /t}}")
    assert cfg.backends.sysdig is not None
    assert cfg.backends.sysdig.base_url == "https://sysdig.example.com"
    with pytest.raises(ConfigError, match="set region or url"):
        parse_config("backends: {sysdig: {tokenFile: /t}}")
    with pytest.raises(ConfigError, match="unknown region 'mars1'"):
        parse_config("backends: {sysdig: {region: mars1, tokenFile: /t}}")
