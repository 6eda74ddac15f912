"""The whole loop on the real control plane: Falco alerts in, responses and custom metrics out.

The chart is installed once (``stack``); its webhook and metrics server run as real processes behind
the chart's own Services, so the kube-aggregator, the HPA controller and the garbage collector are the
real ones. Alerts are what Falco's ``http_output`` would post from the node running the pod.
"""

from __future__ import annotations

import base64
import functools
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import SHOP
from tests.harness import falco
from tests.harness.cluster import ApiError, Cluster
from tests.harness.stack import ChartStack
from tests.harness.workloads import (
    custom_metric,
    deployment,
    events,
    ingest_url,
    pod_uid,
    quantity,
    ready_pods,
    replicas,
    samples,
    wait_ready_pods,
)

pytestmark = pytest.mark.e2e

GROUP = "custom.metrics.k8s.io"


def _available(cluster: Cluster, version: str) -> dict[str, Any] | None:
    obj = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.{GROUP}")
    cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Available"), None)
    return cond if cond and cond["status"] == "True" else None


def _wait_available(cluster: Cluster) -> None:
    for version in ("v1beta1", "v1beta2"):
        cluster.wait_until(
            functools.partial(_available, cluster, version), 90, f"APIService {version}.{GROUP} Available"
        )


def _wait_value(
    cluster: Cluster, probe: Callable[[], float], want: float, what: str, timeout: float = 30
) -> None:
    """Poll ``probe`` until it returns ``want``; the failure names the last value seen."""
    seen: list[float] = []

    def done() -> bool:
        seen.append(probe())
        return seen[-1] == want

    try:
        cluster.wait_until(done, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(f"{what}: wanted {want}, last saw {seen[-1] if seen else None}") from exc


def _token(cluster: Cluster, namespace: str, sa: str) -> str:
    cluster.apply(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace}}
    )
    answer = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )
    return str(answer["status"]["token"])


# -- the API surface --------------------------------------------------------------------------------


def test_the_apiservices_become_available_and_both_versions_serve_discovery(
    cluster: Cluster, stack: ChartStack
) -> None:
    _wait_available(cluster)
    for version in ("v1beta1", "v1beta2"):
        doc = custom_metric(cluster, f"/{version}")
        assert doc["kind"] == "APIResourceList"
        assert doc["groupVersion"] == f"{GROUP}/{version}"
        names = {r["name"] for r in doc["resources"]}
        for resource in ("pods", "deployments.apps", "statefulsets.apps", "namespaces"):
            assert f"{resource}/falco_alerts_per_minute" in names, (version, sorted(names))
        assert "deployments.apps/teflon_responses_per_minute" in names
    group = cluster.request("GET", f"/apis/{GROUP}")
    assert group["preferredVersion"]["version"] == "v1beta2"


def test_a_user_without_rbac_on_custom_metrics_gets_403_through_the_aggregator(
    cluster: Cluster, stack: ChartStack, namespace: str
) -> None:
    _wait_available(cluster)
    cluster.apply(deployment("web", namespace, 1))
    path = f"/apis/{GROUP}/v1beta2/namespaces/{namespace}/deployments.apps/web/falco_alerts_per_minute"
    tls = ssl.create_default_context(cafile=str(cluster.ca_file))

    def get(token: str) -> httpx.Response:
        return httpx.get(f"{cluster.server}{path}", headers={"Authorization": f"Bearer {token}"}, verify=tls)

    nobody = get(_token(cluster, namespace, "nobody"))
    assert nobody.status_code == 403, nobody.text
    assert nobody.json()["reason"] == "Forbidden"

    # The same call with a grant on custom.metrics.k8s.io succeeds: the 403 was RBAC, nothing else.
    reader = _token(cluster, namespace, "reader")
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-reader", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{stack.release}-metrics:metrics-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        }
    )
    seen: list[httpx.Response] = []

    def allowed() -> bool:
        seen.append(get(reader))
        return seen[-1].status_code == 200

    try:
        cluster.wait_until(allowed, 30, "the reader to be allowed")
    except TimeoutError as exc:
        raise AssertionError(f"with RBAC: HTTP {seen[-1].status_code}: {seen[-1].text}") from exc
    ok = seen[-1]
    assert ok.json()["kind"] == "MetricValueList"


