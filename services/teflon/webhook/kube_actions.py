"""What the responder may do to a cluster, as a Protocol, and its implementation on the Kubernetes API.

The Protocol is the seam between decisions and side effects: unit tests pass a fake that records calls,
the service passes ``KubeClusterActions``. Every mutating call carries the pod's UID as a precondition,
so a replacement pod that reuses the name (StatefulSets, static pods) is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from teflon.common.kube import (
    JSON,
    Conflict,
    KubeClient,
    KubeError,
    NotFound,
    ServerError,
    TooManyRequests,
    Unreachable,
)

log = logging.getLogger(__name__)

# Namespace and pod names come from alerts and go into URL paths. The HTTP client resolves dot
# segments, so "default/../kube-system" would reach another namespace than the one the guards checked:
# only names Kubernetes itself allows (DNS-1123 label / subdomain) are ever looked up.
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_POD_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

REPORTING_CONTROLLER = "teflon.io/webhook"
ISOLATE_LABEL = "teflon.io/isolate"
CLAIM_LABEL = "teflon.io/claim"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
_CLAIM_UID = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
_T = TypeVar("_T")

# Owner kinds the responder looks up, by (apiVersion, kind): the REST collection they live in.
_COLLECTIONS: dict[tuple[str, str], str] = {
    ("apps/v1", "ReplicaSet"): "/apis/apps/v1/namespaces/{ns}/replicasets/{name}",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
    ("apps/v1", "StatefulSet"): "/apis/apps/v1/namespaces/{ns}/statefulsets/{name}",
    ("apps/v1", "DaemonSet"): "/apis/apps/v1/namespaces/{ns}/daemonsets/{name}",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
    ("batch/v1", "CronJob"): "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
}


class Outcome(StrEnum):
    """What an action call did. ``gone`` (404) counts as done: the pod no longer runs."""

    APPLIED = "applied"
    GONE = "gone"
    REPLACED = "replaced"  # the UID precondition failed: a new pod has the name now
    BLOCKED = "blocked"  # an eviction refused by a PodDisruptionBudget
    FAILED = "failed"


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Claim:
    """A claim this replica holds on one (pod UID, action): the Lease that says so."""

    namespace: str
    name: str
    resource_version: str


@dataclass(frozen=True)
class ActionResult:
    outcome: Outcome
    detail: str = ""


class ClusterActions(Protocol):
    """Reads and changes the responder needs; implementations never raise for an expected API answer."""

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        """The pod, or None if it does not exist. Raises ``KubeError`` when the API cannot tell."""
        ...

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        """A controller object named by an ownerReference, or None when absent or of an unknown kind."""
        ...

    async def label_pod(self, pod: PodRef, labels: dict[str, str]) -> ActionResult: ...

    async def isolate_pod(self, pod: PodRef) -> ActionResult: ...

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult: ...

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult: ...

    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        """Record an events.k8s.io/v1 Event about the pod. Raises ``KubeError`` on failure."""
        ...

    async def claim(
        self, pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float
    ) -> Claim | None:
        """Claim (pod UID, action) cluster-wide for ``seconds``, so no other replica acts on it too.

        Returns the claim, or None when an unexpired claim exists already (another replica's, or an
        earlier one of this replica). Raises ``KubeError`` when the API cannot tell: the caller must not
        act then.
        """
        ...

    async def release(self, claim: Claim) -> None:
        """Give a claim back (the action changed nothing). Raises ``KubeError`` on failure."""
        ...

    async def sweep_claims(self, namespace: str) -> int:
        """Delete expired claims in ``namespace``; how many went. Raises ``KubeError`` on failure."""
        ...

    async def reachable(self) -> bool: ...

    async def aclose(self) -> None: ...


def micro_time(when: datetime) -> str:
    """A MicroTime as the API server parses it: exactly six fractional digits, UTC, ``Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_name(pod_uid: str, action: str) -> str:
    """The claim Lease's name: one per (pod UID, action), a DNS-1123 label of at most 55 characters."""
    uid = pod_uid if _CLAIM_UID.fullmatch(pod_uid) else hashlib.sha256(pod_uid.encode()).hexdigest()[:40]
    return f"teflon-{action}-{uid}"


def claim_lease(
    pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float, now: datetime
) -> JSON:
    stamp = micro_time(now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": claim_name(pod.uid, action),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "teflon", CLAIM_LABEL: "true"},
            "annotations": {
                "teflon.io/pod-namespace": pod.namespace,
                "teflon.io/pod": pod.name,
                "teflon.io/pod-uid": pod.uid,
                "teflon.io/action": action,
                "teflon.io/rule": rule[:253],
            },
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, math.ceil(seconds)),
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def lease_expired(lease: JSON, now: datetime) -> bool:
    """True once ``renewTime`` + ``leaseDurationSeconds`` has passed; a Lease without them has expired."""
    spec = lease.get("spec") or {}
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    try:
        since = datetime.fromisoformat(str(stamp))
        duration = float(spec.get("leaseDurationSeconds") or 0)
    except ValueError:
        return True
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return now >= since + timedelta(seconds=duration)


