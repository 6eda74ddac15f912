"""The teflon backend against real webhook processes: counts from every replica, summed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from teflon.common import kube
from teflon.common.wire import RateEntry, RateScope, RateSnapshot, Signal
from teflon.metrics.backends import BackendError, InvalidMetricSelector, Target
from teflon.metrics.backends.teflon import EndpointSliceReplicas, StaticReplicas, TeflonRates
from teflon.metrics.config import BUILTIN_METRICS, TeflonBackend, parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.resources import RESOURCE_TYPES
from teflon.metrics.selectors import parse_selector
from teflon.metrics.telemetry import Telemetry
from tests.harness.ports import free_port

from .fakes import FakeObjects
from .webhooks import Replica, alert, webhook_replicas

PER_MINUTE, PER_MINUTE_5M, RESPONSES = BUILTIN_METRICS
PODS, NAMESPACES = RESOURCE_TYPES["pods"], RESOURCE_TYPES["namespaces"]
CFG = TeflonBackend(service="teflon-webhook", namespace="teflon")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Replica]]:
    with webhook_replicas(2, tmp_path_factory.mktemp("webhooks")) as reps:
        a, b = reps
        a.send(*[alert("shop", "web-1")] * 3, alert("shop", "web-2", priority="Notice"))
        b.send(*[alert("shop", "web-1", priority="Warning", rule="Read sensitive file untrusted")] * 2)
        b.send(alert("blog", "cms-0"))
        a.wait_count("shop", 4)
        b.wait_count("shop", 2)
        b.wait_count("blog", 1)
        yield reps


def backend(replicas: list[Replica], telemetry: Telemetry) -> TeflonRates:
    return TeflonRates(CFG, StaticReplicas([r.ops for r in replicas]), telemetry)


async def test_counts_from_every_replica_are_summed_into_per_minute_rates(
    replicas: list[Replica], telemetry: Telemetry
) -> None:
    b = backend(replicas, telemetry)
    try:
        one_minute = await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1", "web-2", "web-3")))
        five_minutes = await b.fetch(PER_MINUTE_5M, Target(PODS, "shop", ("web-1", "web-2")))
        named = await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",)))
    finally:
        await b.aclose()
    assert one_minute == {"web-1": 5.0, "web-2": 1.0}
    assert five_minutes == {"web-1": 1.0, "web-2": 0.2}
    assert named == {"web-1": 5.0}


async def test_priority_and_rule_filters_come_from_the_metric_label_selector(
    replicas: list[Replica], telemetry: Telemetry
) -> None:
    b = backend(replicas, telemetry)
    try:
        critical = await b.fetch(
            PER_MINUTE, Target(PODS, "shop", ("web-1", "web-2"), parse_selector("minPriority=critical"))
        )
        warning = await b.fetch(
            PER_MINUTE, Target(PODS, "shop", ("web-1", "web-2"), parse_selector("minPriority=Warning"))
        )
        with pytest.raises(InvalidMetricSelector, match="minPriority=<value> and rule=<value>"):
            await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",), parse_selector("severity=high")))
        with pytest.raises(InvalidMetricSelector, match="unknown Falco priority"):
            await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",), parse_selector("minPriority=loud")))
    finally:
        await b.aclose()
    assert critical == {"web-1": 3.0}
    assert warning == {"web-1": 5.0}


async def test_namespaces_are_counted_across_replicas(replicas: list[Replica], telemetry: Telemetry) -> None:
    b = backend(replicas, telemetry)
    try:
        values = await b.fetch(PER_MINUTE, Target(NAMESPACES, None, ("blog", "shop", "quiet")))
        one = await b.fetch(PER_MINUTE, Target(NAMESPACES, None, ("shop",)))
    finally:
        await b.aclose()
    assert values == {"shop": 6.0, "blog": 1.0}
    assert one == {"shop": 6.0}


async def test_quiet_pods_are_a_true_zero_through_the_provider(
    replicas: list[Replica], telemetry: Telemetry
) -> None:
    objects = FakeObjects()
    for pod in ("web-1", "web-2", "web-3"):
        objects.add("pods", "shop", pod)
    config = parse_config("backends: {teflon: {service: teflon-webhook, namespace: teflon}}")
    b = backend(replicas, telemetry)
    provider = ConfiguredProvider(config, {"teflon": b}, objects, telemetry)
    try:
        values = await provider.get_metric_by_selector(
            "pods", "shop", "", "falco_alerts_per_minute", parse_selector("")
        )
        responses = await provider.get_metric_by_selector(
            "pods", "shop", "", "teflon_responses_per_minute", parse_selector("")
        )
    finally:
        await b.aclose()
    assert [(v.described.name, v.value) for v in values] == [("web-1", 5.0), ("web-2", 1.0), ("web-3", 0.0)]
    assert [v.value for v in responses] == [0.0, 0.0, 0.0]


async def test_one_failing_replica_fails_the_answer_instead_of_a_partial_sum(
    replicas: list[Replica], telemetry: Telemetry, tmp_path: Path
) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    b = TeflonRates(CFG, StaticReplicas([replicas[0].ops, gone]), telemetry)
    try:
        with pytest.raises(BackendError, match=gone):
            await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",)))
    finally:
        await b.aclose()
    assert (
        telemetry.registry.get_sample_value(
            "teflon_metrics_backend_errors_total", {"backend": "teflon", "reason": "error"}
        )
        == 1
    )


async def test_no_ready_replica_is_an_error(telemetry: Telemetry) -> None:
    b = TeflonRates(CFG, StaticReplicas([]), telemetry)
    try:
        with pytest.raises(BackendError, match="no ready webhook replica"):
            await b.fetch(RESPONSES, Target(PODS, "shop", ("web-1",)))
    finally:
        await b.aclose()


class SliceClient:
    def __init__(self, doc: dict[str, Any] | None = None, error: kube.KubeError | None = None) -> None:
        self.doc, self.error = doc or {}, error
        self.calls: list[tuple[str, Any]] = []

    async def get(self, path: str, *, params: Any = None) -> dict[str, Any]:
        self.calls.append((path, params))
        if self.error:
            raise self.error
        return self.doc


async def test_replicas_are_the_ready_endpoints_of_the_named_port() -> None:
    client = SliceClient(
        {
            "items": [
                {
                    "ports": [{"name": "ingest", "port": 2801}, {"name": "ops", "port": 8081}],
                    "endpoints": [
                        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                        {"addresses": ["10.0.0.3"]},
                    ],
                },
                {"ports": [{"name": "ops", "port": 8081}], "endpoints": [{"addresses": ["fd00::7"]}]},
                {"ports": [{"name": "metrics", "port": 9000}], "endpoints": [{"addresses": ["10.0.0.9"]}]},
            ]
        }
    )
    finder = EndpointSliceReplicas(client, "teflon", "teflon-webhook", "ops")  # type: ignore[arg-type]
    assert await finder.replicas() == [
        "http://10.0.0.1:8081",
        "http://10.0.0.3:8081",
        "http://[fd00::7]:8081",
    ]
    assert client.calls == [
        (
            "/apis/discovery.k8s.io/v1/namespaces/teflon/endpointslices",
            {"labelSelector": "kubernetes.io/service-name=teflon-webhook"},
        )
    ]


async def test_an_endpoint_lookup_failure_is_a_backend_error() -> None:
    finder = EndpointSliceReplicas(SliceClient(error=kube.Forbidden("no", status=403)), "teflon", "wh", "ops")  # type: ignore[arg-type]
    with pytest.raises(BackendError, match="cannot list endpoints"):
        await finder.replicas()


def snapshot_server(
    answers: dict[str, list[dict[str, Any]]], *, window: int | None = None
) -> httpx.AsyncClient:
    """Replicas that speak ``teflon.common.wire.RateSnapshot``; records the queries they get."""

    def answer(request: httpx.Request) -> httpx.Response:
        q = dict(request.url.params)
        answer.queries.append((request.url.host, q))  # type: ignore[attr-defined]
        snap = RateSnapshot(
            scope=RateScope(q["scope"]),
            signal=Signal(q["signal"]),
            window_seconds=window or int(q["window"]),
            generated_at=datetime.now(UTC),
            replica=request.url.host,
            entries=[RateEntry.model_validate(e) for e in answers[request.url.host]],
        )
        return httpx.Response(200, content=snap.model_dump_json())

    answer.queries = []  # type: ignore[attr-defined]
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    client.queries = answer.queries  # type: ignore[attr-defined]
    return client


async def test_the_rate_query_follows_the_design_contract(telemetry: Telemetry) -> None:
    entries = {
        "r1": [{"namespace": "shop", "kind": "Deployment", "name": "web", "count": 4}],
        "r2": [
            {"namespace": "shop", "kind": "Deployment", "name": "web", "count": 2},
            {"namespace": "shop", "kind": "StatefulSet", "name": "web", "count": 9},
        ],
    }
    http = snapshot_server(entries)
    b = TeflonRates(CFG, StaticReplicas(["http://r1", "http://r2"]), telemetry, http=http)
    try:
        values = await b.fetch(
            PER_MINUTE_5M,
            Target(
                RESOURCE_TYPES["deployments.apps"],
                "shop",
                ("web",),
                parse_selector("minPriority=warning,rule=x"),
            ),
        )
    finally:
        await b.aclose()
    assert values == {"web": 1.2}
    assert http.queries == [  # type: ignore[attr-defined]
        (
            host,
            {
                "scope": "workload",
                "signal": "alerts",
                "window": "300",
                "namespace": "shop",
                "kind": "Deployment",
                "name": "web",
                "minPriority": "Warning",
                "rule": "x",
            },
        )
        for host in ("r1", "r2")
    ]


async def test_a_snapshot_for_another_window_is_refused(telemetry: Telemetry) -> None:
    http = snapshot_server({"r1": []}, window=300)
    b = TeflonRates(CFG, StaticReplicas(["http://r1"]), telemetry, http=http)
    try:
        with pytest.raises(BackendError, match="window=300"):
            await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",)))
    finally:
        await b.aclose()


async def test_a_malformed_snapshot_is_an_error(telemetry: Telemetry) -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"entries": "x"}))
    )
    b = TeflonRates(CFG, StaticReplicas(["http://r1"]), telemetry, http=http)
    try:
        with pytest.raises(BackendError, match="malformed rate snapshot"):
            await b.fetch(PER_MINUTE, Target(PODS, "shop", ("web-1",)))
    finally:
        await b.aclose()


async def test_a_metric_can_fix_its_own_priority_and_rule_filters(telemetry: Telemetry) -> None:
    config = parse_config(
        "backends: {teflon: {service: wh, namespace: teflon}}\n"
        "metrics: [{name: shell_alerts_per_minute, backend: teflon, resources: [pods],"
        " minPriority: notice, rule: Terminal shell in container}]"
    )
    shell = next(m for m in config.all_metrics() if m.name == "shell_alerts_per_minute")
    http = snapshot_server({"r1": [{"namespace": "shop", "kind": "Pod", "name": "web-1", "count": 2}]})
    b = TeflonRates(CFG, StaticReplicas(["http://r1"]), telemetry, http=http)
    try:
        values = await b.fetch(shell, Target(PODS, "shop", ("web-1",), parse_selector("minPriority=Notice")))
        with pytest.raises(InvalidMetricSelector, match="defined with minPriority=Notice"):
            await b.fetch(shell, Target(PODS, "shop", ("web-1",), parse_selector("minPriority=Critical")))
    finally:
        await b.aclose()
    assert values == {"web-1": 2.0}
    _, query = http.queries[0]  # type: ignore[attr-defined]
    assert (query["minPriority"], query["rule"]) == ("Notice", "Terminal shell in container")


async def test_an_external_metric_is_the_namespace_count_summed_over_replicas(telemetry: Telemetry) -> None:
    ns_entry = {"namespace": "shop", "kind": "Namespace", "name": "shop", "count": 3}
    http = snapshot_server({"r1": [ns_entry], "r2": [{**ns_entry, "count": 1}]})
    b = TeflonRates(CFG, StaticReplicas(["http://r1", "http://r2"]), telemetry, http=http)
    try:
        series = await b.fetch_external(PER_MINUTE_5M, "shop", parse_selector("rule=shell"))
    finally:
        await b.aclose()
    assert [(s.labels, s.value) for s in series] == [({"namespace": "shop"}, 0.8)]
    _, query = http.queries[0]  # type: ignore[attr-defined]
    assert query == {
        "scope": "namespace",
        "signal": "alerts",
        "window": "300",
        "namespace": "shop",
        "rule": "shell",
    }
