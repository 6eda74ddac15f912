"""Quarantine on the real kube-apiserver and kube-controller-manager of ``make cluster-up``.

The ReplicaSet controller (orphaning and replacing), the EndpointSlice controller (Service
membership), the garbage collector and RBAC are the real ones; the pods run on kwok's fake nodes.
Requests go through ``scripts/kubectl-teflon`` with kubectl, as an admin would make them, under
impersonated identities, so who may release or extend is decided by the API server's RBAC.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from teflon.common.kube import JSON, KubeClient
from teflon.webhook.actions import ISOLATE_LABEL
from teflon.webhook.keeper import sweep_quarantines
from teflon.webhook.kube_actions import REPORTING_CONTROLLER, KubeClusterActions
from teflon.webhook.objects import PodRef
from teflon.webhook.policy import Policy
from teflon.webhook.quarantine import AT, EXPIRES, QUARANTINE_LABEL, REMOVED_LABELS, record_name
from teflon.webhook.rates import RateTracker
from teflon.webhook.responder import Responder
from teflon.webhook.telemetry import Telemetry
from tests.harness.cluster import Cluster

from .test_cluster_actions import create_deployment, eventually, get_pod, ref_of, shell_alert

pytestmark = pytest.mark.cluster

PLUGIN = Path(__file__).resolve().parents[2] / "scripts" / "kubectl-teflon"


def quarantine_policy(**action: Any) -> Policy:
    return Policy.model_validate(
        {
            "mode": "enforce",
            "minHealthyReplicas": 0,
            "rules": [
                {
                    "name": "shells",
                    "match": {"rules": ["Terminal shell in container"]},
                    "actions": [{"type": "quarantine", "ttlSeconds": 600, **action}],
                }
            ],
        }
    )


def responder(actions: KubeClusterActions, home: str, policy: Policy) -> tuple[Responder, CollectorRegistry]:
    registry = CollectorRegistry()
    r = Responder(
        policy=lambda: policy,
        own_namespace=home,
        telemetry=Telemetry(registry),
        rates=RateTracker(max_tracked=100, ttl_seconds=900),
        actions=actions,
        identity="teflon-webhook-test",
    )
    return r, registry


@pytest.fixture
def home(cluster: Cluster) -> Iterator[str]:
    """teflon's namespace: the records live here, and the admin Role of the chart is created here."""
    name = f"t-qhome-{secrets.token_hex(4)}"
    cluster.request(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    rbac = "rbac.authorization.k8s.io/v1"
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/roles",
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": "quarantine-admin"},
            "rules": [
                {
                    "apiGroups": ["coordination.k8s.io"],
                    "resources": ["leases"],
                    "verbs": ["get", "list", "patch"],
                }
            ],
        },
    )
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{name}/rolebindings",
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": "quarantine-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "quarantine-admin"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    yield name
    cluster.request("DELETE", f"/api/v1/namespaces/{name}")


