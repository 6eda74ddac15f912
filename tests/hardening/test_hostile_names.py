"""Alerts whose namespace or pod name is not a Kubernetes name never reach another object.

The names in an alert are whatever its sender wrote. Used in a URL path, ``default/../kube-system``
resolves to kube-system after the guards checked ``default/../kube-system`` against the protected
namespaces; this proves the responder refuses such names against the real kube-apiserver.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from teflon.common.kube import KubeClient
from teflon.webhook.alert import AlertRejected, parse_one
from teflon.webhook.kube_actions import KubeClusterActions
from teflon.webhook.policy import Policy
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry

pytestmark = pytest.mark.cluster
NODE = "teflon-worker-1"


async def bare_pod(kube: KubeClient, namespace: str, name: str) -> str:
    pod = await kube.post(
        f"/api/v1/namespaces/{namespace}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
        },
    )
    return str(pod["metadata"]["uid"])


@pytest.mark.parametrize(
    "alias",
    ["default/../{ns}", "{ns}/pods/../../{ns}", "./{ns}", "{ns}/."],
)
async def test_a_dot_segment_namespace_never_reaches_a_protected_namespace(
    kube: KubeClient, namespace: str, alias: str
) -> None:
    uid = await bare_pod(kube, namespace, "victim")
    policy = Policy.model_validate(
        {
            "mode": "enforce",
            "protectedNamespaces": [namespace],
            "allowBarePods": True,
            "rules": [{"name": "label-all", "actions": [{"type": "label"}, {"type": "delete"}]}],
        }
    )
    actions = KubeClusterActions(kube, reporting_instance="hardening")
    telemetry = Telemetry(CollectorRegistry())
    responder = Responder(
        policy=lambda: policy,
        own_namespace="teflon",
        telemetry=telemetry,
        rates=RateTracker(max_tracked=100, ttl_seconds=900),
        actions=actions,
    )
    doc: dict[str, Any] = {
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "hostname": NODE,
        "output_fields": {
            "k8s.ns.name": alias.format(ns=namespace),
            "k8s.pod.name": "victim",
            "k8s.pod.uid": uid,
        },
    }
    # Ingest refuses the name outright; the responder must hold on its own all the same.
    with pytest.raises(AlertRejected):
        parse_one(doc, received=datetime.now(UTC))
    doc["output_fields"]["k8s.ns.name"] = namespace
    alert = replace(parse_one(doc, received=datetime.now(UTC)), namespace=alias.format(ns=namespace))
    await responder.handle(alert, 0.0)

    pod = await kube.get(f"/api/v1/namespaces/{namespace}/pods/victim")
    assert pod["metadata"]["uid"] == uid
    assert "deletionTimestamp" not in pod["metadata"]
    assert "teflon.io/quarantined" not in (pod["metadata"].get("labels") or {})
    applied = telemetry.registry.get_sample_value(
        "teflon_webhook_actions_total",
        {"action": "label", "result": "applied", "mode": "enforce", "namespace": alias.format(ns=namespace)},
    )
    assert applied is None


@pytest.mark.parametrize(
    "pod_name", ["../../../nodes/" + NODE, "victim/../victim", "victim?dryRun=All", "Victim", ""]
)
async def test_a_pod_name_that_kubernetes_would_refuse_is_never_looked_up(
    kube: KubeClient, namespace: str, pod_name: str
) -> None:
    await bare_pod(kube, namespace, "victim")
    actions = KubeClusterActions(kube, reporting_instance="hardening")
    assert await actions.get_pod(namespace, pod_name) is None
    assert await actions.get_pod(namespace, "victim") is not None
