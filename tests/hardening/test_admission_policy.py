"""A stolen webhook token cannot do more than teflon's own actions: the real API server says no.

The chart's ServiceAccount, ClusterRole (enforce mode: label, isolate, evict, delete), binding and its
ValidatingAdmissionPolicy are rendered by helm and applied to the local control plane; every request
below is made with a real token of that ServiceAccount. RBAC allows each refused request (the role
grants pods patch/delete and NetworkPolicy create/update cluster-wide), so each 403 is the policy's.
"""

from __future__ import annotations

import secrets
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import yaml

from teflon.webhook.objects import PodRef
from teflon.webhook.quarantine import Plan, QuarantineOrder, detach_patch
from tests.chart.rendering import CHART, helm_binary
from tests.harness.cluster import ApiError, Cluster

ISOLATE = "teflon.io/isolate"
QUARANTINE = "teflon.io/quarantined"
POLICY = {
    "mode": "enforce",
    "rules": [
        {
            "name": "respond",
            "actions": [
                {"type": "label"},
                {"type": "isolate"},
                {"type": "evict"},
                {"type": "delete"},
                {"type": "quarantine"},
            ],
        }
    ],
}
APPLIED_KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
)


@dataclass
class Webhook:
    """Requests as the webhook's ServiceAccount; ``release_ns`` is the release's own namespace."""

    http: httpx.Client
    release_ns: str

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> httpx.Response:
        return self.http.request(method, path, json=body, headers={"Content-Type": content_type})


def render(release: str, namespace: str) -> list[dict[str, Any]]:
    values = {
        "falco": {"enabled": False},
        "metrics": {"enabled": False},
        "webhook": {"policy": POLICY, "networkPolicy": {"enabled": False}},
    }
    out = subprocess.run(
        [helm_binary(), "template", release, str(CHART), "--namespace", namespace, "--values", "-"],
        input=yaml.safe_dump(values),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] in APPLIED_KINDS]


def pod(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
    }


def isolation_policy(namespace: str, name: str = "teflon-isolate-web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "teflon"},
        },
        "spec": {
            "podSelector": {"matchLabels": {ISOLATE: "uid-1"}},
            "policyTypes": ["Ingress", "Egress"],
            **spec,
        },
    }


def label_patch(key: str, value: str | None) -> list[dict[str, Any]]:
    escaped = key.replace("~", "~0").replace("/", "~1")
    if value is None:
        return [{"op": "remove", "path": f"/metadata/labels/{escaped}"}]
    return [{"op": "add", "path": f"/metadata/labels/{escaped}", "value": value}]


PROTECTED = "may change nothing in the protected namespace"
LABELS_ONLY = "may change a pod's labels only"
OWN_LABELS = "may only add or change the labels"
OWN_POLICIES = "may only write its own deny-all isolation NetworkPolicies"


def refused_by_policy(answer: httpx.Response, because: str) -> bool:
    """Whether the API server refused ``answer``'s request through the chart's policy, ``because``."""
    return answer.status_code == 403 and "ValidatingAdmissionPolicy" in answer.text and because in answer.text


@pytest.fixture
def webhook(cluster: Cluster, namespace: str) -> Iterator[Webhook]:
    release = f"vap{secrets.token_hex(3)}"
    manifests = render(release, namespace)
    assert {m["kind"] for m in manifests} == set(APPLIED_KINDS)
    for manifest in manifests:
        cluster.apply(manifest)
    sa = next(m for m in manifests if m["kind"] == "ServiceAccount")["metadata"]["name"]
    token = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 600},
        },
    )["status"]["token"]
    http = httpx.Client(
        base_url=cluster.server,
        verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
        headers={"Authorization": f"Bearer {token}"},
    )
    client = Webhook(http, namespace)
    cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod("probe", namespace))
    # The policy takes effect once the API server's admission informer has it: wait for its first no.
    cluster.wait_until(
        lambda: (
            refused_by_policy(
                client.call(
                    "PATCH",
                    f"/api/v1/namespaces/{namespace}/pods/probe",
                    label_patch("app", "other"),
                    "application/json-patch+json",
                ),
                PROTECTED,
            )
            or None
        ),
        timeout=30,
        what="the ValidatingAdmissionPolicy to take effect",
    )
    try:
        yield client
    finally:
        http.close()
        for manifest in reversed(manifests):
            if manifest["kind"] != "ServiceAccount":
                cluster.delete(manifest)


