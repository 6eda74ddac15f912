"""The chart against a real API server: it installs, upgrades and refuses to take over another
release's APIService. (kwok runs no containers, so this checks what the API server stores and what
Helm's cluster lookups do, not the pods' behaviour; tests/e2e covers that.)"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest

from tests.harness.cluster import ApiError, Cluster, CommandError

from .rendering import CHART

pytestmark = pytest.mark.cluster

API_SERVICES = ("v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io")


@contextlib.contextmanager
def custom_metrics_api_services(cluster: Cluster) -> Iterator[None]:
    """Hold the cluster-wide custom metrics APIService names for this test only."""
    # The same lock name as every other test that registers custom.metrics.k8s.io (tests/e2e).
    with cluster.lock("apiservice-custom.metrics.k8s.io"):
        for name in API_SERVICES:
            with contextlib.suppress(ApiError):
                cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
                pytest.fail(f"APIService {name} exists outside this test; remove it first")
        yield


def install(cluster: Cluster, release: str, namespace: str, *extra: str) -> None:
    cluster.helm("upgrade", "--install", release, str(CHART), "--namespace", namespace, *extra)


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A release name; its APIServices are held by this test until it is uninstalled."""
    name = f"tfl-{secrets.token_hex(3)}"
    with custom_metrics_api_services(cluster):
        try:
            yield name
        finally:
            cluster.helm("uninstall", name, "--namespace", namespace, "--wait", check=False)


def _secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    data: dict[str, str] = cluster.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")["data"]
    return data


def test_helm_generated_certificates_survive_an_upgrade_and_the_ca_bundle_matches_them(
    cluster: Cluster, namespace: str, release: str
) -> None:
    install(cluster, release, namespace)
    secret = f"{release}-teflon-metrics-tls"
    first = _secret_data(cluster, namespace, secret)
    for name in API_SERVICES:
        api = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
        assert api["spec"]["caBundle"] == first["ca.crt"]
        assert api["spec"]["service"] == {
            "name": f"{release}-teflon-metrics",
            "namespace": namespace,
            "port": 443,
        }

    install(cluster, release, namespace, "--set", "webhook.logLevel=DEBUG")
    assert _secret_data(cluster, namespace, secret) == first
    api = cluster.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{API_SERVICES[1]}")
    assert api["spec"]["caBundle"] == first["ca.crt"]


def test_a_second_release_is_refused_the_custom_metrics_api_services_of_the_first(
    cluster: Cluster, namespace: str, release: str
) -> None:
    other_namespace = f"{namespace}-b"[:63]
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other_namespace}},
    )
    try:
        install(cluster, release, namespace)
        with pytest.raises(CommandError) as refused:
            install(cluster, "second", other_namespace)
        message = refused.value.proc.stderr
        assert "ERROR: the APIService v1beta1.custom.metrics.k8s.io already exists" in message
        assert f"owned by Helm release {namespace}/{release}" in message
    finally:
        cluster.helm("uninstall", "second", "--namespace", other_namespace, check=False)
        cluster.request("DELETE", f"/api/v1/namespaces/{other_namespace}")


def test_the_stored_webhook_role_in_dry_run_cannot_change_pods(
    cluster: Cluster, namespace: str, release: str
) -> None:
    install(cluster, release, namespace)
    role = cluster.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{release}-teflon-webhook")
    verbs = {v for rule in role["rules"] if "events" not in rule["resources"] for v in rule["verbs"]}
    assert verbs == {"get"}