def test_the_metrics_server_refuses_a_direct_call_without_a_front_proxy_certificate(
    cluster: Cluster, stack: ChartStack, tmp_path: Path
) -> None:
    secret = cluster.request(
        "GET", f"/api/v1/namespaces/{stack.namespace}/secrets/{stack.release}-metrics-tls"
    )
    ca = tmp_path / "chart-ca.crt"
    ca.write_bytes(base64.b64decode(secret["data"]["ca.crt"]))
    metrics = stack.pods["metrics"][0]
    url = f"https://{metrics.ip}:6443/apis/{GROUP}/v1beta2/namespaces/{stack.namespace}/metrics/falco_alerts_per_minute"
    spoofed = {"X-Remote-User": "kubernetes-admin", "X-Remote-Group": "system:masters"}
    service_name = f"{stack.release}-metrics.{stack.namespace}.svc"

    def client(cert: tuple[str, str] | None) -> httpx.Client:
        tls = ssl.create_default_context(cafile=str(ca))
        if cert is not None:
            tls.load_cert_chain(*cert)
        # The serving certificate names the Service, as the aggregator dials it.
        return httpx.Client(verify=tls, timeout=10)

    with client(None) as anonymous:
        refused = anonymous.get(url, headers=spoofed, extensions={"sni_hostname": service_name})
    assert refused.status_code in (401, 403), refused.text

    front_proxy = (str(cluster.front_proxy_client_cert_file), str(cluster.front_proxy_client_key_file))
    with client(front_proxy) as proxy:
        allowed = proxy.get(url, headers=spoofed, extensions={"sni_hostname": service_name})
        denied = proxy.get(
            url,
            headers={"X-Remote-User": "mallory", "X-Remote-Group": "system:authenticated"},
            extensions={"sni_hostname": service_name},
        )
    # With the aggregator's certificate the identity is trusted and authorized by SubjectAccessReview.
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["items"][0]["describedObject"]["name"] == stack.namespace
    assert denied.status_code == 403, denied.text


# -- alerts in dry run: counted, decided, recorded, nothing changed --------------------------------


def test_in_dry_run_nothing_changes_and_an_event_says_what_would_have_happened(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("dryRun")
    cluster.apply(deployment("web", namespace, 2))
    pod = wait_ready_pods(cluster, namespace, "web", 2)[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.terminal_shell(pod)])

    def dry_run_event() -> dict[str, Any] | None:
        return next((e for e in events(cluster, namespace, name) if e["reason"] == "TeflonDryRun"), None)

    event = cluster.wait_until(dry_run_event, 30, f"a TeflonDryRun Event on {namespace}/{name}")
    assert event["reportingController"] == "teflon.io/webhook"
    assert event["regarding"]["uid"] == uid
    assert event["type"] == "Warning"
    assert "would delete (dry run)" in event["note"]
    assert "Terminal shell in container" in event["note"]
    assert (
        samples(stack, "teflon_webhook_actions_total", action="delete", result="dry_run", namespace=namespace)
        == 1
    )
    # Still the same pod, untouched, and no replacement was made.
    assert pod_uid(cluster, namespace, name) == uid
    assert {p["metadata"]["uid"] for p in ready_pods(cluster, namespace, "web")} >= {uid}
    assert len(ready_pods(cluster, namespace, "web")) == 2


