"""A ``ClusterActions`` fake: pods and owners in dicts, every call recorded, outcomes scriptable."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from teflon.common.kube import JSON, KubeError
from teflon.webhook.actions import ActionResult, Outcome, PodRef


@dataclass
class FakeActions:
    pods: dict[tuple[str, str], JSON] = field(default_factory=dict)
    owners: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    calls: list[tuple[str, PodRef, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, ActionResult] = field(default_factory=dict)
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

    async def label_pod(self, pod: PodRef, labels: dict[str, str]) -> ActionResult:
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

    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        self.events.append({"pod": pod, "action": action, "reason": reason, "note": note, "warning": warning})

    async def reachable(self) -> bool:
        return self.is_reachable

    async def aclose(self) -> None:
        self.closed = True
