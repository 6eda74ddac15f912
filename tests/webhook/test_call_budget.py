"""The Kubernetes API calls of one enforced alert: how many, in which order, through the real client.

``KubeClusterActions`` and its ``KubeClient`` run unchanged; only the network is an in-memory API
(``httpx.MockTransport``) that records every request and answers as kube-apiserver does for a pod of a
Deployment's ReplicaSet. Each call costs milliseconds on a real control plane (``bench/trace.py``,
docs/benchmarks.md section 6), so a call added on the way to the action fails here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from teflon.common.kube import Credentials, KubeClient
from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.kube_actions import KubeClusterActions
from teflon.webhook.policy import Policy
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry

NS, HOME, POD, UID, RS = "shop", "teflon", "web-1", "0b5e2a1c-5d7f-4c9e-9f0a-1b2c3d4e5f60", "web-5d8f"
POD_PATH = f"/api/v1/namespaces/{NS}/pods/{POD}"
RS_PATH = f"/apis/apps/v1/namespaces/{NS}/replicasets/{RS}"
LEASES = f"/apis/coordination.k8s.io/v1/namespaces/{HOME}/leases"
EVENTS = f"/apis/events.k8s.io/v1/namespaces/{NS}/events"


class _NoToken:
    def get_api_key_with_prefix(self, *_: Any, **__: Any) -> None:
        return None


class FakeApi:
    """Answers the responder's requests for one ready pod of a 3-replica ReplicaSet; keeps each request."""

    def __init__(self, *, labels: dict[str, str] | None) -> None:
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[Any] = []
        meta: dict[str, Any] = {
            "name": POD,
            "namespace": NS,
            "uid": UID,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": RS,
                    "uid": "rs-uid",
                    "controller": True,
                }
            ],
        }
        if labels is not None:
            meta["labels"] = labels
        self.pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {"nodeName": "node-1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
        self.replicaset = {
            "metadata": {
                "name": RS,
                "namespace": NS,
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "controller": True}
                ],
            },
            "spec": {"replicas": 3},
            "status": {"readyReplicas": 3},
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, path))
        self.bodies.append(json.loads(request.content) if request.content else None)
        match method, path:
            case "GET", p if p == POD_PATH:
                return httpx.Response(200, json=self.pod)
            case "GET", p if p == RS_PATH:
                return httpx.Response(200, json=self.replicaset)
            case "POST", p if p == LEASES:
                body = json.loads(request.content)
                body["metadata"]["resourceVersion"] = "1"
                return httpx.Response(201, json=body)
            case "PATCH" | "DELETE", p if p == POD_PATH:
                return httpx.Response(200, json=self.pod)
            case "POST", p if p == EVENTS:
                return httpx.Response(201, json=json.loads(request.content))
        return httpx.Response(
            404, json={"kind": "Status", "reason": "NotFound", "message": f"{method} {path}"}
        )


def _responder(api: FakeApi, action: dict[str, Any]) -> tuple[Responder, KubeClusterActions]:
    creds = Credentials("http://api.test", None, None, None, False, _NoToken())
    actions = KubeClusterActions(
        KubeClient(creds, transport=httpx.MockTransport(api)), reporting_instance="t"
    )
    rule = {"name": "shells", "match": {"rules": ["Terminal shell in container"]}, "actions": [action]}
    policy = Policy.model_validate({"mode": "enforce", "rules": [rule]})
    responder = Responder(
        policy=lambda: policy,
        own_namespace=HOME,
        telemetry=Telemetry(CollectorRegistry()),
        rates=RateTracker(max_tracked=100, ttl_seconds=900),
        actions=actions,
    )
    return responder, actions


def _alert() -> Alert:
    doc = {
        "rule": "Terminal shell in container",
        "priority": "Critical",
        "source": "syscall",
        "hostname": "node-1",
        "output_fields": {"k8s.ns.name": NS, "k8s.pod.name": POD, "k8s.pod.uid": UID},
    }
    return parse_one(doc, received=datetime.now(UTC))


async def _one_alert(api: FakeApi, action: dict[str, Any]) -> list[tuple[str, str]]:
    responder, actions = _responder(api, action)
    try:
        await responder.handle(_alert(), 0.0)
    finally:
        await actions.aclose()
    return api.requests


async def test_an_enforced_label_reads_the_pod_once_then_claims_and_patches() -> None:
    api = FakeApi(labels={"app": "web"})
    calls = await _one_alert(api, {"type": "label"})
    assert calls == [
        ("GET", POD_PATH),  # the one read: decisions, workload and the patch use it
        ("GET", RS_PATH),  # the workload (ReplicaSet -> Deployment), cached afterwards
        ("POST", LEASES),  # the cluster-wide claim
        ("PATCH", POD_PATH),  # the label: the action is applied here
        ("POST", EVENTS),  # the record, after the action
    ]
    patch = api.bodies[3]
    assert patch[0] == {"op": "test", "path": "/metadata/uid", "value": UID}  # still guarded by the UID
    assert {"op": "add", "path": "/metadata/labels", "value": {}} not in patch  # the labels are not replaced


async def test_an_enforced_delete_reads_the_pod_once_and_its_replicaset_fresh() -> None:
    api = FakeApi(labels={"app": "web"})
    calls = await _one_alert(api, {"type": "delete", "gracePeriodSeconds": 0})
    assert calls == [
        ("GET", POD_PATH),
        ("GET", RS_PATH),  # the workload, cached afterwards
        ("GET", RS_PATH),  # ready replicas for minHealthyReplicas: read fresh for every removal
        ("POST", LEASES),
        ("DELETE", POD_PATH),
        ("POST", EVENTS),
    ]
    assert api.bodies[4]["preconditions"] == {"uid": UID}


async def test_a_second_alert_about_the_workload_skips_the_cached_owner_but_not_the_fresh_reads() -> None:
    api = FakeApi(labels={"app": "web"})
    responder, actions = _responder(api, {"type": "delete", "gracePeriodSeconds": 0})
    try:
        await responder.handle(_alert(), 0.0)
        responder.dedupe = type(responder.dedupe)(lambda: 0.0)  # a new window: the alert is decided again
        api.requests.clear()
        await responder.handle(_alert(), 0.0)
    finally:
        await actions.aclose()
    assert api.requests == [
        ("GET", POD_PATH),  # never from a cache: the decisions need the pod as it is now
        ("GET", RS_PATH),  # the replica floor, fresh
        ("POST", LEASES),
        ("DELETE", POD_PATH),
        ("POST", EVENTS),
    ]


@pytest.mark.parametrize("labels", [None, {}])
async def test_a_pod_without_labels_is_read_again_before_its_label_map_is_created(
    labels: dict[str, str] | None,
) -> None:
    # Creating the map replaces whatever is there: the read must be as close to the patch as today.
    api = FakeApi(labels=labels)
    calls = await _one_alert(api, {"type": "label"})
    assert calls == [
        ("GET", POD_PATH),
        ("GET", RS_PATH),
        ("POST", LEASES),
        ("GET", POD_PATH),
        ("PATCH", POD_PATH),
        ("POST", EVENTS),
    ]
    assert {"op": "add", "path": "/metadata/labels", "value": {}} in api.bodies[4]
