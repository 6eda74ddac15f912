"""Contract tests of every URL form, both versions, against the shapes the HPA's client decodes."""

from __future__ import annotations

from typing import Any

import pytest

from teflon.metrics.auth import Attributes
from teflon.metrics.backends import Series

from .conftest import Api

V = ("v1beta1", "v1beta2")
BASE = "/apis/custom.metrics.k8s.io"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


def item_v1beta1(  # noqa: PLR0917 - one positional per field keeps the tables readable
    kind: str, ns: str, name: str, api: str, metric: str, window: int, value: str, *, sel: Any = None
) -> dict[str, Any]:
    return {
        "describedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": api},
        "metricName": metric,
        "timestamp": "2026-05-01T12:00:00Z",
        "window": window,
        "value": value,
        "selector": sel,
    }


def item_v1beta2(  # noqa: PLR0917 - one positional per field keeps the tables readable
    kind: str, ns: str, name: str, api: str, metric: str, window: int, value: str, *, sel: Any = None
) -> dict[str, Any]:
    return {
        "describedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": api},
        "metric": {"name": metric, "selector": sel},
        "timestamp": "2026-05-01T12:00:00Z",
        "windowSeconds": window,
        "value": value,
    }


ITEM = {"v1beta1": item_v1beta1, "v1beta2": item_v1beta2}


def value_list(version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "MetricValueList",
        "apiVersion": f"custom.metrics.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }


@pytest.mark.parametrize("version", V)
async def test_discovery_lists_every_metric_for_every_resource(api: Api, version: str) -> None:
    resp = await api.client.get(f"{BASE}/{version}")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["kind"] == "APIResourceList"
    assert doc["apiVersion"] == "v1"
    assert doc["groupVersion"] == f"custom.metrics.k8s.io/{version}"
    by_name = {r["name"]: r for r in doc["resources"]}
    assert by_name["pods/falco_alerts_per_minute"] == {
        "name": "pods/falco_alerts_per_minute",
        "singularName": "",
        "namespaced": True,
        "kind": "MetricValueList",
        "verbs": ["get"],
    }
    assert by_name["namespaces/falco_alerts_per_minute"]["namespaced"] is False
    assert by_name["nodes/http_requests_per_second"]["namespaced"] is False
    assert by_name["deployments.apps/teflon_responses_per_minute"]["namespaced"] is True
    assert "statefulsets.apps/falco_alerts_per_minute_5m" in by_name
    assert len(by_name) == 3 * 5 + 4 + 1


async def test_apis_answers_an_api_group_list_preferring_v1beta2(api: Api) -> None:
    resp = await api.client.get("/apis")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in doc["groups"]}
    custom = groups["custom.metrics.k8s.io"]
    assert custom["preferredVersion"] == {
        "groupVersion": "custom.metrics.k8s.io/v1beta2",
        "version": "v1beta2",
    }
    assert [v["version"] for v in custom["versions"]] == ["v1beta2", "v1beta1"]
    assert "external.metrics.k8s.io" in groups


@pytest.mark.parametrize("version", V)
async def test_pods_star_returns_one_item_per_selected_pod_with_zero_for_quiet_pods(
    api: Api, version: str
) -> None:
    api.objects.add("pods", "shop", "web-1", app="web")
    api.objects.add("pods", "shop", "web-2", app="web")
    api.objects.add("pods", "shop", "db-0", app="db")
    api.teflon.values = {"web-2": 16.5, "db-0": 3}
    resp = await api.client.get(
        f"{BASE}/{version}/namespaces/shop/pods/*/falco_alerts_per_minute",
        params={"labelSelector": "app=web"},
    )
    assert resp.status_code == 200
    make = ITEM[version]
    assert resp.json() == value_list(
        version,
        [
            make("Pod", "shop", "web-1", "v1", "falco_alerts_per_minute", 60, "0"),
            make("Pod", "shop", "web-2", "v1", "falco_alerts_per_minute", 60, "16500m"),
        ],
    )
    assert api.objects.calls == [("pods", "shop", "app=web")]
    assert api.teflon.targets[0].names == ("web-1", "web-2")


@pytest.mark.parametrize("version", V)
async def test_a_named_pod_returns_exactly_one_item(api: Api, version: str) -> None:
    api.objects.add("pods", "shop", "web-1")
    api.teflon.values = {"web-1": 2}
    resp = await api.client.get(f"{BASE}/{version}/namespaces/shop/pods/web-1/falco_alerts_per_minute_5m")
    assert resp.status_code == 200
    assert resp.json() == value_list(
        version, [ITEM[version]("Pod", "shop", "web-1", "v1", "falco_alerts_per_minute_5m", 300, "2")]
    )