@dataclass
class Stage:
    """A workload namespace, teflon's namespace with the admin Role bound to alice, and the roles."""

    kube: KubeClient
    namespace: str
    home: str
    actions: KubeClusterActions
    cluster: Cluster
    tmp: Path

    def plugin(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl teflon quarantine ...`` as ``user`` (impersonated through the kubeconfig)."""
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        for entry in config["users"]:
            entry["user"]["as"] = user
        path = self.tmp / f"kubeconfig-{user}"
        path.write_text(yaml.safe_dump(config))
        env = {"KUBECONFIG": str(path), "TEFLON_NAMESPACE": self.home}
        return self.cluster.run([str(PLUGIN), "quarantine", *args], env=env, check=False)

    def refused(self, user: str, *args: str) -> bool:
        proc = self.plugin(user, *args)
        return proc.returncode != 0 and "forbidden" in proc.stderr.lower()

    async def sweep(self, now: datetime | None = None) -> list[tuple[str, str]]:
        swept = await sweep_quarantines(
            self.actions, self.home, now or datetime.now(UTC), protected=lambda ns: ns == self.home
        )
        return [(s.due.value, s.outcome) for s in swept]

    async def events(self) -> list[JSON]:
        doc = await self.kube.get(f"/apis/events.k8s.io/v1/namespaces/{self.namespace}/events")
        return [e for e in doc["items"] if e["reportingController"] == REPORTING_CONTROLLER]

    async def records(self) -> set[str]:
        doc = await self.kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{self.home}/leases")
        return {item["metadata"]["name"] for item in doc["items"]}


@pytest.fixture
def stage(kube: KubeClient, namespace: str, home: str, cluster: Cluster, tmp_path: Path) -> Stage:
    actions = KubeClusterActions(kube, reporting_instance="teflon-webhook-test", backoff_seconds=0.05)
    return Stage(kube, namespace, home, actions, cluster, tmp_path)


async def service_endpoints(kube: KubeClient, namespace: str, service: str) -> set[str]:
    slices = await kube.get(
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={service}"},
    )
    return {
        ep["targetRef"]["uid"]
        for s in slices["items"]
        for ep in s.get("endpoints") or []
        if ep.get("targetRef") and (ep.get("conditions") or {}).get("ready") is not False
    }


async def test_a_quarantined_deployment_pod_is_orphaned_isolated_out_of_service_replaced_and_kept(
    stage: Stage,
) -> None:
    kube, namespace = stage.kube, stage.namespace
    pods = await create_deployment(kube, namespace, "shop", 2)
    await kube.post(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "shop"},
            "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80}]},
        },
    )
    uids = {p["metadata"]["uid"] for p in pods}

    async def all_in_service() -> bool:
        return await service_endpoints(kube, namespace, "shop") == uids

    await eventually(all_in_service, "both pods in the Service's EndpointSlices")
    target = pods[0]
    ref = ref_of(target)
    r, registry = responder(stage.actions, stage.home, quarantine_policy())
    started = datetime.now(UTC)
    await r.handle(shell_alert(namespace, ref, target["spec"]["nodeName"]), 0.0)
    sample = {"action": "quarantine", "result": "applied", "mode": "enforce", "namespace": namespace}
    notes = [e["note"] for e in await stage.events()]
    assert registry.get_sample_value("teflon_webhook_actions_total", sample) == 1, notes

    kept = await get_pod(kube, ref)
    assert kept is not None
    meta = kept["metadata"]
    assert not {"app", "pod-template-hash"} & set(meta["labels"])
    assert meta["labels"][QUARANTINE_LABEL] == "true"
    assert meta["labels"][ISOLATE_LABEL] == ref.uid
    assert set(yaml.safe_load(meta["annotations"][REMOVED_LABELS])) == {"app", "pod-template-hash"}
    assert meta["annotations"][EXPIRES] > meta["annotations"][AT]

    async def orphaned() -> bool:
        pod = await get_pod(kube, ref)
        owners = (pod or {}).get("metadata", {}).get("ownerReferences") or []
        return pod is not None and not any(o.get("controller") for o in owners)

    async def replaced() -> set[str] | None:
        listed = await kube.get(f"/api/v1/namespaces/{namespace}/pods", params={"labelSelector": "app=shop"})
        ready = {
            p["metadata"]["uid"]
            for p in listed["items"]
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        }
        return ready if len(ready) == 2 and ref.uid not in ready else None

    await eventually(orphaned, "the ReplicaSet to release the quarantined pod", seconds=30)
    fresh = await eventually(replaced, "a ready replacement", seconds=30)
    print(f"replacement ready {(datetime.now(UTC) - started).total_seconds():.1f}s after the alert")

    async def out_of_service() -> bool:
        return await service_endpoints(kube, namespace, "shop") == fresh

    await eventually(out_of_service, "the EndpointSlices to hold the two clean pods only", seconds=30)
    isolation = await kube.get(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/teflon-isolate-{ref.name}"
    )
    assert isolation["spec"]["podSelector"] == {"matchLabels": {ISOLATE_LABEL: ref.uid}}
    notes = [e["note"] for e in await stage.events()]
    assert any("detached from ReplicaSet" in n and "kept until" in n for n in notes), notes

    # A later alert about the kept pod changes nothing: it is evidence now.
    await r.handle(shell_alert(namespace, ref, target["spec"]["nodeName"]), 0.0)
    assert registry.get_sample_value("teflon_webhook_actions_total", sample) == 1
    await _list_extend_expire(stage, ref, meta["annotations"][EXPIRES])


async def _list_extend_expire(stage: Stage, ref: PodRef, expires: str) -> None:
    """list and extend as alice (bound) and mallory (not), then the TTL sweep."""
    listed = stage.plugin("alice", "list")
    assert listed.returncode == 0, listed.stderr
    assert record_name(ref.uid) in listed.stdout
    assert ref.name in listed.stdout
    assert stage.refused("mallory", "list")
    assert stage.refused("mallory", "extend", stage.namespace, ref.name, "3600")
    extend = stage.plugin("alice", "extend", stage.namespace, ref.name, "3600")
    assert extend.returncode == 0, extend.stderr
    assert await stage.sweep() == [("extend", "extended")]
    kept = await get_pod(stage.kube, ref)
    assert kept is not None
    assert kept["metadata"]["annotations"][EXPIRES] > expires
    assert "TeflonQuarantineExtended" in {e["reason"] for e in await stage.events()}

    # Not yet due: kept. At its (extended) TTL: deleted, by UID, and the record with it.
    assert await stage.sweep() == []
    assert await stage.sweep(datetime.now(UTC) + timedelta(seconds=600 + 3600 + 5)) == [("expire", "applied")]

    async def gone() -> bool:
        return await get_pod(stage.kube, ref) is None

    await eventually(gone, "the quarantined pod to be deleted at its TTL")
    assert record_name(ref.uid) not in await stage.records()


async def test_release_deletes_now_and_only_for_an_allowed_identity_never_from_the_pods_own_annotation(
    stage: Stage,
) -> None:
    pods = await create_deployment(stage.kube, stage.namespace, "cart", 2)
    target = pods[0]
    ref = ref_of(target)
    r, _registry = responder(stage.actions, stage.home, quarantine_policy())
    await r.handle(shell_alert(stage.namespace, ref, target["spec"]["nodeName"]), 0.0)
    # The workload (or anyone who may patch pods in its namespace) writes the request on the pod: ignored.
    await stage.kube.patch(
        f"/api/v1/namespaces/{stage.namespace}/pods/{ref.name}",
        {"metadata": {"annotations": {"teflon.io/release": "true", "teflon.io/extend-seconds": "999999"}}},
        patch_type="merge",
    )
    assert await stage.sweep() == []
    assert stage.refused("mallory", "release", stage.namespace, ref.name)
    assert await stage.sweep() == []
    assert await get_pod(stage.kube, ref) is not None

    released = stage.plugin("alice", "release", stage.namespace, ref.name)
    assert released.returncode == 0, released.stderr
    assert await stage.sweep() == [("release", "applied")]

    async def gone() -> bool:
        return await get_pod(stage.kube, ref) is None

    await eventually(gone, "the released pod to be deleted")
    assert "TeflonQuarantineReleased" in {e["reason"] for e in await stage.events()}


async def test_a_statefulset_pod_falls_back_to_isolation_and_stays_in_its_statefulset(stage: Stage) -> None:
    kube, namespace, home, actions = stage.kube, stage.namespace, stage.home, stage.actions
    labels = {"app": "db"}
    await kube.post(
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": "registry.invalid/db:1.0.0"}]},
                },
            },
        },
    )

    async def running() -> JSON | None:
        pod = await get_pod(kube, ref_of({"metadata": {"namespace": namespace, "name": "db-0", "uid": ""}}))
        ready = pod is not None and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
        )
        return pod if ready else None

    target = await eventually(running, "db-0 ready")
    ref = ref_of(target)
    r, registry = responder(actions, home, quarantine_policy())
    await r.handle(shell_alert(namespace, ref, target["spec"]["nodeName"]), 0.0)
    sample = {"action": "quarantine", "result": "applied", "mode": "enforce", "namespace": namespace}
    assert registry.get_sample_value("teflon_webhook_actions_total", sample) == 1
    pod = await get_pod(kube, ref)
    assert pod is not None
    assert pod["metadata"]["labels"]["app"] == "db"  # still the StatefulSet's
    assert pod["metadata"]["labels"][ISOLATE_LABEL] == ref.uid
    assert AT not in (pod["metadata"].get("annotations") or {})
    events = await kube.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events")
    notes = [e["note"] for e in events["items"] if e["reportingController"] == REPORTING_CONTROLLER]
    assert any(
        "StatefulSet pod cannot be replaced under its name while it is kept: isolate instead" in n
        for n in notes
    )
    leases = await kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{home}/leases")
    assert record_name(ref.uid) not in {item["metadata"]["name"] for item in leases["items"]}
