"""``KubeClusterActions`` and the responder against the real kube-apiserver of ``make cluster-up``.

Pods run on kwok's fake nodes; the garbage collector, the disruption controller and the ReplicaSet
controller are the real kube-controller-manager, so UID preconditions, PodDisruptionBudgets, owner
references and Event validation are the API server's own behaviour, not a model of it.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from teflon.common.kube import JSON, KubeClient, NotFound
from teflon.common.wire import RateScope, Signal
from teflon.webhook.actions import ISOLATE_LABEL, Outcome, isolation_policy
from teflon.webhook.alert import Alert, parse_one
from teflon.webhook.claims import claim_name
from teflon.webhook.kube_actions import REPORTING_CONTROLLER, KubeClusterActions
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Policy
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry
from tests.harness.cluster import Cluster
from tests.harness.falco import alert_doc

pytestmark = pytest.mark.cluster

T = TypeVar("T")
NODE = "teflon-worker-1"


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, seconds: float = 60) -> T:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {seconds:g}s waiting for {what}")
        await asyncio.sleep(0.3)


def pod_manifest(name: str, labels: dict[str, str] | None = None) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name} if labels is None else labels},
        "spec": {
            "nodeName": NODE,  # bound directly: no scheduling delay
            "containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}],
            "terminationGracePeriodSeconds": 5,
        },
    }


async def create_pod(
    kube: KubeClient, namespace: str, name: str, labels: dict[str, str] | None = None
) -> PodRef:
    pod = await kube.post(f"/api/v1/namespaces/{namespace}/pods", pod_manifest(name, labels))
    return PodRef(namespace, name, pod["metadata"]["uid"])


async def create_deployment(kube: KubeClient, namespace: str, name: str, replicas: int) -> list[JSON]:
    labels = {"app": name}
    await kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1.0.0"}]},
                },
            },
        },
    )

    async def ready() -> list[JSON] | None:
        pods = await kube.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": f"app={name}"})
        running = [
            p
            for p in pods["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        return running if len(running) == replicas else None

    return await eventually(ready, f"{replicas} ready pods of {name}")


async def get_pod(kube: KubeClient, ref: PodRef) -> JSON | None:
    try:
        return await kube.get(f"/api/v1/namespaces/{ref.namespace}/pods/{ref.name}")
    except NotFound:
        return None


def ref_of(pod: JSON) -> PodRef:
    meta = pod["metadata"]
    return PodRef(meta["namespace"], meta["name"], meta["uid"])


@pytest.fixture
def home(cluster: Cluster) -> Iterator[str]:
    """The webhook's own namespace, where its claim Leases live (a second namespace for the test)."""
    name = f"t-home-{secrets.token_hex(4)}"
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def actions(kube: KubeClient) -> KubeClusterActions:
    return KubeClusterActions(kube, reporting_instance="teflon-webhook-test", backoff_seconds=0.05)


async def test_delete_with_a_stale_uid_is_refused_and_with_the_right_uid_deletes(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "victim")
    stale = PodRef(namespace, "victim", "00000000-0000-0000-0000-000000000000")
    replaced = await actions.delete_pod(stale, 0)
    assert replaced.outcome is Outcome.REPLACED
    assert "does not match the UID in record" in replaced.detail
    assert await get_pod(kube, ref) is not None
    assert (await actions.delete_pod(ref, 0)).outcome is Outcome.APPLIED
    await eventually(lambda: _gone(kube, ref), "the pod to be removed")
    assert (await actions.delete_pod(ref, 0)).outcome is Outcome.GONE


async def _gone(kube: KubeClient, ref: PodRef) -> bool:
    return await get_pod(kube, ref) is None