@pytest.mark.parametrize("version", V)
async def test_a_named_deployment_is_described_with_its_group_version(api: Api, version: str) -> None:
    api.objects.add("deployments.apps", "shop", "web")
    api.teflon.values = {"web": 0.25}
    resp = await api.client.get(
        f"{BASE}/{version}/namespaces/shop/deployments.apps/web/teflon_responses_per_minute"
    )
    assert resp.status_code == 200
    assert resp.json()["items"] == [
        ITEM[version]("Deployment", "shop", "web", "apps/v1", "teflon_responses_per_minute", 60, "250m")
    ]


@pytest.mark.parametrize("version", V)
async def test_the_namespace_metrics_form_describes_the_namespace(api: Api, version: str) -> None:
    api.objects.add("namespaces", "", "shop")
    api.teflon.values = {"shop": 7}
    resp = await api.client.get(f"{BASE}/{version}/namespaces/shop/metrics/falco_alerts_per_minute")
    assert resp.status_code == 200
    assert resp.json()["items"] == [
        ITEM[version]("Namespace", "", "shop", "v1", "falco_alerts_per_minute", 60, "7")
    ]
    target = api.teflon.targets[0]
    assert (target.rtype.resource, target.namespace, target.names) == ("namespaces", None, ("shop",))


@pytest.mark.parametrize("version", V)
async def test_root_scoped_objects_are_asked_without_a_namespace(api: Api, version: str) -> None:
    api.objects.add("namespaces", "", "shop")
    api.objects.add("namespaces", "", "blog")
    api.objects.add("nodes", "", "node-1")
    api.prometheus.values = {"node-1": 42}
    api.teflon.values = {"blog": 1}
    node = await api.client.get(f"{BASE}/{version}/nodes/node-1/http_requests_per_second")
    assert node.status_code == 200
    assert node.json()["items"] == [
        ITEM[version]("Node", "", "node-1", "v1", "http_requests_per_second", 120, "42")
    ]
    every = await api.client.get(f"{BASE}/{version}/namespaces/*/falco_alerts_per_minute")
    assert every.status_code == 200
    assert [(i["describedObject"]["name"], i["value"]) for i in every.json()["items"]] == [
        ("blog", "1"),
        ("shop", "0"),
    ]


@pytest.mark.parametrize("version", V)
async def test_metric_label_selector_reaches_the_backend_and_is_echoed(api: Api, version: str) -> None:
    api.objects.add("pods", "shop", "web-1")
    api.teflon.values = {"web-1": 1}
    resp = await api.client.get(
        f"{BASE}/{version}/namespaces/shop/pods/web-1/falco_alerts_per_minute",
        params={"metricLabelSelector": "minPriority=Critical"},
    )
    assert resp.status_code == 200
    item = resp.json()["items"][0]
    expected = {"matchLabels": {"minPriority": "Critical"}, "matchExpressions": None}
    assert (item["selector"] if version == "v1beta1" else item["metric"]["selector"]) == expected
    assert api.teflon.targets[0].metric_selector.text == "minPriority=Critical"


def assert_status(resp: Any, code: int, reason: str, message_part: str) -> dict[str, Any]:
    assert resp.status_code == code
    doc = resp.json()
    assert doc["kind"] == "Status"
    assert doc["apiVersion"] == "v1"
    assert doc["status"] == "Failure"
    assert doc["code"] == code
    assert doc["reason"] == reason
    assert message_part in doc["message"]
    return doc  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", V)
async def test_an_unknown_metric_is_a_not_found_status(api: Api, version: str) -> None:
    resp = await api.client.get(f"{BASE}/{version}/namespaces/shop/pods/*/nope")
    assert_status(resp, 404, "NotFound", "could not find the metric nope for pods")


async def test_a_metric_asked_for_a_resource_it_does_not_apply_to_is_not_found(api: Api) -> None:
    resp = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/services/web/falco_alerts_per_minute")
    assert_status(resp, 404, "NotFound", "for services web")


async def test_an_unknown_object_is_a_not_found_status(api: Api) -> None:
    resp = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/ghost/falco_alerts_per_minute")
    assert_status(resp, 404, "NotFound", 'pods "ghost" not found')
    assert api.teflon.targets == []


