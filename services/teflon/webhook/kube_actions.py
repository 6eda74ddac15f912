"""The responder's roles on the Kubernetes REST API, through ``teflon.common.kube.KubeClient``.

One class per role (``KubePods`` reads, ``KubePodResponder`` acts, ``KubeEvents`` records,
``teflon.webhook.claims.KubeClaims`` claims); ``KubeClusterActions`` puts them on one connection for
the service. Calls are repeated only under the named retry policies of ``teflon.common.kube``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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
    TooManyRequests,
    micro_time,
    resource_of,
)
from teflon.webhook.actions import (
    ISOLATE_LABEL,
    ActionResult,
    Outcome,
    delete_options,
    eviction,
    isolation_policy,
    label_patch,
)
from teflon.webhook.claims import KubeClaims
from teflon.webhook.kube_quarantine import KubeQuarantine
from teflon.webhook.objects import PodRef

# Namespace and pod names come from alerts and go into URL paths. The HTTP client resolves dot
# segments, so "default/../kube-system" would reach another namespace than the one the guards checked:
# only names Kubernetes itself allows (DNS-1123 label / subdomain) are ever looked up.
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_POD_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

REPORTING_CONTROLLER = "teflon.io/webhook"
_POD = RESOURCES["Pod"]
_NETWORK_POLICY = RESOURCES["NetworkPolicy"]
_EVENT = RESOURCES["Event"]
# Controllers whose objects the responder reads (to find a pod's workload and its ready replicas).
_OWNER_KINDS = frozenset({"ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})


def _refused(exc: KubeError, *, gone: str) -> ActionResult:
    """What a refused UID-guarded removal means: the pod is gone, was replaced, or the call failed."""
    if isinstance(exc, NotFound):
        return ActionResult(Outcome.GONE, gone)
    if isinstance(exc, Conflict):
        return ActionResult(Outcome.REPLACED, str(exc))
    return ActionResult(Outcome.FAILED, str(exc))


class KubePods:
    """``PodReader``: pods and their controllers."""

    def __init__(self, client: KubeClient, *, retry: Retrier) -> None:
        self._kube = client
        self._retry = retry

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        if not (_NAMESPACE_NAME.fullmatch(namespace) and _POD_NAME.fullmatch(name)):
            return None  # no pod can have this name, and the path would point elsewhere
        try:
            return await self._retry(lambda: self._kube.get(_POD.path(namespace, name)), READS)
        except NotFound:
            return None

    async def get_owner(self, namespace: str, api_version: str, kind: str, name: str) -> JSON | None:
        resource = resource_of(api_version, kind) if kind in _OWNER_KINDS else None
        if resource is None:
            return None
        try:
            return await self._retry(lambda: self._kube.get(resource.path(namespace, name)), READS)
        except NotFound:
            return None


class KubePodResponder:
    """``PodResponder``: the four actions, each guarded by the pod's UID."""

    def __init__(self, client: KubeClient, *, retry: Retrier, pods: KubePods) -> None:
        self._kube = client
        self._retry = retry
        self._pods = pods

    async def label_pod(
        self, pod: PodRef, labels: dict[str, str], *, has_labels: bool = False
    ) -> ActionResult:
        path = _POD.path(pod.namespace, pod.name)
        try:
            if not has_labels:  # the caller did not see labels: read, so a new map never wipes some
                current = await self._pods.get_pod(pod.namespace, pod.name)
                if current is None:
                    return ActionResult(Outcome.GONE, "pod not found")
                if current["metadata"].get("uid") != pod.uid:
                    return ActionResult(Outcome.REPLACED, "a pod with another UID has this name")
                has_labels = bool(current["metadata"].get("labels"))
            patch = label_patch(has_labels, pod.uid, labels)
            await self._retry(lambda: self._kube.patch(path, patch, patch_type="json"), WRITES)
        except NotFound:
            return ActionResult(Outcome.GONE, "pod not found")
        except KubeError as exc:
            if exc.status == 422:
                # A failed JSON-patch `test` answers a bare 422 that does not say which operation failed;
                # read the pod again to tell a replacement (the UID test) from a refused label.
                return await self.explain_refused_patch(pod, exc)
            return ActionResult(Outcome.FAILED, str(exc))
        return ActionResult(Outcome.APPLIED, ", ".join(f"{k}={v}" for k, v in labels.items()))

    async def explain_refused_patch(self, pod: PodRef, exc: KubeError) -> ActionResult:
        """What a 422 on a UID-tested patch means: the pod is gone, replaced, or the patch was refused."""
        try:
            current = await self._pods.get_pod(pod.namespace, pod.name)
        except KubeError:
            return ActionResult(Outcome.FAILED, str(exc))
        if current is None:
            return ActionResult(Outcome.GONE, "pod not found")
        if current["metadata"].get("uid") != pod.uid:
            return ActionResult(Outcome.REPLACED, "a pod with another UID took this name during the patch")
        return ActionResult(Outcome.FAILED, str(exc))

    async def isolate_pod(self, pod: PodRef) -> ActionResult:
        body = isolation_policy(pod)
        name = body["metadata"]["name"]
        try:
            try:
                await self._retry(lambda: self._kube.post(_NETWORK_POLICY.path(pod.namespace), body), WRITES)
            except Conflict:
                path = _NETWORK_POLICY.path(pod.namespace, name)
                existing = await self._kube.get(path)
                selector = existing.get("spec", {}).get("podSelector", {}).get("matchLabels", {})
                if selector != {ISOLATE_LABEL: pod.uid}:
                    version = existing["metadata"]["resourceVersion"]
                    update = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
                    await self._kube.request("PUT", path, body=update)
        except KubeError as exc:
            return ActionResult(Outcome.FAILED, f"NetworkPolicy: {exc}")
        labelled = await self.label_pod(pod, {ISOLATE_LABEL: pod.uid})
        if labelled.outcome is not Outcome.APPLIED:
            return labelled
        return ActionResult(Outcome.APPLIED, f"NetworkPolicy {name} denies all traffic")

    async def evict_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        body = eviction(pod, grace_period_seconds)
        path = f"{_POD.path(pod.namespace, pod.name)}/eviction"
        try:
            await self._retry(lambda: self._kube.post(path, body), WRITES)
        except TooManyRequests as exc:  # a PodDisruptionBudget said no
            return ActionResult(Outcome.BLOCKED, str(exc))
        except KubeError as exc:
            return _refused(exc, gone="pod not found")
        return ActionResult(Outcome.APPLIED, "evicted")

    async def delete_pod(self, pod: PodRef, grace_period_seconds: int | None) -> ActionResult:
        body = delete_options(pod, grace_period_seconds)
        try:
            await self._retry(lambda: self._kube.delete(_POD.path(pod.namespace, pod.name), body), WRITES)
        except KubeError as exc:
            return _refused(exc, gone="pod already gone")
        return ActionResult(Outcome.APPLIED, "deleted")


