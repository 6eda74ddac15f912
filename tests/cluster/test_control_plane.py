"""Acceptance tests of the local control plane: real controllers, the aggregation layer, the HPA, Helm."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from teflon.common.kube import KubeClient
from tests.harness import testserver
from tests.harness.certs import CertificateAuthority
from tests.harness.cluster import Cluster, NetnsService

pytestmark = pytest.mark.cluster

FIXTURES = Path(__file__).parent / "fixtures"
SERVER_PORT = 8443


def _deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}]},
            },
        },
    }


def _ready_pods(
    cluster: Cluster, namespace: str, app: str, selector: str | None = None
) -> list[dict[str, Any]]:
    params = {"labelSelector": selector or f"app={app}"}
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", params=params)
    return [
        p
        for p in pods["items"]
        if "deletionTimestamp" not in p["metadata"]
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]


def _replicas(cluster: Cluster, namespace: str, name: str) -> int:
    return int(
        cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")["spec"]["replicas"]
    )


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def _available(cluster: Cluster, apiservice: dict[str, Any]) -> bool:
    name = apiservice["metadata"]["name"]
    obj = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
    cond = _condition(obj, "Available")
    return cond is not None and cond["status"] == "True"


def _wait_for_replicas(cluster: Cluster, hpa: dict[str, Any], replicas: int) -> None:
    namespace, name = hpa["metadata"]["namespace"], hpa["metadata"]["name"]
    try:
        cluster.wait_until(
            lambda: _replicas(cluster, namespace, name) == replicas, 90, f"{replicas} replicas"
        )
    except TimeoutError as exc:
        path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
        status = cluster.request("GET", path).get("status")
        raise AssertionError(f"{exc}; HPA status: {json.dumps(status)}") from exc


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _apiservice(
    group: str, version: str, svc: NetnsService, ca_pem: bytes, priority: int = 15
) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{version}.{group}"},
        "spec": {
            "group": group,
            "version": version,
            "service": {"namespace": svc.namespace, "name": svc.name, "port": svc.service_port},
            "caBundle": base64.b64encode(ca_pem).decode(),
            "groupPriorityMinimum": 1000,
            "versionPriority": priority,
        },
    }


@pytest.fixture
def extension_server(
    cluster: Cluster, namespace: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[NetnsService, CertificateAuthority, Path, Path]]:
    """The harness test server in a network namespace behind Service ``ext-api``.

    Yields the service, the CA that signed its serving certificate, its request record and its
    metrics file. ``request.param`` lists the group/versions it serves.
    """
    group_versions: list[str] = request.param
    ca = CertificateAuthority.create("ext-api-ca")
    with cluster.netns_service("ext-api", namespace, SERVER_PORT) as svc:
        serving = ca.issue(tmp_path / "serving", svc.dns_name, dns_names=[svc.dns_name])
        record, metrics = tmp_path / "record.jsonl", tmp_path / "metrics.json"
        metrics.write_text("{}")
        log = (tmp_path / "server.log").open("wb")
        svc.run(
            testserver.command(
                sys.executable,
                port=SERVER_PORT,
                cert=serving.cert_file,
                key=serving.key_file,
                client_ca=cluster.front_proxy_ca_file,
                record=record,
                group_versions=group_versions,
                metrics=metrics,
            ),
            stdout=log,
            stderr=log,
        )
        svc.wait_ready()
        yield svc, ca, record, metrics
        log.close()


async def test_the_api_server_reports_its_real_version_and_knows_the_fake_nodes(
    cluster: Cluster, kube: KubeClient
) -> None:
    major, minor, _ = cluster.kubernetes_version.split(".")
    version = await kube.get("/version")
    assert (version["gitVersion"], version["major"], version["minor"]) == (
        f"v{cluster.kubernetes_version}",
        major,
        minor,
    )
    nodes = await kube.get("/api/v1/nodes")
    assert sorted(n["metadata"]["name"] for n in nodes["items"]) == [f"teflon-worker-{i}" for i in (1, 2, 3)]


def test_a_deployments_pods_become_ready_and_a_deleted_pod_is_replaced(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(_deployment("web", namespace, 3))

    def three_ready() -> list[dict[str, Any]] | None:
        pods = _ready_pods(cluster, namespace, "web")
        return pods if len(pods) == 3 else None

    pods = cluster.wait_until(three_ready, timeout=60, what="3 ready pods")
    assert all(p["status"].get("podIP", "").startswith("10.244.") for p in pods)
    assert {p["spec"]["nodeName"] for p in pods} <= {f"teflon-worker-{i}" for i in (1, 2, 3)}

    victim = pods[0]["metadata"]
    cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{victim['name']}")

    def replaced() -> list[dict[str, Any]] | None:
        now = _ready_pods(cluster, namespace, "web")
        uids = {p["metadata"]["uid"] for p in now}
        return now if len(now) == 3 and victim["uid"] not in uids else None

    after = cluster.wait_until(replaced, timeout=60, what="the ReplicaSet to replace the deleted pod")
    owners = {o["kind"] for p in after for o in p["metadata"].get("ownerReferences", [])}
    assert owners == {"ReplicaSet"}


@pytest.mark.parametrize("extension_server", [["test.teflon.io/v1", "test.teflon.io/v2"]], indirect=True)
def test_the_aggregator_reaches_a_server_in_a_network_namespace_with_the_front_proxy_identity(
    cluster: Cluster, extension_server: tuple[NetnsService, CertificateAuthority, Path, Path]
) -> None:
    svc, ca, record, _ = extension_server
    wrong_ca = CertificateAuthority.create("not-the-servers-ca")
    good = _apiservice("test.teflon.io", "v1", svc, ca.cert_pem)
    bad = _apiservice("test.teflon.io", "v2", svc, wrong_ca.cert_pem)
    with cluster.lock("apiservice-test.teflon.io"):
        try:
            cluster.apply(good)
            cluster.apply(bad)

            def available(name: str, status: str) -> dict[str, Any] | None:
                obj = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
                cond = _condition(obj, "Available")
                return cond if cond and cond["status"] == status else None

            cluster.wait_until(
                lambda: available("v1.test.teflon.io", "True"), 60, "v1.test.teflon.io Available"
            )
            # The caBundle is really checked: the same server behind a bundle of another CA fails.
            refused = cluster.wait_until(
                lambda: available("v2.test.teflon.io", "False"), 60, "v2.test.teflon.io unavailable"
            )
            assert refused["reason"] == "FailedDiscoveryCheck"
            assert "x509" in refused["message"] or "certificate" in refused["message"]

            answer = json.loads(cluster.kubectl("get", "--raw", "/apis/test.teflon.io/v1/whoami").stdout)
        finally:
            cluster.delete(bad)
            cluster.delete(good)

    assert answer["user"] == "kubernetes-admin"
    assert "system:masters" in answer["groups"]
    assert answer["peerCN"] == "front-proxy-client"
    whoami = [r for r in _records(record) if r["path"] == "/apis/test.teflon.io/v1/whoami"]
    assert [(r["peer_cn"], r["user"], r["code"]) for r in whoami] == [
        ("front-proxy-client", "kubernetes-admin", 200)
    ]
    # The availability probe is proxied with the same front-proxy certificate.
    probes = [r for r in _records(record) if r["path"] == "/apis/test.teflon.io/v1"]
    assert probes
    assert all(r["peer_cn"] == "front-proxy-client" and r["code"] == 200 for r in probes)


@pytest.mark.parametrize("extension_server", [["custom.metrics.k8s.io/v1beta2"]], indirect=True)
def test_an_hpa_scales_a_deployment_on_an_object_metric_from_an_aggregated_server(
    cluster: Cluster, namespace: str, extension_server: tuple[NetnsService, CertificateAuthority, Path, Path]
) -> None:
    svc, ca, record, metrics = extension_server
    cluster.apply(_deployment("shop", namespace, 1))
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "shop", "namespace": namespace},
            "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80}]},
        }
    )
    key = f"{namespace}/services/shop/requests_per_second"
    metrics.write_text(json.dumps({key: "250"}))
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "shop", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Object",
                    "object": {
                        "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "shop"},
                        "metric": {"name": "requests_per_second"},
                        "target": {"type": "Value", "value": "100"},
                    },
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }
    apiservice = _apiservice("custom.metrics.k8s.io", "v1beta2", svc, ca.cert_pem, priority=200)
    # custom.metrics.k8s.io is cluster-wide: whoever registers it holds this lock.
    with cluster.lock("apiservice-custom.metrics.k8s.io"):
        try:
            cluster.apply(apiservice)
            cluster.wait_until(lambda: _available(cluster, apiservice), 60, "the APIService to be Available")
            cluster.wait_until(lambda: _ready_pods(cluster, namespace, "shop"), 60, "the first shop pod")
            cluster.apply(hpa)
            # 250 against a target of 100 with one ready pod: ceil(2.5 * 1) = 3.
            _wait_for_replicas(cluster, hpa, 3)
            cluster.wait_until(lambda: len(_ready_pods(cluster, namespace, "shop")) == 3, 60, "3 ready pods")
            # 50 against 100 with three ready pods: ceil(0.5 * 3) = 2.
            metrics.write_text(json.dumps({key: "50"}))
            _wait_for_replicas(cluster, hpa, 2)
        finally:
            try:
                cluster.delete(hpa)
            finally:
                cluster.delete(apiservice)

    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/services/shop/requests_per_second"
    hpa_calls = [r for r in _records(record) if r["path"] == path]
    assert hpa_calls
    assert {r["user"] for r in hpa_calls} == {"system:serviceaccount:kube-system:horizontal-pod-autoscaler"}
    assert all(r["peer_cn"] == "front-proxy-client" for r in hpa_calls)


def test_helm_install_waits_for_a_ready_release_and_helm_test_succeeds(
    cluster: Cluster, namespace: str
) -> None:
    chart = FIXTURES / "hello"
    cluster.helm("install", "hello", str(chart), "-n", namespace, "--wait", "--timeout", "2m")
    try:
        assert len(_ready_pods(cluster, namespace, "", "app.kubernetes.io/instance=hello")) == 2
        result = cluster.helm("test", "hello", "-n", namespace, "--timeout", "2m")
        assert re.search(r"TEST SUITE:\s+hello-test-connection.*Phase:\s+Succeeded", result.stdout, re.S)
        pod = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/hello-test-connection")
        assert pod["status"]["phase"] == "Succeeded"
    finally:
        cluster.helm("uninstall", "hello", "-n", namespace, "--wait", "--timeout", "1m", check=False)