async def test_a_replacement_pod_with_the_same_name_is_never_deleted(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    old = await create_pod(kube, namespace, "web-0")
    await kube.delete(f"/api/v1/namespaces/{namespace}/pods/web-0", {"gracePeriodSeconds": 0})
    await eventually(lambda: _gone(kube, old), "the old pod to be removed")
    new = await create_pod(kube, namespace, "web-0")
    result = await actions.delete_pod(old, 0)
    assert result.outcome is Outcome.REPLACED
    assert (await get_pod(kube, new)) is not None
    assert (await actions.label_pod(old, {"teflon.io/quarantined": "true"})).outcome is Outcome.REPLACED


async def test_eviction_blocked_by_a_pod_disruption_budget_is_reported_as_blocked(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    (pod,) = await create_deployment(kube, namespace, "guarded", 1)
    await kube.post(
        f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )

    async def observed() -> bool:
        pdb = await kube.get(f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/guarded")
        status = pdb.get("status", {})
        return bool(
            status.get("observedGeneration") == pdb["metadata"]["generation"]
            and status.get("currentHealthy") == 1
        )

    await eventually(observed, "the disruption controller to observe the PDB")
    result = await actions.evict_pod(ref_of(pod), None)
    assert result.outcome is Outcome.BLOCKED
    assert "disruption budget" in result.detail
    assert (await get_pod(kube, ref_of(pod)))["metadata"].get("deletionTimestamp") is None  # type: ignore[index]


async def test_eviction_without_a_budget_in_the_way_evicts_the_pod(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "evictable")
    assert (await actions.evict_pod(ref, 0)).outcome is Outcome.APPLIED
    await eventually(lambda: _gone(kube, ref), "the evicted pod to be removed")
    assert (await actions.evict_pod(ref, 0)).outcome is Outcome.GONE


async def test_label_adds_labels_to_a_pod_with_or_without_existing_labels(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "plain", labels={})
    result = await actions.label_pod(ref, {"teflon.io/quarantined": "true", "teflon.io/rule": "shells"})
    assert result.outcome is Outcome.APPLIED
    labels = (await get_pod(kube, ref))["metadata"]["labels"]  # type: ignore[index]
    assert labels == {"teflon.io/quarantined": "true", "teflon.io/rule": "shells"}


async def test_isolation_selects_only_that_pod_and_is_garbage_collected_with_it(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "compromised", labels={"app": "shop"})
    sibling = await create_pod(kube, namespace, "sibling", labels={"app": "shop"})
    assert (await actions.isolate_pod(ref)).outcome is Outcome.APPLIED
    assert (await actions.isolate_pod(ref)).outcome is Outcome.APPLIED  # idempotent
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/teflon-isolate-compromised"
    policy = await kube.get(path)
    assert policy["spec"]["podSelector"] == {"matchLabels": {ISOLATE_LABEL: ref.uid}}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]
    assert "egress" not in policy["spec"]
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", "compromised", ref.uid)
    selected = await kube.get(
        f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": f"{ISOLATE_LABEL}={ref.uid}"}
    )
    assert [p["metadata"]["name"] for p in selected["items"]] == ["compromised"]
    assert ISOLATE_LABEL not in (await get_pod(kube, sibling))["metadata"]["labels"]  # type: ignore[index]

    await kube.delete(f"/api/v1/namespaces/{namespace}/pods/compromised", {"gracePeriodSeconds": 0})

    async def collected() -> bool:
        try:
            await kube.get(path)
        except NotFound:
            return True
        return False

    await eventually(collected, "the garbage collector to delete the NetworkPolicy", seconds=90)


async def test_events_are_recorded_with_a_valid_micro_time_and_the_reporting_controller(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "audited")
    await actions.record_event(ref, action="Evict", reason="TeflonDryRun", note="would evict (dry run)")
    events = await kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    (event,) = [e for e in events["items"] if e["regarding"]["name"] == "audited"]
    assert event["reportingController"] == REPORTING_CONTROLLER
    assert event["reportingInstance"] == "teflon-webhook-test"
    assert (event["action"], event["reason"], event["type"]) == ("Evict", "TeflonDryRun", "Warning")
    assert event["regarding"]["uid"] == ref.uid
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event["eventTime"])


async def test_the_responder_enforces_a_policy_on_a_real_deployment_pod(
    kube: KubeClient, namespace: str, home: str, actions: KubeClusterActions
) -> None:
    pods = await create_deployment(kube, namespace, "shop", 3)
    target = pods[0]
    ref = ref_of(target)
    policy = Policy.model_validate(
        {
            "mode": "enforce",
            "rules": [
                {
                    "name": "shells",
                    "match": {"rules": ["Terminal shell in container"]},
                    "actions": [
                        {"type": "label"},
                        {"type": "isolate"},
                        {"type": "delete", "gracePeriodSeconds": 0},
                    ],
                }
            ],
        }
    )
    registry = CollectorRegistry()
    rates = RateTracker(max_tracked=100, ttl_seconds=900)
    responder = Responder(
        policy=lambda: policy,
        own_namespace=home,
        telemetry=Telemetry(registry),
        rates=rates,
        actions=actions,
    )
    alert = parse_one(
        {
            "rule": "Terminal shell in container",
            "priority": "Notice",
            "source": "syscall",
            "hostname": target["spec"]["nodeName"],
            "output_fields": {"k8s.ns.name": namespace, "k8s.pod.name": ref.name, "k8s.pod.uid": ref.uid},
        },
        received=datetime.now(UTC),
    )
    await responder.handle(alert, 0.0)
    for action in ("label", "isolate", "delete"):
        sample = {"action": action, "result": "applied", "mode": "enforce", "namespace": namespace}
        assert registry.get_sample_value("teflon_webhook_actions_total", sample) == 1, action
    await eventually(lambda: _gone(kube, ref), "the compromised pod to be deleted")
    (workload,) = rates.entries(RateScope.WORKLOAD, Signal.ALERTS, 60)
    assert (workload.kind, workload.name, workload.count) == ("Deployment", "shop", 1)
    events = await kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    ours = sorted(e["action"] for e in events["items"] if e["reportingController"] == REPORTING_CONTROLLER)
    assert ours == ["Delete", "Isolate", "Label"]


async def test_a_pod_replaced_between_read_and_patch_is_reported_as_replaced(
    kube: KubeClient, namespace: str, actions: KubeClusterActions, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await create_pod(kube, namespace, "racy")
    stale_read = await get_pod(kube, old)
    await kube.delete(f"/api/v1/namespaces/{namespace}/pods/racy", {"gracePeriodSeconds": 0})
    await eventually(lambda: _gone(kube, old), "the old pod to be removed")
    new = await create_pod(kube, namespace, "racy")
    reads: list[str] = []
    real_get_pod = actions.pods.get_pod

    async def racing_get_pod(namespace: str, name: str) -> JSON | None:
        # The first read happened before the swap; the API server's UID `test` must catch it.
        reads.append(name)
        return stale_read if len(reads) == 1 else await real_get_pod(namespace, name)

    monkeypatch.setattr(actions.pods, "get_pod", racing_get_pod)  # the reader the responder role uses
    result = await actions.label_pod(old, {"teflon.io/quarantined": "true"})
    assert result.outcome is Outcome.REPLACED
    assert len(reads) == 2
    labels = ((await get_pod(kube, new)) or {})["metadata"].get("labels", {})
    assert "teflon.io/quarantined" not in labels


async def test_an_isolation_policy_left_by_an_earlier_pod_of_the_same_name_is_repointed(
    kube: KubeClient, namespace: str, actions: KubeClusterActions
) -> None:
    ref = await create_pod(kube, namespace, "web-0")
    leftover = isolation_policy(PodRef(namespace, "web-0", "11111111-2222-3333-4444-555555555555"))
    del leftover["metadata"]["ownerReferences"]  # as if the garbage collector had not caught up yet
    await kube.post(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies", leftover)
    assert (await actions.isolate_pod(ref)).outcome is Outcome.APPLIED
    policy = await kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/teflon-isolate-web-0"
    )
    assert policy["spec"]["podSelector"] == {"matchLabels": {ISOLATE_LABEL: ref.uid}}
    assert [o["uid"] for o in policy["metadata"]["ownerReferences"]] == [ref.uid]


def shell_alert(namespace: str, ref: PodRef, node: str = NODE) -> Alert:
    return parse_one(alert_doc(namespace, ref.name, uid=ref.uid, hostname=node), received=datetime.now(UTC))


async def test_two_replicas_racing_on_one_pod_label_it_exactly_once(
    kube: KubeClient, namespace: str, home: str
) -> None:
    (target,) = await create_deployment(kube, namespace, "shop", replicas=1)
    ref = ref_of(target)
    policy = Policy.model_validate(
        {
            "mode": "enforce",
            "rules": [{"name": "shells", "actions": [{"type": "label"}]}],
        }
    )
    replicas = []
    for name in ("teflon-webhook-a", "teflon-webhook-b"):
        registry = CollectorRegistry()
        responder = Responder(
            policy=lambda: policy,
            own_namespace=home,
            telemetry=Telemetry(registry),
            rates=RateTracker(max_tracked=100, ttl_seconds=900),
            actions=KubeClusterActions(kube, reporting_instance=name),
            identity=name,
        )
        replicas.append((name, registry, responder))
    alert = shell_alert(namespace, ref, target["spec"]["nodeName"])
    for _ in range(3):
        await asyncio.gather(*(responder.handle(alert, 0.0) for _n, _r, responder in replicas))

    def count(registry: CollectorRegistry, result: str) -> float:
        labels = {"action": "label", "result": result, "mode": "enforce", "namespace": namespace}
        return registry.get_sample_value("teflon_webhook_actions_total", labels) or 0.0

    applied = {name: count(registry, "applied") for name, registry, _r in replicas}
    assert sorted(applied.values()) == [0.0, 1.0]
    (winner,) = [name for name, n in applied.items() if n == 1]
    loser = next(registry for name, registry, _r in replicas if name != winner)
    assert count(loser, "skipped") >= 1
    assert loser.get_sample_value("teflon_webhook_skips_total", {"reason": "duplicate"}) == 1
    lease = await kube.get(
        f"/apis/coordination.k8s.io/v1/namespaces/{home}/leases/{claim_name(ref.uid, 'label')}"
    )
    assert lease["spec"]["holderIdentity"] == winner
    assert lease["spec"]["leaseDurationSeconds"] == 300
    assert lease["metadata"]["labels"]["teflon.io/claim"] == "true"
    assert lease["metadata"]["annotations"]["teflon.io/pod"] == ref.name
    events = await kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    labels = [e for e in events["items"] if e["reportingController"] == REPORTING_CONTROLLER]
    assert [(e["action"], e["reportingInstance"]) for e in labels] == [("Label", winner)]


async def test_an_expired_claim_is_retaken_by_exactly_one_of_two_racing_replicas_and_swept(
    kube: KubeClient, namespace: str, home: str
) -> None:
    ref = PodRef(namespace, "web-0", "6a1c1d0e-0000-4000-8000-000000000001")
    fresh = PodRef(namespace, "web-1", "6a1c1d0e-0000-4000-8000-000000000002")
    past = datetime.now(UTC) - timedelta(minutes=10)
    earlier = KubeClusterActions(kube, reporting_instance="old", now=lambda: past)
    assert await earlier.claim(ref, "delete", holder="old", namespace=home, rule="r", seconds=60)
    a = KubeClusterActions(kube, reporting_instance="a")
    b = KubeClusterActions(kube, reporting_instance="b")
    won = await asyncio.gather(
        a.claim(ref, "delete", holder="a", namespace=home, rule="r", seconds=60),
        b.claim(ref, "delete", holder="b", namespace=home, rule="r", seconds=60),
    )
    assert sum(1 for claim in won if claim is not None) == 1
    # Held now: neither replica, nor the one that held it before, can take it again.
    assert await b.claim(ref, "delete", holder="b", namespace=home, rule="r", seconds=60) is None
    assert await earlier.claim(ref, "delete", holder="old", namespace=home, rule="r", seconds=60) is None

    assert await earlier.claim(fresh, "label", holder="old", namespace=home, rule="r", seconds=60)
    assert await a.sweep_claims(home) == 1  # the expired one of "old"; the re-taken one stays
    names = {
        item["metadata"]["name"]
        for item in (await kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{home}/leases"))["items"]
    }
    assert names == {claim_name(ref.uid, "delete")}


async def test_without_a_namespace_for_claims_the_responder_does_not_act(
    kube: KubeClient, namespace: str
) -> None:
    ref = await create_pod(kube, namespace, "web-0")
    policy = Policy.model_validate(
        {"mode": "enforce", "allowBarePods": True, "rules": [{"name": "r", "actions": [{"type": "label"}]}]}
    )
    registry = CollectorRegistry()
    responder = Responder(
        policy=lambda: policy,
        own_namespace=f"t-missing-{secrets.token_hex(4)}",
        telemetry=Telemetry(registry),
        rates=RateTracker(max_tracked=100, ttl_seconds=900),
        actions=KubeClusterActions(kube, reporting_instance="x", backoff_seconds=0.01),
    )
    await responder.handle(shell_alert(namespace, ref), 0.0)
    labels = {"action": "label", "result": "error", "mode": "enforce", "namespace": namespace}
    assert registry.get_sample_value("teflon_webhook_actions_total", labels) == 1
    pod = await get_pod(kube, ref)
    assert "teflon.io/quarantined" not in ((pod or {})["metadata"].get("labels") or {})
