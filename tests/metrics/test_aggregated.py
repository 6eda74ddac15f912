"""``python -m teflon.metrics`` behind the real aggregation layer.

The metrics server and a webhook replica run as real processes in a network namespace of the local
control plane, behind Services without selectors. An APIService registers the metrics server; requests
go through kube-apiserver's aggregator exactly as the HPA's do (front-proxy certificate, X-Remote-User),
and the server finds the webhook through its Service's EndpointSlice.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.certs import CertificateAuthority
from tests.harness.cluster import Cluster, CommandError, NetnsService

from .webhooks import alert

pytestmark = pytest.mark.cluster

API_PORT, OPS_PORT, WEBHOOK_INGEST, WEBHOOK_OPS = 6443, 8080, 2801, 8081
GROUP = "custom.metrics.k8s.io"


def _apiservice(version: str, svc: NetnsService, ca_pem: bytes, priority: int) -> dict[str, Any]:
    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": f"{version}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "version": version,
            "service": {"namespace": svc.namespace, "name": svc.name, "port": svc.service_port},
            "caBundle": base64.b64encode(ca_pem).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": priority,
        },
    }


def _webhook_service(namespace: str, ip: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "teflon-webhook", "namespace": namespace},
            "spec": {"ports": [{"name": "ops", "port": WEBHOOK_OPS, "targetPort": WEBHOOK_OPS}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "teflon-webhook-netns",
                "namespace": namespace,
                "labels": {
                    "kubernetes.io/service-name": "teflon-webhook",
                    "endpointslice.kubernetes.io/managed-by": "teflon-test-harness",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": "ops", "port": WEBHOOK_OPS, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        },
    ]


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}]},
    }


@pytest.fixture
def deployed(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[NetnsService, CertificateAuthority]]:
    for name in ("web-1", "web-2"):
        pod = _pod(name)
        pod["metadata"]["namespace"] = namespace
        cluster.apply(pod)
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "shop", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "shop"}},
                "template": {
                    "metadata": {"labels": {"app": "shop"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}]},
                },
            },
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "metrics-reader", "namespace": namespace},
            "rules": [{"apiGroups": [GROUP], "resources": ["*"], "verbs": ["get"]}],
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-reader", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "metrics-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
        }
    )
    ca = CertificateAuthority.create("teflon-metrics-ca")
    config = tmp_path / "metrics.yaml"
    config.write_text(
        json.dumps(
            {
                "backends": {
                    "teflon": {"service": "teflon-webhook", "namespace": namespace, "portName": "ops"}
                },
                "metrics": [],
            }
        )
    )
    with cluster.netns_service("teflon-metrics", namespace, API_PORT) as svc:
        serving = ca.issue(tmp_path / "serving", "teflon-metrics", dns_names=[svc.dns_name], ips=[svc.ip])
        base_env = {"PATH": os.environ.get("PATH", "")}
        webhook_log = (tmp_path / "webhook.log").open("wb")
        metrics_log = (tmp_path / "metrics.log").open("wb")
        webhook_objects = _webhook_service(namespace, svc.ip)
        try:
            svc.run(
                [sys.executable, "-m", "teflon.webhook"],
                env={
                    **base_env,
                    "TEFLON_WEBHOOK_PORT": str(WEBHOOK_INGEST),
                    "TEFLON_WEBHOOK_OPS_PORT": str(WEBHOOK_OPS),
                    "TEFLON_WEBHOOK_KUBECONFIG": str(cluster.kubeconfig),
                    "TEFLON_WEBHOOK_NAMESPACE": namespace,
                    "TEFLON_WEBHOOK_DRAIN_SECONDS": "0",
                },
                stdout=webhook_log,
                stderr=webhook_log,
            )
            svc.run(
                [sys.executable, "-m", "teflon.metrics"],
                env={
                    **base_env,
                    "TEFLON_METRICS_PORT": str(API_PORT),
                    "TEFLON_METRICS_OPS_PORT": str(OPS_PORT),
                    "TEFLON_METRICS_TLS_CERT_FILE": str(serving.cert_file),
                    "TEFLON_METRICS_TLS_KEY_FILE": str(serving.key_file),
                    "TEFLON_METRICS_CONFIG_FILE": str(config),
                    "TEFLON_METRICS_KUBECONFIG": str(cluster.kubeconfig),
                    "TEFLON_METRICS_AUTHZ_CACHE_SECONDS": "1",
                },
                stdout=metrics_log,
                stderr=metrics_log,
            )
            for obj in webhook_objects:
                cluster.apply(obj)
            svc.wait_ready(timeout=30)
            cluster.wait_until(
                lambda: _get(f"http://{svc.ip}:{OPS_PORT}/readyz") == 200,
                30,
                "the metrics server to be ready",
            )
            cluster.wait_until(
                lambda: _get(f"http://{svc.ip}:{WEBHOOK_OPS}/healthz") == 200, 30, "the webhook to answer"
            )
            yield svc, ca
        finally:
            for obj in reversed(webhook_objects):
                cluster.delete(obj)
            webhook_log.close()
            metrics_log.close()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _raw(cluster: Cluster, path: str, *as_user: str) -> tuple[bool, Any]:
    try:
        out = cluster.kubectl("get", "--raw", path, *as_user).stdout
    except CommandError as exc:
        return False, str(exc)
    return True, json.loads(out)


def test_the_metrics_server_serves_the_hpa_path_through_the_aggregator(
    cluster: Cluster, namespace: str, deployed: tuple[NetnsService, CertificateAuthority], tmp_path: Path
) -> None:
    svc, ca = deployed
    services = [_apiservice("v1beta1", svc, ca.cert_pem, 100), _apiservice("v1beta2", svc, ca.cert_pem, 200)]
    pods_path = (
        f"/apis/{GROUP}/v1beta2/namespaces/{namespace}/pods/*/falco_alerts_per_minute?labelSelector=app%3Dweb"
    )
    with cluster.lock("apiservice-custom.metrics.k8s.io"):
        try:
            for obj in services:
                cluster.apply(obj)

            def available() -> bool:
                for obj in services:
                    got = cluster.request(
                        "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{obj['metadata']['name']}"
                    )
                    cond = next(
                        (c for c in got.get("status", {}).get("conditions", []) if c["type"] == "Available"),
                        None,
                    )
                    if not cond or cond["status"] != "True":
                        return False
                return True

            cluster.wait_until(available, 60, "both custom.metrics.k8s.io APIServices Available")
            # alerts now, so they are inside the one-minute window when the metric is asked
            httpx.post(
                f"http://{svc.ip}:{WEBHOOK_INGEST}/v1/falco", json=[alert(namespace, "web-1")] * 3, timeout=10
            ).raise_for_status()
            cluster.wait_until(
                lambda: _webhook_count(svc, namespace, "pod") >= 3, 30, "the webhook to count 3 alerts"
            )
            # a Deployment's pod: the webhook counts it against the Deployment through its owners
            shop_pod = cluster.wait_until(lambda: _pod_of(cluster, namespace, "app=shop"), 60, "the shop pod")
            httpx.post(
                f"http://{svc.ip}:{WEBHOOK_INGEST}/v1/falco",
                json=[alert(namespace, shop_pod)] * 2,
                timeout=10,
            ).raise_for_status()
            cluster.wait_until(
                lambda: _webhook_count(svc, namespace, "workload") == 2,
                30,
                "the webhook to count the Deployment",
            )
            deploy_ok, deployment = _raw(
                cluster,
                f"/apis/{GROUP}/v1beta1/namespaces/{namespace}/deployments.apps/shop/falco_alerts_per_minute",
            )
            ok, discovery = _raw(cluster, f"/apis/{GROUP}/v1beta2")
            assert ok, discovery
            # alice is no system:masters member: the server asks the cluster with a SubjectAccessReview
            alice_ok, values = _raw(cluster, pods_path, "--as=alice")
            refused_ok, refused = _raw(cluster, pods_path, "--as=bob")
        finally:
            for obj in services:
                cluster.delete(obj)

    # the same identity claimed straight to the server, without the front-proxy certificate: refused
    ctx = ssl.create_default_context(cafile=str(ca.write(tmp_path / "ca").cert_file))
    spoofed = httpx.get(
        f"https://{svc.ip}:{API_PORT}/apis/{GROUP}/v1beta2/namespaces/{namespace}/pods/*/falco_alerts_per_minute",
        headers={"X-Remote-User": "alice", "X-Remote-Group": "system:masters"},
        verify=ctx,
        timeout=10,
    )
    assert spoofed.status_code == 401
    assert spoofed.json()["reason"] == "Unauthorized"
    scrape = httpx.get(f"http://{svc.ip}:{OPS_PORT}/metrics", timeout=5).text
    assert 'teflon_metrics_authentications_total{method="frontproxy",result="ok"}' in scrape
    assert not refused_ok
    assert "forbidden" in refused.lower()
    assert alice_ok, values
    names = {r["name"] for r in discovery["resources"]}
    assert "pods/falco_alerts_per_minute" in names
    assert values["kind"] == "MetricValueList"
    assert values["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert [(i["describedObject"]["name"], i["value"]) for i in values["items"]] == [
        ("web-1", "3"),
        ("web-2", "0"),
    ]
    assert deploy_ok, deployment
    assert deployment["apiVersion"] == "custom.metrics.k8s.io/v1beta1"
    assert [(i["describedObject"], i["metricName"], i["value"]) for i in deployment["items"]] == [
        (
            {"kind": "Deployment", "namespace": namespace, "name": "shop", "apiVersion": "apps/v1"},
            "falco_alerts_per_minute",
            "2",
        )
    ]


def _pod_of(cluster: Cluster, namespace: str, selector: str) -> str | None:
    pods = cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": selector})
    return next((str(p["metadata"]["name"]) for p in pods["items"]), None)


def _webhook_count(svc: NetnsService, namespace: str, scope: str) -> int:
    doc = httpx.get(
        f"http://{svc.ip}:{WEBHOOK_OPS}/v1/rates",
        params={"scope": scope, "namespace": namespace},
        timeout=5,
    ).json()
    return sum(int(e["count"]) for e in doc.get("entries", []))
