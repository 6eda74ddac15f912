"""Quarantine on the Kubernetes REST API: the record Lease, the isolation, the detaching patch.

Order of the writes: the record first (its creation claims the pod UID, so a pod is quarantined once,
and a crash after it leaves a record the sweep can see), then the isolation (the pod is cut off before
it leaves its Service), then the patch that removes the selector labels. A failed step undoes the record.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from teflon.common.kube import (
    JSON,
    READS,
    RESOURCES,
    WRITES,
    Conflict,
    KubeClient,
    KubeError,
    NotFound,
    Retrier,
)
from teflon.webhook.actions import ActionResult, Outcome
from teflon.webhook.objects import controller_of
from teflon.webhook.quarantine import (
    AT,
    RECORD_LABEL,
    QuarantineOrder,
    detach_patch,
    record_lease,
    record_name,
    selector_keys,
    stamp,
)

if TYPE_CHECKING:  # kube_actions composes this class: a runtime import would be circular
    from teflon.webhook.kube_actions import KubePodResponder, KubePods

_POD = RESOURCES["Pod"]
_LEASE = RESOURCES["Lease"]


class KubeQuarantine:
    """``PodResponder.quarantine_pod`` and ``QuarantineStore`` on one ``KubeClient``."""

    def __init__(
        self, client: KubeClient, *, retry: Retrier, pods: KubePods, responder: KubePodResponder
    ) -> None:
        self._kube = client
        self._retry = retry
        self._pods = pods
        self._responder = responder

    async def quarantine_pod(self, order: QuarantineOrder) -> ActionResult:
        ref = order.pod
        try:
            current = await self._pods.get_pod(ref.namespace, ref.name)
            if current is None:
                return ActionResult(Outcome.GONE, "pod not found")
            if current["metadata"].get("uid") != ref.uid:
                return ActionResult(Outcome.REPLACED, "a pod with another UID has this name")
            ctrl = controller_of(current)
            if ctrl is None or ctrl.kind != "ReplicaSet":
                return ActionResult(Outcome.FAILED, "the pod no longer has a ReplicaSet as its controller")
            owner = await self._pods.get_owner(ref.namespace, ctrl.api_version, ctrl.kind, ctrl.name)
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, str(exc))
        keys = selector_keys(owner)
        if not keys:
            return ActionResult(Outcome.FAILED, f"cannot read the selector of ReplicaSet {ctrl.name}")
        taken = await self._take_record(order)
        if taken is not None:
            return taken
        isolated = await self._responder.isolate_pod(ref)
        if isolated.outcome is not Outcome.APPLIED:
            await self._drop_record(order)
            return isolated
        detached = await self._detach(order, keys)
        if detached.outcome is not Outcome.APPLIED:
            await self._drop_record(order)
            return ActionResult(detached.outcome, f"isolated, not detached: {detached.detail}")
        return ActionResult(
            Outcome.APPLIED,
            f"detached from ReplicaSet {ctrl.name} ({detached.detail}), isolated, "
            f"kept until {stamp(order.expires)}",
        )

    async def _take_record(self, order: QuarantineOrder) -> ActionResult | None:
        """Create the record; an ``ActionResult`` when it cannot be (taken already, or an error)."""
        body = record_lease(order, namespace=order.record_namespace, holder=order.holder)
        path = _LEASE.path(order.record_namespace)
        try:
            await self._retry(lambda: self._kube.post(path, body), WRITES)
        except Conflict:
            # Ours when a retried create answered 409 for the Lease its lost first attempt made.
            name = record_name(order.pod.uid)
            try:
                existing = await self._kube.get(_LEASE.path(order.record_namespace, name))
            except KubeError as exc:
                return ActionResult(Outcome.FAILED, f"quarantine record {name}: {exc}")
            notes = existing.get("metadata", {}).get("annotations") or {}
            if (
                notes.get(AT) == stamp(order.at)
                and existing.get("spec", {}).get("holderIdentity") == body["spec"]["holderIdentity"]
            ):
                return None
            return ActionResult(Outcome.FAILED, f"already quarantined: record {name} exists")
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, f"quarantine record in {order.record_namespace}: {exc}")
        return None

    async def _drop_record(self, order: QuarantineOrder) -> None:
        with contextlib.suppress(KubeError):  # left behind, the sweep finds an unmarked pod and drops it
            await self._kube.delete(_LEASE.path(order.record_namespace, record_name(order.pod.uid)))

    async def _detach(self, order: QuarantineOrder, keys: list[str]) -> ActionResult:
        ref = order.pod
        try:
            current = await self._pods.get_pod(ref.namespace, ref.name)  # again: isolation added a label
            if current is None:
                return ActionResult(Outcome.GONE, "pod not found")
            patch, removed = detach_patch(current, order, keys)
            await self._retry(
                lambda: self._kube.patch(_POD.path(ref.namespace, ref.name), patch, patch_type="json"), WRITES
            )
        except NotFound:
            return ActionResult(Outcome.GONE, "pod not found")
        except KubeError as exc:
            if exc.status == 422:
                return await self._responder.explain_refused_patch(ref, exc)
            return ActionResult(Outcome.FAILED, str(exc))
        return ActionResult(Outcome.APPLIED, "labels " + ", ".join(sorted(removed)) + " removed")

    # --- QuarantineStore ---

    async def quarantine_records(self, namespace: str) -> list[JSON]:
        params = {"labelSelector": f"{RECORD_LABEL}=true"}
        doc = await self._retry(lambda: self._kube.get(_LEASE.path(namespace), params=params), READS)
        items: list[JSON] = doc.get("items") or []
        return items

    async def patch_record(self, namespace: str, name: str, patch: list[JSON]) -> bool:
        try:
            await self._kube.patch(_LEASE.path(namespace, name), patch, patch_type="json")
        except (NotFound, Conflict):
            return False
        except KubeError as exc:
            if exc.status == 422:  # the resourceVersion test failed: another replica got there first
                return False
            raise
        return True

    async def delete_record(self, namespace: str, name: str, resource_version: str) -> None:
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version:
            options["preconditions"] = {"resourceVersion": resource_version}
        with contextlib.suppress(NotFound, Conflict):
            await self._retry(lambda: self._kube.delete(_LEASE.path(namespace, name), options), WRITES)

    async def mark_expiry(self, namespace: str, name: str, uid: str, expires: str) -> None:
        """Write the new expiry on the pod too (UID-guarded), so ``kubectl describe`` tells the truth."""
        patch = [
            {"op": "test", "path": "/metadata/uid", "value": uid},
            {
                "op": "replace",
                "path": "/metadata/annotations/teflon.io~1quarantine-expires",
                "value": expires,
            },
        ]
        with contextlib.suppress(NotFound):
            await self._kube.patch(_POD.path(namespace, name), patch, patch_type="json")