@pytest.fixture
def system_pod(cluster: Cluster) -> Iterator[str]:
    name = f"teflon-vap-victim-{secrets.token_hex(3)}"
    cluster.request("POST", "/api/v1/namespaces/kube-system/pods", pod(name, "kube-system"))
    yield name
    try:
        cluster.request("DELETE", f"/api/v1/namespaces/kube-system/pods/{name}", {"gracePeriodSeconds": 0})
    except ApiError as exc:
        if exc.status != 404:
            raise


def test_the_webhook_token_writes_nothing_in_kube_system(webhook: Webhook, system_pod: str) -> None:
    path = f"/api/v1/namespaces/kube-system/pods/{system_pod}"
    attempts = {
        "label": webhook.call("PATCH", path, label_patch(QUARANTINE, "true"), "application/json-patch+json"),
        "evict": webhook.call(
            "POST",
            f"{path}/eviction",
            {
                "apiVersion": "policy/v1",
                "kind": "Eviction",
                "metadata": {"name": system_pod, "namespace": "kube-system"},
            },
        ),
        "delete": webhook.call("DELETE", path),
        "isolate": webhook.call(
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/kube-system/networkpolicies",
            isolation_policy("kube-system"),
        ),
    }
    refused = {what: refused_by_policy(answer, PROTECTED) for what, answer in attempts.items()}
    assert refused == dict.fromkeys(attempts, True), {k: a.text for k, a in attempts.items()}


def test_nor_in_its_own_namespace(webhook: Webhook, cluster: Cluster) -> None:
    ns = webhook.release_ns
    answer = webhook.call("DELETE", f"/api/v1/namespaces/{ns}/pods/probe")
    assert refused_by_policy(answer, PROTECTED), answer.text


@pytest.fixture
def workload_ns(cluster: Cluster) -> Iterator[str]:
    name = f"t-vap-workload-{secrets.token_hex(3)}"
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


def test_the_webhook_token_cannot_change_a_pod_image(
    cluster: Cluster, webhook: Webhook, workload_ns: str
) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{workload_ns}/pods", pod("web", workload_ns))
    answer = webhook.call(
        "PATCH",
        f"/api/v1/namespaces/{workload_ns}/pods/web",
        [{"op": "replace", "path": "/spec/containers/0/image", "value": "attacker.invalid/miner:1"}],
        "application/json-patch+json",
    )
    assert refused_by_policy(answer, LABELS_ONLY), answer.text
    current = cluster.request("GET", f"/api/v1/namespaces/{workload_ns}/pods/web")
    assert current["spec"]["containers"][0]["image"] == "registry.invalid/app:1"


