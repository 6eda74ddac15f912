"""Which workload a pod belongs to, through its ownerReferences, with a TTL cache.

Pod → ReplicaSet → Deployment, Pod → Job → CronJob, or Pod → StatefulSet/DaemonSet/other controller.
Lookups are cached (and concurrent lookups of the same object share one request) because a noisy pod can
raise hundreds of alerts a second and each one is counted against its workload.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from teflon.common.caching import SingleFlight, TTLCache
from teflon.common.kube import JSON, KubeError
from teflon.webhook.actions import PodReader
from teflon.webhook.objects import controller_of
from teflon.webhook.rates import Workload

log = logging.getLogger(__name__)

# A ReplicaSet made by a Deployment, or a Job made by a CronJob, is reported as its parent.
_PARENTS = {"ReplicaSet": "Deployment", "Job": "CronJob"}


class OwnerResolver:
    """Resolves pods to workloads; API failures give ``None`` (unknown), never an exception."""

    def __init__(
        self,
        pods: PodReader,
        *,
        ttl_seconds: float = 300.0,
        pod_ttl_seconds: float = 60.0,
        cap: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = pods
        self._owners: TTLCache[tuple[str, ...], Workload] = TTLCache(ttl=ttl_seconds, cap=cap, clock=clock)
        self._pods: TTLCache[tuple[str, ...], Workload | None] = TTLCache(
            ttl=pod_ttl_seconds, cap=cap, clock=clock
        )
        self._flight: SingleFlight[tuple[str, ...], Workload | None] = SingleFlight()

    def __len__(self) -> int:
        return len(self._owners) + len(self._pods)

    async def workload_of(self, namespace: str, pod: JSON) -> Workload | None:
        """The top-level controller of ``pod``; None for a bare pod or when it cannot be found out."""
        ref = controller_of(pod)
        if ref is None:
            return None
        kind, name = ref.kind, ref.name
        parent_kind = _PARENTS.get(kind)
        if parent_kind is None:
            return Workload(kind, name)
        key = ("owner", namespace, kind, name)
        hit, cached = self._owners.get(key)
        if hit:
            return cached
        try:
            obj = await self._reader.get_owner(namespace, ref.api_version, kind, name)
        except KubeError as exc:
            log.warning(
                "owner lookup failed",
                extra={"namespace": namespace, "kind": kind, "name": name, "error": str(exc)},
            )
            return Workload(kind, name)
        parent = controller_of(obj) if obj is not None else None
        result = (
            Workload(parent_kind, parent.name)
            if parent and parent.kind == parent_kind
            else Workload(kind, name)
        )
        self._owners.put(key, result)
        return result

    async def workload_of_pod_name(self, namespace: str, pod_name: str) -> Workload | None:
        """Like ``workload_of`` but starting from a name; cached briefly, one lookup in flight per pod."""
        key = ("pod", namespace, pod_name)
        hit, cached = self._pods.get(key)
        if hit:
            return cached
        return await self._flight.run(key, lambda: self._lookup_pod(namespace, pod_name))

    async def workload_of_read_pod(self, namespace: str, pod_name: str, pod: JSON) -> Workload | None:
        """``workload_of`` a pod the caller has just read, remembered as ``workload_of_pod_name`` would."""
        result = await self.workload_of(namespace, pod)
        self._pods.put(("pod", namespace, pod_name), result)
        return result

    async def _lookup_pod(self, namespace: str, pod_name: str) -> Workload | None:
        try:
            pod = await self._reader.get_pod(namespace, pod_name)
            result = await self.workload_of(namespace, pod) if pod is not None else None
        except KubeError as exc:
            log.warning(
                "pod lookup failed", extra={"namespace": namespace, "pod": pod_name, "error": str(exc)}
            )
            return None  # not cached: the next alert asks again
        self._pods.put(("pod", namespace, pod_name), result)
        return result