def test_the_custom_metric_of_a_deployment_read_through_the_aggregator_matches_the_alerts_posted(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("dryRun")
    _wait_available(cluster)
    cluster.apply(deployment("api", namespace, 3))
    pods = wait_ready_pods(cluster, namespace, "api", 3)
    # Seven alerts over three pods, spread over both webhook replicas: the metric is their sum.
    alerts = [falco.contact_api_server(pods[i % 3]) for i in range(7)]
    with httpx.Client(timeout=5) as client:
        for i, alert in enumerate(alerts):
            falco.post(client, ingest_url(stack, i % 2), [alert])
    assert len(stack.pods["webhook"]) == 2

    path = f"/v1beta2/namespaces/{namespace}/deployments.apps/api/falco_alerts_per_minute"
    _wait_value(
        cluster,
        lambda: quantity(custom_metric(cluster, path)["items"][0]["value"]),
        7.0,
        f"{path} through the aggregator",
    )
    doc = custom_metric(cluster, path)
    (item,) = doc["items"]
    assert doc["kind"] == "MetricValueList"
    assert item["describedObject"] == {
        "kind": "Deployment",
        "namespace": namespace,
        "name": "api",
        "apiVersion": "apps/v1",
    }
    assert item["metric"]["name"] == "falco_alerts_per_minute"
    # v1beta1 serves the same number in its own shape.
    old = custom_metric(cluster, path.replace("v1beta2", "v1beta1"))
    assert quantity(old["items"][0]["value"]) == 7.0
    assert old["items"][0]["metricName"] == "falco_alerts_per_minute"
    # Per pod: the counts of the pods add up to the Deployment's.
    per_pod = custom_metric(cluster, f"/v1beta2/namespaces/{namespace}/pods/*/falco_alerts_per_minute")
    by_pod = {i["describedObject"]["name"]: quantity(i["value"]) for i in per_pod["items"]}
    assert by_pod == {
        pods[0]["metadata"]["name"]: 3.0,
        pods[1]["metadata"]["name"]: 2.0,
        pods[2]["metadata"]["name"]: 2.0,
    }


def _hpa(cluster: Cluster) -> dict[str, Any]:
    return dict(
        cluster.request("GET", f"/apis/autoscaling/v2/namespaces/{SHOP}/horizontalpodautoscalers/web")
    )


def _wait_web_replicas(cluster: Cluster, want: int, what: str, timeout: float = 60) -> None:
    try:
        cluster.wait_until(lambda: replicas(cluster, SHOP, "web") == want, timeout, what)
    except TimeoutError as exc:
        status = _hpa(cluster).get("status", {})
        raise AssertionError(
            f"{what}: web has {replicas(cluster, SHOP, 'web')} replicas; HPA status: {status}"
        ) from exc


def _condition(hpa: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in hpa.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_the_charts_hpa_scales_out_during_a_flood_holds_while_the_backend_fails_and_scales_in_after(
    cluster: Cluster, stack: ChartStack, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("dryRun")
    _wait_available(cluster)
    try:
        cluster.request("DELETE", f"/apis/apps/v1/namespaces/{SHOP}/deployments/web")
    except ApiError as exc:
        if exc.status != 404:
            raise
    cluster.wait_until(lambda: not ready_pods(cluster, SHOP, "web") or None, 60, "the old web pods to go")
    cluster.apply(deployment("web", SHOP, 2))
    pods = wait_ready_pods(cluster, SHOP, "web", 2)
    hpa = _hpa(cluster)
    assert hpa["spec"]["minReplicas"] == 2
    assert hpa["spec"]["maxReplicas"] == 6
    target = float(quantity(hpa["spec"]["metrics"][0]["object"]["target"]["averageValue"]))

    # A flood: 50 alerts within the one-minute window, target 10 per replica -> 5 replicas.
    with httpx.Client(timeout=5) as client:
        for i in range(50):
            falco.post(client, ingest_url(stack, i % 2), [falco.contact_api_server(pods[i % 2])])
    want = 5
    assert want == int(50 // target)
    _wait_web_replicas(cluster, want, f"the HPA to scale web out to {want}")

    def hpa_sees() -> float:
        # An AverageValue target reports the metric divided by the replicas the HPA counted.
        status = _hpa(cluster)["status"]
        current = (status.get("currentMetrics") or [{}])[0].get("object", {}).get("current", {})
        return round(quantity(current.get("averageValue", "0")) * int(status["currentReplicas"]), 2)

    _wait_value(cluster, hpa_sees, 50.0, "the HPA's view of falco_alerts_per_minute")

    # The backend fails (every webhook replica hangs): the metric is an error, and the HPA holds.
    stack.pause("webhook")
    try:
        path = f"/apis/{GROUP}/v1beta2/namespaces/{SHOP}/deployments.apps/web/falco_alerts_per_minute"

        def metric_fails() -> bool:
            proc = cluster.kubectl("get", "--raw", path, check=False)
            return proc.returncode != 0 and ("ServiceUnavailable" in proc.stderr or "503" in proc.stderr)

        cluster.wait_until(metric_fails, 30, "the custom metric to fail while the webhook hangs")
        cluster.wait_until(
            lambda: _condition(_hpa(cluster), "ScalingActive").get("status") == "False",
            30,
            "the HPA to report that it cannot get its metric",
        )
        assert _condition(_hpa(cluster), "ScalingActive")["reason"] == "FailedGetObjectMetric"
        # Hold past the alert window: without the failure the metric would now be 0 and web would shrink.
        held = []
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            held.append(replicas(cluster, SHOP, "web"))
            time.sleep(5)
        assert set(held) == {want}, held
    finally:
        stack.resume("webhook")

    # Data again, and the flood is over: the window is empty, so web scales back in to minReplicas.
    cluster.wait_until(lambda: replicas(cluster, SHOP, "web") == 2, 60, "the HPA to scale web back in to 2")
    assert _condition(_hpa(cluster), "ScalingActive")["status"] == "True"
    metric = custom_metric(
        cluster, f"/v1beta2/namespaces/{SHOP}/deployments.apps/web/falco_alerts_per_minute"
    )
    assert quantity(metric["items"][0]["value"]) == 0.0


# -- alerts enforced ------------------------------------------------------------------------------


def test_in_enforce_mode_the_pod_is_deleted_replaced_and_the_response_recorded(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("enforce")
    cluster.apply(deployment("web", namespace, 3))
    pods = wait_ready_pods(cluster, namespace, "web", 3)
    victim = pods[0]
    name, uid = victim["metadata"]["name"], victim["metadata"]["uid"]
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.terminal_shell(victim)])

    cluster.wait_until(lambda: pod_uid(cluster, namespace, name) is None or None, 30, f"{name} to be deleted")

    def replaced() -> list[dict[str, Any]] | None:
        now = ready_pods(cluster, namespace, "web")
        return now if len(now) == 3 and uid not in {p["metadata"]["uid"] for p in now} else None

    cluster.wait_until(replaced, 60, "the ReplicaSet to replace the deleted pod")
    applied = cluster.wait_until(
        lambda: next((e for e in events(cluster, namespace, name) if e["reason"] == "TeflonApplied"), None),
        30,
        f"a TeflonApplied Event on {name}",
    )
    assert applied["action"] == "Delete"
    assert applied["regarding"]["uid"] == uid
    assert applied["reportingController"] == "teflon.io/webhook"
    assert (
        samples(
            stack,
            "teflon_webhook_actions_total",
            action="delete",
            result="applied",
            mode="enforce",
            namespace=namespace,
        )
        == 1
    )
    # The responses are a metric too, for the namespace. The Deployment whose pod was replaced is held
    # by the scaling guardrail: its metrics answer an error naming the hold, so no HPA scales on them.
    path = f"/v1beta2/namespaces/{namespace}/metrics/teflon_responses_per_minute"
    _wait_value(cluster, lambda: quantity(custom_metric(cluster, path)["items"][0]["value"]), 1.0, path)
    held = f"/v1beta2/namespaces/{namespace}/deployments.apps/web/teflon_responses_per_minute"
    proc = cluster.kubectl("get", "--raw", f"/apis/{GROUP}{held}", check=False)
    assert proc.returncode != 0
    assert f"Deployment {namespace}/web is held until" in proc.stderr


def _hpa_on(name: str, namespace: str, described: dict[str, str], lo: int, hi: int) -> dict[str, Any]:
    """An HPA scaling Deployment ``name`` on the alert rate of ``described`` (10 per replica)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": lo,
            "maxReplicas": hi,
            "metrics": [
                {
                    "type": "Object",
                    "object": {
                        "describedObject": described,
                        "metric": {"name": "falco_alerts_per_minute"},
                        "target": {"type": "AverageValue", "averageValue": "10"},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Percent", "value": 200, "periodSeconds": 5}],
                }
            },
        },
    }


def test_the_guardrail_holds_the_attacked_workloads_replicas_while_an_alert_handler_scales_out(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    """web scales on its own alert rate, analyzer on its namespace's; an attack on web is enforced."""
    policy_mode("enforce")
    stack.restart("webhook")  # fresh budgets and breaker, whatever earlier tests spent
    cluster.apply(deployment("web", namespace, 2))
    cluster.apply(deployment("analyzer", namespace, 1))
    pods = wait_ready_pods(cluster, namespace, "web", 2)
    wait_ready_pods(cluster, namespace, "analyzer", 1)
    web_ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    cluster.apply(_hpa_on("web", namespace, web_ref, 2, 6))
    cluster.apply(
        _hpa_on("analyzer", namespace, {"apiVersion": "v1", "kind": "Namespace", "name": namespace}, 1, 4)
    )
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.terminal_shell(pods[0])])  # enforced: deleted
        cluster.wait_until(
            lambda: (
                samples(stack, "teflon_webhook_actions_total", result="applied", namespace=namespace) or None
            ),
            30,
            "the enforced response",
        )
        # The attack goes on: 50 alerts about web's other pod within the one-minute window.
        for i in range(50):
            falco.post(client, ingest_url(stack, i % 2), [falco.contact_api_server(pods[1])])

    def hpa(name: str) -> dict[str, Any]:
        return dict(
            cluster.request(
                "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
            )
        )

    # The handler scales with the alert rate (51 per minute, 10 per replica: capped at 4).
    cluster.wait_until(
        lambda: replicas(cluster, namespace, "analyzer") == 4, 90, "analyzer to scale out to 4"
    )
    # web holds: its metric is an error while it is held, so its HPA keeps 2 replicas.
    cluster.wait_until(
        lambda: _condition(hpa("web"), "ScalingActive").get("status") == "False", 30, "web's HPA to hold"
    )
    assert _condition(hpa("web"), "ScalingActive")["reason"] == "FailedGetObjectMetric"
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen.append(replicas(cluster, namespace, "web"))
        time.sleep(5)
    assert set(seen) == {2}, seen


def test_an_alert_naming_a_pod_on_another_node_is_refused(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("enforce")
    cluster.apply(deployment("web", namespace, 2))
    pod = wait_ready_pods(cluster, namespace, "web", 2)[0]
    nodes = [n["metadata"]["name"] for n in cluster.request("GET", "/api/v1/nodes")["items"]]
    elsewhere = next(n for n in nodes if n != pod["spec"]["nodeName"])
    before = samples(stack, "teflon_webhook_node_mismatch_total")
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.terminal_shell(pod, hostname=elsewhere)])

    _wait_value(
        cluster, lambda: samples(stack, "teflon_webhook_node_mismatch_total") - before, 1.0, "a node mismatch"
    )
    assert samples(stack, "teflon_webhook_actions_total", result="skipped", namespace=namespace) == 1
    assert samples(stack, "teflon_webhook_actions_total", result="applied", namespace=namespace) == 0
    assert pod_uid(cluster, namespace, pod["metadata"]["name"]) == pod["metadata"]["uid"]