def isolation_policy_name(pod_name: str) -> str:
    return f"teflon-isolate-{pod_name}"[:253]


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


def _label_patch(pod: JSON | None, uid: str, labels: dict[str, str]) -> list[JSON]:
    ops: list[JSON] = [{"op": "test", "path": "/metadata/uid", "value": uid}]
    if not (pod or {}).get("metadata", {}).get("labels"):
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    for key, value in labels.items():
        escaped = key.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "add", "path": f"/metadata/labels/{escaped}", "value": value})
    return ops


class KubeClusterActions:
    """``ClusterActions`` on the Kubernetes REST API through ``teflon.common.kube.KubeClient``."""

    def __init__(
        self,
        client: KubeClient,
        *,
        reporting_instance: str,
        attempts: int = 4,
        backoff_seconds: float = 0.2,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._now = now
        self._kube = client
        self._instance = reporting_instance
        self._attempts = attempts
        self._backoff = backoff_seconds

    async def _retry(
        self,
        call: Callable[[], Awaitable[_T]],
        *,
        retry_on: tuple[type[KubeError], ...] = (Unreachable, ServerError),
    ) -> _T:
        """Repeat ``call`` with exponential backoff on errors that a later attempt may not hit.

        Only used for calls that are safe to repeat: reads, and writes guarded by a UID precondition or
        by a fixed object name.
        """
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                return await call()
            except retry_on as exc:
                if attempt == self._attempts:
                    raise
                log.warning("kubernetes call failed, retrying", extra={"error": str(exc), "attempt": attempt})
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        if not (_NAMESPACE_NAME.fullmatch(namespace) and _POD_NAME.fullmatch(name)):
            return None  # no pod can have this name, and the path would point elsewhere
        try:
            return await self._retry(
                lambda: self._kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}"),
                retry_on=(Unreachable, ServerError, TooManyRequests),
            )
        except NotFound:
            return None

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        template = _COLLECTIONS.get((api_version, kind))
        if template is None:
            return None
        try:
            return await self._retry(
                lambda: self._kube.get(template.format(ns=namespace, name=name)),
                retry_on=(Unreachable, ServerError, TooManyRequests),
            )
        except NotFound:
            return None

    async def label_pod(self, pod: PodRef, labels: dict[str, str]) -> ActionResult:
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        try:
            current = await self.get_pod(pod.namespace, pod.name)
            if current is None:
                return ActionResult(Outcome.GONE, "pod not found")
            if current["metadata"].get("uid") != pod.uid:
                return ActionResult(Outcome.REPLACED, "a pod with another UID has this name")
            patch = _label_patch(current, pod.uid, labels)
            await self._retry(lambda: self._kube.patch(path, patch, patch_type="json"))
        except NotFound:
            return ActionResult(Outcome.GONE, "pod not found")
        except KubeError as exc:
            if exc.status == 422:
                # A failed JSON-patch `test` answers a bare 422 that does not say which operation failed;
                # read the pod again to tell a replacement (the UID test) from a refused label.
                return await self._explain_refused_patch(pod, exc)
            return ActionResult(Outcome.FAILED, str(exc))
        return ActionResult(Outcome.APPLIED, ", ".join(f"{k}={v}" for k, v in labels.items()))

    async def _explain_refused_patch(self, pod: PodRef, exc: KubeError) -> ActionResult:
        try:
            current = await self.get_pod(pod.namespace, pod.name)
        except KubeError:
            return ActionResult(Outcome.FAILED, str(exc))
        if current is None:
            return ActionResult(Outcome.GONE, "pod not found")
        if current["metadata"].get("uid") != pod.uid:
            return ActionResult(Outcome.REPLACED, "a pod with another UID took this name during the patch")
        return ActionResult(Outcome.FAILED, str(exc))

    async def isolate_pod(self, pod: PodRef) -> ActionResult:
        body = isolation_policy(pod)
        path = f"/apis/networking.k8s.io/v1/namespaces/{pod.namespace}/networkpolicies"
        try:
            try:
                await self._retry(lambda: self._kube.post(path, body))
            except Conflict:
                existing = await self._kube.get(f"{path}/{body['metadata']['name']}")
                selector = existing.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
                if selector != {ISOLATE_LABEL: pod.uid}:
                    await self._kube.request(
                        "PUT",
                        f"{path}/{body['metadata']['name']}",
                        body={
                            **body,
                            "metadata": {
                                **body["metadata"],
                                "resourceVersion": existing["metadata"]["resourceVersion"],
                            },
                        },
                    )
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, f"NetworkPolicy: {exc}")
        labelled = await self.label_pod(pod, {ISOLATE_LABEL: pod.uid})
        if labelled.outcome is not Outcome.APPLIED:
            return labelled
        return ActionResult(Outcome.APPLIED, f"NetworkPolicy {body['metadata']['name']} denies all traffic")

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        options: JSON = {"preconditions": {"uid": pod.uid}}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod.name, "namespace": pod.namespace},
            "deleteOptions": options,
        }
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/eviction"
        try:
            # 429 is an answer here (a PodDisruptionBudget said no), not throttling to retry through.
            await self._retry(lambda: self._kube.post(path, body), retry_on=(Unreachable,))
        except TooManyRequests as exc:
            return ActionResult(Outcome.BLOCKED, str(exc))
        except NotFound:
            return ActionResult(Outcome.GONE, "pod not found")
        except Conflict as exc:
            return ActionResult(Outcome.REPLACED, str(exc))
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, str(exc))
        return ActionResult(Outcome.APPLIED, "evicted")

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        body: JSON = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": "Background",
            "preconditions": {"uid": pod.uid},
        }
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}"
        try:
            await self._retry(lambda: self._kube.delete(path, body))
        except NotFound:
            return ActionResult(Outcome.GONE, "pod already gone")
        except Conflict as exc:
            return ActionResult(Outcome.REPLACED, str(exc))
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, str(exc))
        return ActionResult(Outcome.APPLIED, "deleted")

    async def record_event(
        self, pod: PodRef, *, action: str, reason: str, note: str, warning: bool = True
    ) -> None:
        body: dict[str, Any] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            # Named as client-go names Events (<object>.<hex nanoseconds>): recent API servers validate a
            # generateName prefix as a name of its own, so the customary trailing "." is refused.
            "metadata": {"name": f"{pod.name[:200]}.{time.time_ns():x}", "namespace": pod.namespace},
            "eventTime": micro_time(datetime.now(UTC)),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance[:128],
            "action": action[:128],
            "reason": reason[:128],
            "regarding": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace},
            "note": note[:1024],
            "type": "Warning" if warning else "Normal",
        }
        if pod.uid:
            body["regarding"]["uid"] = pod.uid
        # Not retried: a lost response would make a retry write a second, duplicate Event.
        await self._kube.post(f"/apis/events.k8s.io/v1/namespaces/{pod.namespace}/events", body)

    async def claim(
        self, pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float
    ) -> Claim | None:
        body = claim_lease(
            pod, action, holder=holder, namespace=namespace, rule=rule, seconds=seconds, now=self._now()
        )
        collection = _LEASES.format(ns=namespace)
        path = f"{collection}/{body['metadata']['name']}"
        try:
            # Safe to retry: a create whose answer was lost comes back as 409, and the Lease read below
            # then carries this very acquireTime and holder.
            created = await self._retry(lambda: self._kube.post(collection, body))
            return Claim(namespace, body["metadata"]["name"], str(created["metadata"]["resourceVersion"]))
        except Conflict:
            pass
        try:
            existing = await self._retry(
                lambda: self._kube.get(path), retry_on=(Unreachable, ServerError, TooManyRequests)
            )
        except NotFound:
            return None  # swept between our create and read: it was held until just now; act next time
        spec = existing.get("spec") or {}
        version = str(existing["metadata"]["resourceVersion"])
        if spec.get("holderIdentity") == holder and spec.get("acquireTime") == body["spec"]["acquireTime"]:
            return Claim(namespace, body["metadata"]["name"], version)
        if not lease_expired(existing, self._now()):
            return None
        # Re-claim an expired Lease; the resourceVersion makes exactly one of several racing replicas win.
        body["metadata"]["resourceVersion"] = version
        try:
            updated = await self._kube.request("PUT", path, body=body)
        except (Conflict, NotFound):
            return None
        return Claim(namespace, body["metadata"]["name"], str(updated["metadata"]["resourceVersion"]))

    async def release(self, claim: Claim) -> None:
        path = f"{_LEASES.format(ns=claim.namespace)}/{claim.name}"
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": claim.resource_version},
        }
        # NotFound: gone already; Conflict: re-claimed by another replica, not ours to delete any more.
        with contextlib.suppress(NotFound, Conflict):
            await self._retry(lambda: self._kube.delete(path, options))

    async def sweep_claims(self, namespace: str) -> int:
        collection = _LEASES.format(ns=namespace)
        leases = await self._retry(
            lambda: self._kube.get(collection, params={"labelSelector": f"{CLAIM_LABEL}=true"}),
            retry_on=(Unreachable, ServerError, TooManyRequests),
        )
        now = self._now()
        deleted = 0
        for lease in leases.get("items") or []:
            if not lease_expired(lease, now):
                continue
            meta = lease["metadata"]
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                # A replica may have just re-claimed it: delete only the version judged expired.
                "preconditions": {"resourceVersion": meta["resourceVersion"]},
            }
            try:
                await self._kube.delete(f"{collection}/{meta['name']}", options)
            except (NotFound, Conflict):
                continue
            deleted += 1
        return deleted

    async def reachable(self) -> bool:
        try:
            await self._kube.get("/version")
        except KubeError:
            return False
        return True

    async def aclose(self) -> None:
        await self._kube.aclose()