def test_pod_writes_are_limited_to_the_labels_teflon_sets(
    cluster: Cluster, webhook: Webhook, workload_ns: str
) -> None:
    cluster.request("POST", f"/api/v1/namespaces/{workload_ns}/pods", pod("web", workload_ns))
    path = f"/api/v1/namespaces/{workload_ns}/pods/web"
    patch = "application/json-patch+json"
    ok = webhook.call("PATCH", path, label_patch(QUARANTINE, "true"), patch)
    assert ok.status_code == 200, ok.text
    assert webhook.call("PATCH", path, label_patch(ISOLATE, "uid-1"), patch).status_code == 200
    refused = {
        "another label": (webhook.call("PATCH", path, label_patch("app", "detached"), patch), OWN_LABELS),
        "a new label": (webhook.call("PATCH", path, label_patch("team", "x"), patch), OWN_LABELS),
        "a removed label": (webhook.call("PATCH", path, label_patch("app", None), patch), OWN_LABELS),
        "an annotation": (
            webhook.call(
                "PATCH", path, {"metadata": {"annotations": {"a": "b"}}}, "application/merge-patch+json"
            ),
            LABELS_ONLY,
        ),
        "a finalizer": (
            webhook.call(
                "PATCH", path, {"metadata": {"finalizers": ["x.io/hold"]}}, "application/merge-patch+json"
            ),
            LABELS_ONLY,
        ),
        "the image": (
            webhook.call(
                "PATCH",
                path,
                {"spec": {"containers": [{"name": "app", "image": "evil.invalid/x:1"}]}},
                "application/strategic-merge-patch+json",
            ),
            LABELS_ONLY,
        ),
    }
    outcome = {k: refused_by_policy(a, because) for k, (a, because) in refused.items()}
    assert outcome == dict.fromkeys(refused, True), {k: a.text for k, (a, _) in refused.items()}
    labels = cluster.request("GET", path)["metadata"]["labels"]
    assert labels == {"app": "web", QUARANTINE: "true", ISOLATE: "uid-1"}
    assert webhook.call("DELETE", path).status_code == 200


def test_network_policy_writes_are_limited_to_teflon_isolation_policies(
    cluster: Cluster, webhook: Webhook, workload_ns: str
) -> None:
    base = f"/apis/networking.k8s.io/v1/namespaces/{workload_ns}/networkpolicies"
    created = webhook.call("POST", base, isolation_policy(workload_ns))
    assert created.status_code == 201, created.text
    refused = {
        "allow-all ingress": webhook.call(
            "POST", base, isolation_policy(workload_ns, "teflon-isolate-open", ingress=[{}])
        ),
        "another name": webhook.call("POST", base, isolation_policy(workload_ns, "allow-everything")),
        "a wider selector": webhook.call(
            "POST",
            base,
            {
                **isolation_policy(workload_ns, "teflon-isolate-wide"),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            },
        ),
    }
    outcome = {k: refused_by_policy(a, OWN_POLICIES) for k, a in refused.items()}
    assert outcome == dict.fromkeys(refused, True), {k: a.text for k, a in refused.items()}
    # The user's own policy, re-pointed through update, is refused too.
    user_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "teflon-isolate-users", "namespace": workload_ns},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]},
    }
    current = cluster.request("POST", base, user_policy)
    replaced = isolation_policy(workload_ns, "teflon-isolate-users")
    replaced["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    assert refused_by_policy(webhook.call("PUT", f"{base}/teflon-isolate-users", replaced), OWN_POLICIES)


def test_the_real_quarantine_patch_passes_and_a_bare_label_removal_does_not(
    cluster: Cluster, webhook: Webhook, workload_ns: str
) -> None:
    created = cluster.request(
        "POST",
        f"/api/v1/namespaces/{workload_ns}/pods",
        pod("shop-1", workload_ns, {"app": "shop", "tier": "web"}),
    )
    path = f"/api/v1/namespaces/{workload_ns}/pods/shop-1"
    patch = "application/json-patch+json"
    bare = webhook.call("PATCH", path, label_patch("app", None), patch)
    assert refused_by_policy(bare, OWN_LABELS), bare.text
    now = datetime.now(UTC)
    order = QuarantineOrder(
        pod=PodRef(workload_ns, "shop-1", created["metadata"]["uid"]),
        plan=Plan.REPLACE,
        controller=None,
        rule="respond",
        alert_rule="Terminal shell in container",
        alert_priority="critical",
        alert_output="A shell was spawned",
        at=now,
        ttl_seconds=3600,
        record_namespace=webhook.release_ns,
        holder="teflon-webhook-0",
    )
    ops, removed = detach_patch(created, order, ["app"])
    assert removed == {"app": "shop"}
    answer = webhook.call("PATCH", path, ops, patch)
    assert answer.status_code == 200, answer.text
    labels = cluster.request("GET", path)["metadata"]["labels"]
    assert labels == {"tier": "web", QUARANTINE: "true"}