def test_an_alert_about_a_pod_since_replaced_under_the_same_name_is_refused(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("enforce")
    labels = {"app": "db"}
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": "registry.invalid/shop/db:16.4"}]},
                },
            },
        }
    )
    old = wait_ready_pods(cluster, namespace, "db", 2)[0]
    name = old["metadata"]["name"]
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0})
    cluster.wait_until(
        lambda: (uid := pod_uid(cluster, namespace, name)) not in (None, old["metadata"]["uid"]) and uid,
        60,
        f"the StatefulSet to recreate {name}",
    )
    new = next(p for p in wait_ready_pods(cluster, namespace, "db", 2) if p["metadata"]["name"] == name)
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.terminal_shell(old)])

    _wait_value(
        cluster,
        lambda: samples(stack, "teflon_webhook_skips_total", reason="pod_replaced"),
        1.0,
        "the alert about the old pod to be skipped",
    )
    assert pod_uid(cluster, namespace, name) == new["metadata"]["uid"]


def test_isolate_creates_a_network_policy_that_is_garbage_collected_with_the_pod(
    cluster: Cluster, stack: ChartStack, namespace: str, policy_mode: Callable[[str], None]
) -> None:
    policy_mode("enforce")
    cluster.apply(deployment("web", namespace, 2))
    pod = wait_ready_pods(cluster, namespace, "web", 2)[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    with httpx.Client(timeout=5) as client:
        falco.post(client, ingest_url(stack), [falco.read_sensitive_file(pod)])

    np_path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/teflon-isolate-{name}"
    policy = cluster.wait_until(lambda: cluster.request("GET", np_path), 30, "the isolating NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"teflon.io/isolate": uid}}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert not policy["spec"].get("ingress")
    assert not policy["spec"].get("egress")
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", name, uid)
    live = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
    assert live["metadata"]["labels"]["teflon.io/isolate"] == uid
    # Only that pod is selected: its sibling keeps its traffic.
    sibling = ready_pods(cluster, namespace, "web")[1]
    assert "teflon.io/isolate" not in sibling["metadata"]["labels"]

    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0})

    def collected() -> bool:
        try:
            cluster.request("GET", np_path)
        except ApiError as exc:
            if exc.status == 404:
                return True
            raise
        return False

    cluster.wait_until(collected, 60, "the garbage collector to delete the NetworkPolicy with its pod")


