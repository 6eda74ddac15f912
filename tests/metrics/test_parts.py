"""The cache, settings, the authentication ConfigMap parser and the ops app."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import AuthConfig, Authenticator, Authorizer, StaticAuthConfig, parse_auth_config
from teflon.metrics.cache import QueryCache
from teflon.metrics.config import ConfigError, MetricsConfig, load_config, parse_config
from teflon.metrics.errors import Unavailable
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.selectors import Selector
from teflon.metrics.settings import Settings
from teflon.metrics.telemetry import Telemetry
from tests.harness.certs import CertificateAuthority

from .fakes import FakeAccess, FakeObjects, FakeTokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_misses_share_one_backend_query(telemetry: Telemetry) -> None:
    cache: QueryCache[int] = QueryCache(telemetry)
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    waiters = [asyncio.create_task(cache.get("k", 10, compute)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiters) == [42] * 5
    assert calls == 1
    reg = telemetry.registry
    assert reg.get_sample_value("teflon_metrics_cache_requests_total", {"result": "miss"}) == 1
    assert reg.get_sample_value("teflon_metrics_cache_requests_total", {"result": "shared"}) == 4


async def test_values_expire_after_their_ttl_and_failures_are_not_kept(telemetry: Telemetry) -> None:
    clock = Clock()
    cache: QueryCache[int] = QueryCache(telemetry, clock=clock)
    answers: Iterator[Exception | int] = iter([RuntimeError("backend down"), 1, 2])

    async def compute() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(RuntimeError, match="backend down"):
        await cache.get("k", 5, compute)
    assert await cache.get("k", 5, compute) == 1
    clock.now += 4.9
    assert await cache.get("k", 5, compute) == 1
    clock.now += 0.2
    assert await cache.get("k", 5, compute) == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_query(telemetry: Telemetry) -> None:
    cache: QueryCache[str] = QueryCache(telemetry)
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "value"

    first = asyncio.create_task(cache.get("k", 10, compute))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("k", 10, compute))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == "value"


TLS = {"tls_cert_file": "/tls/tls.crt", "tls_key_file": "/tls/tls.key"}


def test_settings_default_to_the_design_ports() -> None:
    s = Settings(**TLS)  # type: ignore[arg-type]
    assert (s.port, s.ops_port) == (6443, 8080)


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({**TLS, "port": 8080}, "must differ"),
        ({"tls_cert_file": "/c"}, "together"),
        ({}, "TEFLON_METRICS_TLS_CERT_FILE and TEFLON_METRICS_TLS_KEY_FILE are required"),
        ({**TLS, "authz_cache_seconds": -1}, "greater than or equal"),
    ],
)
def test_contradictory_settings_are_refused(kwargs: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        Settings(**kwargs)  # type: ignore[arg-type]


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read metrics config"):
        load_config(str(tmp_path / "absent.yaml"))
    assert load_config("") == MetricsConfig()


def test_the_authentication_configmap_is_parsed_as_kube_apiserver_publishes_it() -> None:
    front, client = CertificateAuthority.create("front-proxy-ca"), CertificateAuthority.create("client-ca")
    cfg = parse_auth_config(
        {
            "client-ca-file": client.cert_pem.decode(),
            "requestheader-client-ca-file": front.cert_pem.decode(),
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }
    )
    assert cfg.requestheader_cas == (front.cert,)
    assert cfg.client_cas == (client.cert,)
    assert cfg.allowed_names == ("front-proxy-client",)
    assert cfg.username_headers == ("x-remote-user",)
    assert cfg.extra_prefixes == ("x-remote-extra-",)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (
            {"requestheader-allowed-names": "front-proxy-client"},
            "requestheader-allowed-names: not a JSON list",
        ),
        ({"requestheader-group-headers": '{"a": 1}'}, "list of strings"),
        (
            {"client-ca-file": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"},
            "client-ca-file",
        ),
    ],
)
def test_a_malformed_authentication_configmap_names_the_bad_key(data: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_auth_config(data)


async def test_the_ops_app_serves_probes_and_metrics_without_authentication(telemetry: Telemetry) -> None:
    ready = False
    components = Components(
        provider=ConfiguredProvider(MetricsConfig(), {}, FakeObjects(), telemetry),
        authenticator=Authenticator(StaticAuthConfig(AuthConfig()), FakeTokens(), telemetry),
        authorizer=Authorizer(FakeAccess()),
        telemetry=telemetry,
        registry=telemetry.registry,
        ready=lambda: ready,
    )
    telemetry.fresh("falco_alerts_per_minute")
    app = create_app(components).ops
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops") as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 503
        ready = True
        assert (await c.get("/readyz")).status_code == 200
        scrape = (await c.get("/metrics")).text
    assert 'teflon_metrics_data_timestamp_seconds{metric="falco_alerts_per_minute"}' in scrape


class SlowObjects(FakeObjects):
    async def list_names(self, rtype: object, namespace: str | None, label_selector: str) -> list[str]:
        await asyncio.sleep(5)
        return []


async def test_a_request_that_outlives_its_deadline_is_unavailable_not_late(telemetry: Telemetry) -> None:
    config = parse_config("backends: {teflon: {service: wh, namespace: teflon}}")
    provider = ConfiguredProvider(config, {}, SlowObjects(), telemetry, deadline=0.2)
    with pytest.raises(Unavailable, match=r"no answer within 0\.2s"):
        await provider.get_metric_by_selector("pods", "shop", "", "falco_alerts_per_minute", Selector())
