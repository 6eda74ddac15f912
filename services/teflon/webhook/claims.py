"""Cluster-wide claims on (pod UID, action): one Lease each, so one replica acts where several are told.

Alerts about one pod reach every replica behind the Service, and each replica's dedupe is its own. A
claim is a Lease in the webhook's own namespace named after the pod UID and the action: creating it
is atomic, so exactly one replica gets it; it expires after the dedupe window and is then swept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

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
    micro_time,
)
from teflon.webhook.objects import PodRef

CLAIM_LABEL = "teflon.io/claim"
_CLAIM_UID = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
_LEASE = RESOURCES["Lease"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A claim this replica holds on one (pod UID, action): the Lease that says so."""

    namespace: str
    name: str
    resource_version: str


class ClaimStore(Protocol):
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


async def release_or_expire(store: ClaimStore, claim: Claim) -> None:
    """Give ``claim`` back; if that fails, the claim simply expires at the end of its window."""
    try:
        await store.release(claim)
    except KubeError as exc:
        # No replica retries this action before the window ends then: logged, not raised.
        log.warning("claim not released", extra={"lease": claim.name, "error": str(exc)})


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


class KubeClaims:
    """``ClaimStore`` on coordination.k8s.io/v1 Leases."""

    def __init__(
        self,
        client: KubeClient,
        *,
        retry: Retrier,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = client
        self._retry = retry
        self._now = now

    async def claim(
        self, pod: PodRef, action: str, *, holder: str, namespace: str, rule: str, seconds: float
    ) -> Claim | None:
        body = claim_lease(
            pod, action, holder=holder, namespace=namespace, rule=rule, seconds=seconds, now=self._now()
        )
        collection = _LEASE.path(namespace)
        path = _LEASE.path(namespace, body["metadata"]["name"])
        try:
            # Safe to retry: a create whose answer was lost comes back as 409, and the Lease read below
            # then carries this very acquireTime and holder.
            created = await self._retry(lambda: self._kube.post(collection, body), WRITES)
            return Claim(namespace, body["metadata"]["name"], str(created["metadata"]["resourceVersion"]))
        except Conflict:
            pass
        try:
            existing = await self._retry(lambda: self._kube.get(path), READS)
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
        path = _LEASE.path(claim.namespace, claim.name)
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"resourceVersion": claim.resource_version},
        }
        # NotFound: gone already; Conflict: re-claimed by another replica, not ours to delete any more.
        with contextlib.suppress(NotFound, Conflict):
            await self._retry(lambda: self._kube.delete(path, options), WRITES)

    async def sweep_claims(self, namespace: str) -> int:
        leases = await self._retry(
            lambda: self._kube.get(_LEASE.path(namespace), params={"labelSelector": f"{CLAIM_LABEL}=true"}),
            READS,
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
                await self._kube.delete(_LEASE.path(namespace, meta["name"]), options)
            except (NotFound, Conflict):
                continue
            deleted += 1
        return deleted