def test_a_flood_of_alerts_respects_the_budget_and_opens_the_circuit_breaker(
    cluster: Cluster, stack: ChartStack, policy_mode: Callable[[str], None], namespace: str
) -> None:
    policy_mode("enforce")
    stack.restart("webhook")  # fresh budgets and breaker, whatever earlier tests spent
    second = f"{namespace}-b"
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": second}}
    )
    try:
        cluster.apply(deployment("web", namespace, 6))
        cluster.wait_until(
            lambda: cluster.request("GET", f"/api/v1/namespaces/{second}/serviceaccounts/default"),
            30,
            "namespace",
        )
        cluster.apply(deployment("web", second, 4))
        first_pods = wait_ready_pods(cluster, namespace, "web", 6)
        second_pods = wait_ready_pods(cluster, second, "web", 4)
        # The policy: 3 actions per namespace (burst, 1 more per minute), breaker at 5 within 300 s.
        with httpx.Client(timeout=5) as client:
            falco.post(client, ingest_url(stack), [falco.terminal_shell(p) for p in first_pods])

            def decided(ns: str) -> float:
                return samples(stack, "teflon_webhook_actions_total", [0], action="delete", namespace=ns)

            _wait_value(cluster, lambda: decided(namespace), 6.0, f"6 decisions in {namespace}")
            assert (
                samples(stack, "teflon_webhook_actions_total", [0], result="applied", namespace=namespace)
                == 3
            )
            assert samples(stack, "teflon_webhook_skips_total", [0], reason="budget") == 3

            falco.post(client, ingest_url(stack), [falco.terminal_shell(p) for p in second_pods])
            _wait_value(cluster, lambda: decided(second), 4.0, f"4 decisions in {second}")
        assert samples(stack, "teflon_webhook_actions_total", [0], result="applied", namespace=second) == 2
        assert samples(stack, "teflon_webhook_skips_total", [0], reason="circuit_open") == 2
        assert samples(stack, "teflon_webhook_circuit_breaker_open", [0]) == 1
        deleted = [
            p
            for p in first_pods + second_pods
            if pod_uid(cluster, p["metadata"]["namespace"], p["metadata"]["name"]) != p["metadata"]["uid"]
        ]
        assert len(deleted) == 5
        opened = [
            e
            for ns in (namespace, second)
            for e in cluster.request("GET", f"/apis/events.k8s.io/v1/namespaces/{ns}/events")["items"]
            if e["reason"] == "TeflonCircuitOpen"
        ]
        assert len(opened) == 1, opened
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/{second}")
        stack.restart("webhook")  # close the breaker again for whatever runs next