async def test_a_failing_backend_is_503_never_a_zero(api: Api) -> None:
    api.objects.add("pods", "shop", "web-1")
    api.teflon.fail = "webhook replica 10.0.0.1: connection refused"
    resp = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/*/falco_alerts_per_minute")
    assert_status(resp, 503, "ServiceUnavailable", "connection refused")


async def test_an_empty_promql_result_is_not_found_unless_configured_as_zero(api: Api) -> None:
    api.objects.add("pods", "shop", "web-1")
    named = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/web-1/http_requests_per_second")
    assert_status(named, 404, "NotFound", "http_requests_per_second for pods web-1")
    star = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/*/http_requests_per_second")
    assert_status(star, 404, "NotFound", "with selector")


async def test_pods_missing_from_a_promql_result_are_left_out(api: Api) -> None:
    api.objects.add("pods", "shop", "web-1")
    api.objects.add("pods", "shop", "web-2")
    api.prometheus.values = {"web-2": 3.5}
    resp = await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/*/http_requests_per_second")
    assert [i["describedObject"]["name"] for i in resp.json()["items"]] == ["web-2"]


@pytest.mark.parametrize(
    "query",
    [{"metricLabelSelector": "a in ()"}, {"labelSelector": "=web"}, {"labelSelector": "app in (web"}],
)
async def test_bad_selectors_are_bad_requests(api: Api, query: dict[str, str]) -> None:
    api.objects.add("pods", "shop", "web-1")
    resp = await api.client.get(
        f"{BASE}/v1beta2/namespaces/shop/pods/*/falco_alerts_per_minute", params=query
    )
    assert_status(resp, 400, "BadRequest", "Selector")
    assert api.teflon.targets == []


@pytest.mark.parametrize(
    "path",
    [
        "/namespaces/shop/pods/web-1",
        "/namespaces/shop/pods/web-1/m/extra",
        "/namespaces/Bad_Name/pods/web-1/falco_alerts_per_minute",
        "/namespaces/shop/pods/..%2F..%2Fsecrets/falco_alerts_per_minute",
    ],
)
async def test_paths_that_name_no_metric_are_not_found(api: Api, path: str) -> None:
    resp = await api.client.get(f"{BASE}/v1beta2{path}")
    assert_status(resp, 404, "NotFound", "")


async def test_an_unknown_version_and_openapi_are_not_found(api: Api) -> None:
    assert_status(await api.client.get(f"{BASE}/v2"), 404, "NotFound", "")
    assert_status(await api.client.get(f"{BASE}/v2/namespaces/a/pods/*/m"), 404, "NotFound", "")
    assert_status(await api.client.get("/openapi/v2"), 404, "NotFound", "")


async def test_anonymous_requests_are_refused_with_401(api: Api) -> None:
    resp = await api.client.get(f"{BASE}/v1beta2", headers={"Authorization": ""})
    assert_status(resp, 401, "Unauthorized", "Unauthorized")
    resp = await api.client.get(f"{BASE}/v1beta2", headers={"Authorization": "Bearer unknown"})
    assert_status(resp, 401, "Unauthorized", "Unauthorized")


async def test_identity_headers_without_a_front_proxy_certificate_are_ignored(api: Api) -> None:
    resp = await api.client.get(
        f"{BASE}/v1beta2",
        headers={"Authorization": "", "X-Remote-User": HPA, "X-Remote-Group": "system:masters"},
    )
    assert_status(resp, 401, "Unauthorized", "Unauthorized")


async def test_a_refused_user_gets_403_with_details(api: Api) -> None:
    resp = await api.client.get(
        f"{BASE}/v1beta2/namespaces/shop/pods/*/falco_alerts_per_minute",
        headers={"Authorization": "Bearer eve"},
    )
    doc = assert_status(
        resp, 403, "Forbidden", 'User "eve" cannot get resource "pods/falco_alerts_per_minute"'
    )
    assert doc["details"] == {"name": "*", "group": "custom.metrics.k8s.io", "kind": "pods"}


async def test_system_masters_pass_without_a_subject_access_review(api: Api) -> None:
    resp = await api.client.get(f"{BASE}/v1beta2", headers={"Authorization": "Bearer root"})
    assert resp.status_code == 200
    assert api.access.asked == []


