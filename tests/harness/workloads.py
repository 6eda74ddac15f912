"""Workloads on the local control plane for the end-to-end tests, benchmarks, fault injection and the
demo: namespaces, Deployments, their ready pods, quantities, the chart's URLs and counters.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.harness.cluster import ApiError, Cluster
from tests.harness.prom import metric_sum
from tests.harness.stack import ChartStack

IMAGE = "registry.invalid/shop/web:1.4.2"

QUARANTINE_LABEL = "teflon.io/quarantined"
LABEL_RULE = "Terminal shell in container"
DELETE_RULE = "Fileless execution via memfd_create"


def unbounded_enforce_values(*, dedupe_seconds: int) -> dict[str, Any]:
    """Chart values that measure the responder itself rather than its limits.

    Enforce mode with budgets and the circuit breaker far out of the way, one rule that labels
    (``LABEL_RULE``) and one that deletes (``DELETE_RULE``), and both services run as harness
    processes. The benchmarks and the fault injection both start from these.
    """
    return {
        "falco": {"enabled": False},
        "webhook": {
            "nodeSelector": {"teflon.io/e2e-process": "true"},
            # Falco is off (alerts are posted by the caller); the chart's preflight wants the Falco its
            # ingest port admits named, as for a user's own Falco (docs/bring-your-own-falco.md).
            "networkPolicy": {
                "ingestFrom": [
                    {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "falco"}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "falco"}},
                    }
                ]
            },
            "policyReloadSeconds": 2,
            "policy": {
                "mode": "enforce",
                "minHealthyReplicas": 0,
                "dedupeSeconds": dedupe_seconds,
                "budgets": {
                    "global": {"perMinute": 6000, "burst": 1000},
                    "perNamespace": {"perMinute": 6000, "burst": 1000},
                },
                "circuitBreaker": {"maxActions": 100000, "windowSeconds": 60, "cooldownSeconds": 60},
                "rules": [
                    {"name": "label-shell", "match": {"rules": [LABEL_RULE]}, "actions": [{"type": "label"}]},
                    {
                        "name": "delete-fileless",
                        "match": {"rules": [DELETE_RULE]},
                        "actions": [{"type": "delete", "gracePeriodSeconds": 0}],
                    },
                ],
            },
        },
        "metrics": {"nodeSelector": {"teflon.io/e2e-process": "true"}},
    }


_SUFFIXES = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
}


def quantity(text: str) -> float:
    """A Kubernetes Quantity string as a number ("1500m" -> 1.5)."""
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix])
    return float(Decimal(text))


def ensure_namespace(cluster: Cluster, name: str, timeout: float = 60) -> None:
    """Namespace ``name`` exists (created unless it did) and has its default ServiceAccount."""
    try:
        cluster.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    cluster.wait_until(
        lambda: cluster.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout,
        f"the default ServiceAccount in {name}",
    )


@contextlib.contextmanager
def installed_stack(
    cluster: Cluster, release: str, namespace: str, workdir: Path, values: dict[str, Any]
) -> Iterator[ChartStack]:
    """The chart installed with ``values`` (after removing what an interrupted run left) and its
    webhook and metrics server running as processes; uninstalled afterwards.
    """
    values_file = workdir / f"{release}-values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    ensure_namespace(cluster, namespace)
    stack = ChartStack(cluster, release, namespace, workdir)
    stack.uninstall()
    stack.helm_install([values_file])
    try:
        with stack.running("webhook", "metrics"):
            yield stack
    finally:
        stack.uninstall()


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": name, "image": IMAGE, "ports": [{"name": "http", "containerPort": 8080}]}
                    ]
                },
            },
        },
    }


def ready_pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = cluster.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": f"app={app}"}
    )
    return sorted(
        (
            p
            for p in pods["items"]
            if "deletionTimestamp" not in p["metadata"]
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ),
        key=lambda p: str(p["metadata"]["name"]),
    )


def wait_ready_pods(cluster: Cluster, namespace: str, app: str, count: int, timeout: float = 60) -> list[Any]:
    def enough() -> list[dict[str, Any]] | None:
        pods = ready_pods(cluster, namespace, app)
        return pods if len(pods) == count else None

    return cluster.wait_until(enough, timeout, f"{count} ready pods of {namespace}/{app}")


def replicas(cluster: Cluster, namespace: str, name: str) -> int:
    dep = cluster.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    return int(dep["spec"]["replicas"])


def pod_uid(cluster: Cluster, namespace: str, name: str) -> str | None:
    """The UID of the pod called ``name``, or None when no such pod exists."""
    try:
        return str(cluster.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")["metadata"]["uid"])
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    """events.k8s.io/v1 Events about the object called ``name`` in ``namespace``."""
    items = cluster.request("GET", f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e.get("regarding", {}).get("name") == name]


def ingest_url(stack: ChartStack, replica: int = 0) -> str:
    return f"http://{stack.pods['webhook'][replica].ip}:{port(stack, 'webhook', 'ingest')}/v1/falco"


def ops_url(stack: ChartStack, component: str, replica: int = 0) -> str:
    return f"http://{stack.pods[component][replica].ip}:{port(stack, component, 'ops')}"


def port(stack: ChartStack, component: str, name: str) -> int:
    dep = stack.deployment(component)
    (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == component]
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def samples(stack: ChartStack, metric: str, replicas: list[int] | None = None, **labels: str) -> float:
    """The sum of ``metric``'s samples whose labels include ``labels``, over the webhook replicas."""
    total = 0.0
    indices = replicas if replicas is not None else list(range(len(stack.pods["webhook"])))
    for i in indices:
        text = httpx.get(f"{ops_url(stack, 'webhook', i)}/metrics", timeout=5).text
        total += metric_sum(text, metric, **labels)
    return total


def custom_metric(cluster: Cluster, path: str) -> Any:
    """GET a custom.metrics.k8s.io path through the aggregator (as the cluster admin)."""
    return json.loads(cluster.kubectl("get", "--raw", f"/apis/custom.metrics.k8s.io{path}").stdout)
