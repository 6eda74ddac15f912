"""A fake of every ``ClusterActions`` role: pods and owners in dicts, calls recorded, outcomes scriptable."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from teflon.common.kube import JSON, KubeError
from teflon.webhook.actions import ActionResult, Outcome
from teflon.webhook.claims import Claim, claim_name
from teflon.webhook.objects import PodRef
from teflon.webhook.quarantine import QuarantineOrder


@dataclass
class FakeLease:
    holder: str
    acquired: float
    seconds: float
    version: int
    rule: str


@dataclass
class FakeLeases:
    """Claim Leases by (namespace, name), with the API server's create-or-409 and resourceVersion checks."""

    clock: Callable[[], float] = time.monotonic
    items: dict[tuple[str, str], FakeLease] = field(default_factory=dict)
    versions: int = 0
    failure: KubeError | None = None  # raised by every claim call while set

    def expired(self, lease: FakeLease) -> bool:
        return self.clock() >= lease.acquired + lease.seconds

    def next_version(self) -> int:
        self.versions += 1
        return self.versions


@dataclass
class FakeActions:
    pods: dict[tuple[str, str], JSON] = field(default_factory=dict)
    owners: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    calls: list[tuple[str, PodRef, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, ActionResult] = field(default_factory=dict)
    leases: FakeLeases = field(default_factory=FakeLeases)
    claims: list[tuple[str, str, str]] = field(default_factory=list)  # (holder, lease name, result)
    records: dict[tuple[str, str], JSON] = field(default_factory=dict)  # quarantine record Leases
    pod_gets: int = 0
    fail_pod_get: bool = False
    is_reachable: bool = True
    closed: bool = False

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        node: str = "node-1",
        labels: dict[str, str] | None = None,
        owner: tuple[str, str, str] | None = ("apps/v1", "ReplicaSet", "web-5d8f"),
        annotations: dict[str, str] | None = None,
        ready: bool = True,
        uid: str | None = None,
    ) -> JSON:
        meta: JSON = {
            "name": name,
            "namespace": namespace,
            "uid": uid or str(uuid.uuid4()),
            "labels": labels or {},
        }
        if annotations:
            meta["annotations"] = annotations
        if owner is not None:
            api_version, kind, owner_name = owner
            meta["ownerReferences"] = [
                {
                    "apiVersion": api_version,
                    "kind": kind,
                    "name": owner_name,
                    "uid": "o-1",
                    "controller": True,
                }
            ]
        pod = {
            "metadata": meta,
            "spec": {"nodeName": node},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
        }
        self.pods[(namespace, name)] = pod
        return pod

    def add_owner(self, namespace: str, kind: str, name: str, obj: JSON) -> None:
        self.owners[(namespace, kind, name)] = obj

    def replicaset(
        self, namespace: str, name: str, *, deployment: str | None = "web", ready: int = 3, replicas: int = 3
    ) -> None:
        meta: JSON = {"name": name, "namespace": namespace}
        if deployment:
            meta["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "controller": True}
            ]
        self.add_owner(
            namespace,
            "ReplicaSet",
            name,
            {"metadata": meta, "spec": {"replicas": replicas}, "status": {"readyReplicas": ready}},
        )

    def actions_called(self) -> list[str]:
        return [name for name, _ref, _arg in self.calls]

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        self.pod_gets += 1
        if self.fail_pod_get:
            raise KubeError("GET pod: connection refused")
        return self.pods.get((namespace, name))

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        return self.owners.get((namespace, kind, name))

    def _outcome(self, name: str) -> ActionResult:
        return self.outcomes.get(name, ActionResult(Outcome.APPLIED, name))

    async def label_pod(
        self, pod: PodRef, labels: dict[str, str], *, has_labels: bool = False
    ) -> ActionResult:
        self.calls.append(("label", pod, labels))
        return self._outcome("label")

    async def isolate_pod(self, pod: PodRef) -> ActionResult:
        self.calls.append(("isolate", pod, None))
        return self._outcome("isolate")

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        self.calls.append(("evict", pod, grace_period_seconds))
        return self._outcome("evict")

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        self.calls.append(("delete", pod, grace_period_seconds))
        return self._outcome("delete")

    async def quarantine_pod(self, order: QuarantineOrder) -> ActionResult:
        self.calls.append(("quarantine", order.pod, order))
        return self._outcome("quarantine")

    async def quarantine_records(self, namespace: str) -> list[JSON]:
        return [r for (ns, _name), r in self.records.items() if ns == namespace]

    async def patch_record(self, namespace: str, name: str, patch: list[JSON]) -> bool:
        record = self.records.get((namespace, name))
        if record is None or patch[0]["value"] != record["metadata"]["resourceVersion"]:
            return False
        notes = record["metadata"]["annotations"]
        for op in patch[1:]:
            key = op["path"].rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
            if op["op"] == "remove":
                notes.pop(key, None)
            elif op["path"].startswith("/metadata/annotations/"):
                notes[key] = op["value"]
        record["metadata"]["resourceVersion"] = str(int(record["metadata"]["resourceVersion"]) + 1)
        self.calls.append(("patch_record", PodRef(namespace, name, ""), patch))
        return True

    async def delete_record(self, namespace: str, name: str, resource_version: str) -> None:
        self.records.pop((namespace, name), None)

    async def mark_expiry(self, namespace: str, name: str, uid: str, expires: str) -> None:
        pod = self.pods.get((namespace, name))
        if pod is not None and pod["metadata"]["uid"] == uid:
            pod["metadata"].setdefault("annotations", {})["teflon.io/quarantine-expires"] = expires

    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        self.events.append({"pod": pod, "action": action, "reason": reason, "note": note, "warning": warning})

    async def claim(
        self, pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float
    ) -> Claim | None:
        book = self.leases
        if book.failure is not None:
            self.claims.append((holder, "", "error"))
            raise book.failure
        key = (namespace, claim_name(pod.uid, action))
        existing = book.items.get(key)
        # Yield between the read and the write, as the API round trip does: only the versions decide.
        version = existing.version if existing is not None else None
        await asyncio.sleep(0)
        current = book.items.get(key)
        if current is not None and (current.version != version or not book.expired(current)):
            self.claims.append((holder, key[1], "held"))
            return None
        lease = FakeLease(holder, book.clock(), seconds, book.next_version(), rule)
        book.items[key] = lease
        self.claims.append((holder, key[1], "claimed"))
        return Claim(namespace, key[1], str(lease.version))

    async def release(self, claim: Claim) -> None:
        key = (claim.namespace, claim.name)
        lease = self.leases.items.get(key)
        if lease is not None and str(lease.version) == claim.resource_version:
            del self.leases.items[key]

    async def sweep_claims(self, namespace: str) -> int:
        gone = [k for k, v in self.leases.items.items() if k[0] == namespace and self.leases.expired(v)]
        for key in gone:
            del self.leases.items[key]
        return len(gone)

    async def reachable(self) -> bool:
        return self.is_reachable

    async def aclose(self) -> None:
        self.closed = True