@pytest.mark.parametrize(
    ("path", "attrs"),
    [
        (
            "/v1beta2/namespaces/shop/pods/*/falco_alerts_per_minute",
            Attributes(
                namespace="shop",
                group="custom.metrics.k8s.io",
                version="v1beta2",
                resource="pods",
                subresource="falco_alerts_per_minute",
                name="*",
            ),
        ),
        (
            "/v1beta1/namespaces/shop/deployments.apps/web/falco_alerts_per_minute",
            Attributes(
                namespace="shop",
                group="custom.metrics.k8s.io",
                version="v1beta1",
                resource="deployments.apps",
                subresource="falco_alerts_per_minute",
                name="web",
            ),
        ),
        (
            "/v1beta2/namespaces/shop/metrics/falco_alerts_per_minute",
            Attributes(
                namespace="shop",
                group="custom.metrics.k8s.io",
                version="v1beta2",
                resource="metrics",
                name="falco_alerts_per_minute",
            ),
        ),
        (
            "/v1beta2/nodes/node-1/http_requests_per_second",
            Attributes(
                group="custom.metrics.k8s.io",
                version="v1beta2",
                resource="nodes",
                subresource="http_requests_per_second",
                name="node-1",
            ),
        ),
        ("/v1beta2", Attributes(path="/apis/custom.metrics.k8s.io/v1beta2")),
    ],
)
async def test_requests_are_authorized_with_the_attributes_kubernetes_would_use(
    api: Api, path: str, attrs: Attributes
) -> None:
    await api.client.get(BASE + path)
    assert [a for _, a in api.access.asked] == [attrs]
    assert api.access.asked[0][0].name == HPA


async def test_health_paths_need_no_authentication(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        resp = await api.client.get(path, headers={"Authorization": ""})
        assert resp.status_code == 200
    assert api.access.asked == []


async def test_external_metrics_are_listed_and_answered(api: Api) -> None:
    disc = await api.client.get("/apis/external.metrics.k8s.io/v1beta1")
    assert disc.json() == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "external.metrics.k8s.io/v1beta1",
        "resources": [
            {
                "name": "queue_depth",
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
        ],
    }
    api.prometheus.external = [Series({"queue": "a"}, 3), Series({"queue": "b"}, 1.5)]
    resp = await api.client.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/Queue_Depth")
    assert resp.status_code == 200
    assert resp.json() == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {
                "metricName": "queue_depth",
                "metricLabels": {"queue": "a"},
                "timestamp": "2026-05-01T12:00:00Z",
                "window": 60,
                "value": "3",
            },
            {
                "metricName": "queue_depth",
                "metricLabels": {"queue": "b"},
                "timestamp": "2026-05-01T12:00:00Z",
                "window": 60,
                "value": "1500m",
            },
        ],
    }
    assert api.access.asked[-1][1] == Attributes(
        namespace="shop", group="external.metrics.k8s.io", version="v1beta1", resource="Queue_Depth"
    )


async def test_an_empty_external_metric_configured_as_zero_answers_zero(api: Api) -> None:
    resp = await api.client.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth")
    assert [i["value"] for i in resp.json()["items"]] == ["0"]


async def test_repeated_questions_are_answered_from_the_cache(api: Api) -> None:
    api.objects.add("pods", "shop", "web-1")
    url = f"{BASE}/v1beta2/namespaces/shop/pods/*/falco_alerts_per_minute"
    first = await api.client.get(url)
    second = await api.client.get(url)
    assert first.json() == second.json()
    assert len(api.teflon.targets) == 1
    cache = api.telemetry.registry
    assert cache.get_sample_value("teflon_metrics_cache_requests_total", {"result": "hit"}) == 1
    assert cache.get_sample_value("teflon_metrics_cache_requests_total", {"result": "miss"}) == 1
    assert cache.get_sample_value(
        "teflon_metrics_data_timestamp_seconds", {"metric": "falco_alerts_per_minute"}
    )


async def test_request_latency_is_recorded_by_path_kind(api: Api) -> None:
    await api.client.get(f"{BASE}/v1beta2")
    await api.client.get(f"{BASE}/v1beta2/namespaces/shop/pods/*/nope")
    reg = api.telemetry.registry
    assert (
        reg.get_sample_value(
            "teflon_metrics_request_duration_seconds_count", {"kind": "discovery", "code": "200"}
        )
        == 1
    )
    assert (
        reg.get_sample_value(
            "teflon_metrics_request_duration_seconds_count", {"kind": "selector", "code": "404"}
        )
        == 1
    )


async def test_a_cached_answer_is_rendered_once_and_served_identically(api: Api) -> None:
    for i in range(3):
        api.objects.add("pods", "shop", f"web-{i}")
    url = f"{BASE}/v1beta1/namespaces/shop/pods/*/falco_alerts_per_minute"
    first, second = await api.client.get(url), await api.client.get(url)
    other_version = await api.client.get(url.replace("v1beta1", "v1beta2"))
    assert first.content == second.content
    assert first.json()["apiVersion"] == "custom.metrics.k8s.io/v1beta1"
    assert other_version.json()["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert len(api.teflon.targets) == 1
