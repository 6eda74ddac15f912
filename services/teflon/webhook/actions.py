"""What the responder may do to a cluster: the roles it needs, as Protocols, and their wire bodies.

The Protocols are the seam between decisions and side effects: unit tests pass a fake that records
calls, the service passes ``teflon.webhook.kube_actions.KubeClusterActions``. Each role is small, so a
part that needs only to read pods (``owners``) asks for a ``PodReader`` and nothing more. Every
mutating call carries the pod's UID as a precondition, so a replacement pod that reuses the name
(StatefulSets, static pods) is never touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, assert_never

from teflon.webhook.claims import ClaimStore
from teflon.webhook.objects import ACTED_LABEL, JSON, PodRef
from teflon.webhook.policy import (
    Action,
    DeleteAction,
    EvictAction,
    IsolateAction,
    LabelAction,
    QuarantineAction,
)
from teflon.webhook.quarantine import Plan, QuarantineOrder

ISOLATE_LABEL = ACTED_LABEL


class Outcome(StrEnum):
    """What an action call did. ``gone`` (404) counts as done: the pod no longer runs."""

    APPLIED = "applied"
    GONE = "gone"
    REPLACED = "replaced"  # the UID precondition failed: a new pod has the name now
    BLOCKED = "blocked"  # an eviction refused by a PodDisruptionBudget
    FAILED = "failed"


@dataclass(frozen=True)
class ActionResult:
    outcome: Outcome
    detail: str = ""


class PodReader(Protocol):
    """Reads pods and their controllers. Raises ``KubeError`` only when the API cannot tell."""

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        """The pod, or None if it does not exist."""
        ...

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        """A controller object named by an ownerReference, or None when absent or of an unknown kind."""
        ...


class PodResponder(Protocol):
    """The actions on one pod; expected API answers come back as an ``Outcome``, never raised."""

    async def label_pod(
        self, pod: PodRef, labels: dict[str, str], *, has_labels: bool = False
    ) -> ActionResult:
        """Add ``labels``; ``has_labels``: the caller's read of this pod (this UID) showed labels.

        Without it the pod is read first: a pod without labels needs its label map created, and creating
        it over labels someone added since would wipe them. With it the read is skipped; the patch still
        tests the UID, and adding a key under a map removed since is refused, never a wipe.
        """
        ...

    async def isolate_pod(self, pod: PodRef) -> ActionResult: ...

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult: ...

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult: ...

    async def quarantine_pod(self, order: QuarantineOrder) -> ActionResult:
        """Record, isolate and detach the pod from its ReplicaSet (``teflon.webhook.quarantine``)."""
        ...


class EventRecorder(Protocol):
    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        """Record an events.k8s.io/v1 Event about the pod. Raises ``KubeError`` on failure."""
        ...


class QuarantineStore(Protocol):
    """The quarantine records in teflon's namespace."""

    async def quarantine_records(self, namespace: str) -> list[JSON]:
        """Every record Lease. Raises ``KubeError`` when they cannot be listed."""
        ...

    async def patch_record(self, namespace: str, name: str, patch: list[JSON]) -> bool:
        """Apply a resourceVersion-tested JSON patch; False when another writer changed it first."""
        ...

    async def delete_record(self, namespace: str, name: str, resource_version: str) -> None:
        """Delete the record (only that version when given); absent or changed is not an error."""
        ...

    async def mark_expiry(self, namespace: str, name: str, uid: str, expires: str) -> None:
        """Write a new expiry annotation on the pod, guarded by its UID."""
        ...


class ClusterActions(PodReader, PodResponder, EventRecorder, ClaimStore, QuarantineStore, Protocol):
    """Every role on one connection, as the service wires it; plus health and shutdown."""

    async def reachable(self) -> bool: ...

    async def aclose(self) -> None: ...


async def perform(
    responder: PodResponder,
    action: Action,
    pod: PodRef,
    order: Callable[[QuarantineAction], QuarantineOrder],
    *,
    has_labels: bool = False,
) -> ActionResult:
    """Carry out ``action`` on ``pod``: one case per action type, and mypy fails when one is missing.

    ``order`` builds a quarantine's order (its plan, cause and expiry) when the action is one;
    ``has_labels`` says the caller's read of the pod showed labels (``PodResponder.label_pod``).
    """
    match action:
        case LabelAction():
            return await responder.label_pod(pod, dict(action.labels), has_labels=has_labels)
        case IsolateAction():
            return await responder.isolate_pod(pod)
        case EvictAction():
            return await responder.evict_pod(pod, action.grace_period_seconds)
        case DeleteAction():
            return await responder.delete_pod(pod, action.grace_period_seconds)
        case QuarantineAction():
            return await _quarantine(responder, order(action))
        case _:
            assert_never(action)


async def _quarantine(responder: PodResponder, order: QuarantineOrder) -> ActionResult:
    """The quarantine's plan: detach and keep, or the fallback the decision names in its detail."""
    match order.plan:
        case Plan.REPLACE:
            return await responder.quarantine_pod(order)
        case Plan.ISOLATE:
            result = await responder.isolate_pod(order.pod)
        case Plan.DELETE:
            result = await responder.delete_pod(order.pod, None)
        case _:
            assert_never(order.plan)
    return ActionResult(result.outcome, f"{order.fallback_reason}: {result.detail}".strip(": "))


_ISOLATION_PREFIX = "teflon-isolate-"
_NAME_MAX = 253


def isolation_policy_name(pod_name: str) -> str:
    """``teflon-isolate-<pod>``; past 253 characters, a cut of the pod name and a hash of all of it.

    Cutting alone made two pods whose names share their first 238 characters share one policy, and
    isolating the second re-pointed the first one's policy at it: the first pod was let out.
    """
    name = _ISOLATION_PREFIX + pod_name
    if len(name) <= _NAME_MAX:
        return name
    digest = hashlib.sha256(pod_name.encode()).hexdigest()[:16]
    head = name[: _NAME_MAX - len(digest) - 1].rstrip(".-")
    return f"{head}-{digest}"


def isolation_policy(pod: PodRef) -> JSON:
    """A deny-all NetworkPolicy for exactly this pod, owned by it so the garbage collector removes it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": isolation_policy_name(pod.name),
            "namespace": pod.namespace,
            "labels": {"app.kubernetes.io/managed-by": "teflon"},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod.name,
                    "uid": pod.uid,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            # The UID label is set on this pod only, so the policy can never select a sibling.
            "podSelector": {"matchLabels": {ISOLATE_LABEL: pod.uid}},
            "policyTypes": ["Ingress", "Egress"],
        },
    }


def label_patch(has_labels: bool, uid: str, labels: dict[str, str]) -> list[JSON]:
    """A JSON patch adding ``labels``, refused by the API server unless the pod still has ``uid``.

    ``has_labels``: the pod has a label map already (else the patch creates it first).
    """
    ops: list[JSON] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    if not has_labels:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    for key, value in labels.items():
        escaped = key.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "add", "path": f"/metadata/labels/{escaped}", "value": value})
    return ops


def eviction(pod: PodRef, grace_period_seconds: int | None) -> JSON:
    options: JSON = {"preconditions": {"uid": pod.uid}}
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    return {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": pod.name, "namespace": pod.namespace},
        "deleteOptions": options,
    }


def delete_options(pod: PodRef, grace_period_seconds: int | None) -> JSON:
    body: JSON = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": pod.uid},
    }
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = grace_period_seconds
    return body