class KubeEvents:
    """``EventRecorder``: events.k8s.io/v1 Events about pods, reported as this replica."""

    def __init__(self, client: KubeClient, *, reporting_instance: str) -> None:
        self._kube = client
        self._instance = reporting_instance

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
        await self._kube.post(_EVENT.path(pod.namespace), body)


class KubeClusterActions:
    """Every role of ``ClusterActions`` on one ``KubeClient``, delegating to the role classes."""

    def __init__(
        self,
        client: KubeClient,
        *,
        reporting_instance: str,
        attempts: int = 4,
        backoff_seconds: float = 0.2,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._kube = client
        retry = Retrier(attempts=attempts, backoff_seconds=backoff_seconds)
        self.pods = KubePods(client, retry=retry)
        self.responder = KubePodResponder(client, retry=retry, pods=self.pods)
        self.events = KubeEvents(client, reporting_instance=reporting_instance)
        self.claims = KubeClaims(client, retry=retry, now=now)
        self.get_pod = self.pods.get_pod
        self.get_owner = self.pods.get_owner
        self.label_pod = self.responder.label_pod
        self.isolate_pod = self.responder.isolate_pod
        self.evict_pod = self.responder.evict_pod
        self.delete_pod = self.responder.delete_pod
        self.record_event = self.events.record_event
        self.claim = self.claims.claim
        self.release = self.claims.release
        self.sweep_claims = self.claims.sweep_claims
        self.quarantine = KubeQuarantine(client, retry=retry, pods=self.pods, responder=self.responder)
        self.quarantine_pod = self.quarantine.quarantine_pod
        self.quarantine_records = self.quarantine.quarantine_records
        self.patch_record = self.quarantine.patch_record
        self.delete_record = self.quarantine.delete_record
        self.mark_expiry = self.quarantine.mark_expiry

    async def reachable(self) -> bool:
        try:
            await self._kube.get("/version")
        except KubeError:
            return False
        return True

    async def aclose(self) -> None:
        await self._kube.aclose()
