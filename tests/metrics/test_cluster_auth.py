"""Authentication and authorization decided by the real kube-apiserver of the local control plane.

The server reads ``kube-system/extension-apiserver-authentication`` from the cluster, trusts its
front-proxy CA, and asks the cluster's TokenReview and SubjectAccessReview APIs; clients connect over
real TLS with the cluster's own front-proxy client certificate (as the aggregator does), a
ServiceAccount token, the admin client certificate, or nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from teflon.common.kube import KubeClient
from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import (
    AuthConfigSource,
    Authenticator,
    Authorizer,
)
from teflon.metrics.config import parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.resources import KubeObjects
from teflon.metrics.reviews import KubeAccessReviewer, KubeTokenReviewer
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import ServerTLS
from tests.harness.certs import CertificateAuthority
from tests.harness.cluster import Cluster

from .fakes import FakeBackend
from .tlsserver import client, serve_https

pytestmark = pytest.mark.cluster

METRIC = "falco_alerts_per_minute"


@dataclass
class Served:
    url: str
    namespace: str
    serving_ca: Path
    backend: FakeBackend
    source: AuthConfigSource


def _pod(name: str, app: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}]},
    }


@pytest.fixture
async def served(
    cluster: Cluster, namespace: str, kube: KubeClient, tmp_path: Path, telemetry: Telemetry
) -> AsyncIterator[Served]:
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-0", "db")):
        await kube.post(f"/api/v1/namespaces/{namespace}/pods", _pod(name, app))
    # alice may read the metric in this namespace; bob may not
    await kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "metrics-reader"},
            "rules": [{"apiGroups": ["custom.metrics.k8s.io"], "resources": ["*"], "verbs": ["get"]}],
        },
    )
    await kube.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "metrics-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "metrics-reader"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "hpa", "namespace": namespace},
            ],
        },
    )
    ca = CertificateAuthority.create("metrics-serving-ca")
    serving = ca.issue(tmp_path / "serving", "metrics.teflon.svc", ips=["127.0.0.1"])
    server_tls = ServerTLS(str(serving.cert_file), str(serving.key_file))
    source = AuthConfigSource(kube, on_change=lambda cfg: server_tls.trust_client_cas(cfg.all_cas()))
    await source.refresh()
    backend = FakeBackend(values={"web-1": 2.5})
    config = parse_config("backends: {teflon: {service: teflon-webhook, namespace: teflon}}")
    components = Components(
        provider=ConfiguredProvider(config, {"teflon": backend}, KubeObjects(kube), telemetry),
        authenticator=Authenticator(source, KubeTokenReviewer(kube), telemetry),
        authorizer=Authorizer(KubeAccessReviewer(kube, ttl=2)),
        telemetry=telemetry,
        registry=telemetry.registry,
        ready=lambda: source.current is not None,
    )
    async with serve_https(create_app(components).api, server_tls) as url:
        yield Served(url, namespace, ca.write(tmp_path / "serving-ca").cert_file, backend, source)


def pods_url(s: Served) -> str:
    base = f"{s.url}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{s.namespace}"
    return f"{base}/pods/*/{METRIC}?labelSelector=app%3Dweb"


def front_proxy(cluster: Cluster) -> tuple[Path, Path]:
    return cluster.front_proxy_client_cert_file, cluster.front_proxy_client_key_file


async def test_the_cluster_publishes_what_front_proxy_authentication_needs(
    cluster: Cluster, served: Served
) -> None:
    cfg = served.source.current
    assert cfg is not None
    assert cfg.allowed_names == ("front-proxy-client",)
    assert cfg.username_headers == ("x-remote-user",)
    assert cfg.group_headers == ("x-remote-group",)
    assert cfg.extra_prefixes == ("x-remote-extra-",)
    expected = x509.load_pem_x509_certificates(cluster.front_proxy_ca_file.read_bytes())
    assert list(cfg.requestheader_cas) == expected


async def test_the_aggregators_certificate_with_an_allowed_user_is_authorized_by_access_review(
    cluster: Cluster, served: Served
) -> None:
    async with client(served.serving_ca, front_proxy(cluster)) as c:
        resp = await c.get(
            pods_url(served), headers={"X-Remote-User": "alice", "X-Remote-Group": "system:authenticated"}
        )
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [(i["describedObject"]["name"], i["value"]) for i in items] == [("web-1", "2500m"), ("web-2", "0")]


async def test_the_aggregators_certificate_with_a_user_rbac_refuses_is_forbidden(
    cluster: Cluster, served: Served
) -> None:
    async with client(served.serving_ca, front_proxy(cluster)) as c:
        resp = await c.get(
            pods_url(served), headers={"X-Remote-User": "bob", "X-Remote-Group": "system:authenticated"}
        )
    assert resp.status_code == 403
    assert resp.json()["reason"] == "Forbidden"
    assert 'User "bob" cannot get resource "pods/falco_alerts_per_minute"' in resp.json()["message"]
    assert served.backend.targets == []


async def test_spoofed_identity_headers_without_the_front_proxy_certificate_are_refused(
    served: Served,
) -> None:
    async with client(served.serving_ca) as c:
        resp = await c.get(
            pods_url(served), headers={"X-Remote-User": "alice", "X-Remote-Group": "system:masters"}
        )
    assert resp.status_code == 401
    assert served.backend.targets == []


async def test_a_service_account_token_is_reviewed_by_the_api_server(
    kube: KubeClient, served: Served
) -> None:
    ns = served.namespace
    await kube.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "hpa"}},
    )
    token = (
        await kube.post(
            f"/api/v1/namespaces/{ns}/serviceaccounts/hpa/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 600},
            },
        )
    )["status"]["token"]
    async with client(served.serving_ca) as c:
        ok = await c.get(pods_url(served), headers={"Authorization": f"Bearer {token}"})
        forged = await c.get(pods_url(served), headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert ok.status_code == 200, ok.text
    assert forged.status_code == 401


async def test_the_cluster_admin_certificate_is_a_system_masters_user(
    cluster: Cluster, served: Served
) -> None:
    async with client(served.serving_ca, (cluster.admin_cert_file, cluster.admin_key_file)) as c:
        resp = await c.get(pods_url(served))
    assert resp.status_code == 200


async def test_an_unknown_pod_is_not_found_from_the_real_api(cluster: Cluster, served: Served) -> None:
    async with client(served.serving_ca, front_proxy(cluster)) as c:
        resp = await c.get(
            f"{served.url}/apis/custom.metrics.k8s.io/v1beta1/namespaces/{served.namespace}/pods/ghost/{METRIC}",
            headers={"X-Remote-User": "alice"},
        )
    assert resp.status_code == 404
    assert resp.json()["message"] == f'pods "ghost" not found in namespace {served.namespace}'
