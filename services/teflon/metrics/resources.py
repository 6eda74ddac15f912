"""The Kubernetes resources metrics can describe, and how to find their objects.

A custom-metrics URL names a resource by its group-qualified plural (``pods``, ``deployments.apps``).
This table turns that into the object ``kind``, its API path and whether it is namespaced, so the server
can list the objects a ``labelSelector`` selects and check that a named object exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from teflon.common import kube


@dataclass(frozen=True)
class ResourceType:
    """One resource as the custom metrics API names it."""

    resource: str  # group-qualified plural as it appears in the URL
    kind: str
    api_version: str  # of the described object, e.g. ``v1`` or ``apps/v1``
    namespaced: bool

    @property
    def plural(self) -> str:
        return self.resource.split(".", 1)[0]

    def collection_path(self, namespace: str | None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"


_TYPES = [
    ResourceType("pods", "Pod", "v1", True),
    ResourceType("services", "Service", "v1", True),
    ResourceType("namespaces", "Namespace", "v1", False),
    ResourceType("nodes", "Node", "v1", False),
    ResourceType("deployments.apps", "Deployment", "apps/v1", True),
    ResourceType("statefulsets.apps", "StatefulSet", "apps/v1", True),
    ResourceType("daemonsets.apps", "DaemonSet", "apps/v1", True),
    ResourceType("replicasets.apps", "ReplicaSet", "apps/v1", True),
    ResourceType("jobs.batch", "Job", "batch/v1", True),
    ResourceType("cronjobs.batch", "CronJob", "batch/v1", True),
    ResourceType("ingresses.networking.k8s.io", "Ingress", "networking.k8s.io/v1", True),
]

RESOURCE_TYPES: dict[str, ResourceType] = {t.resource: t for t in _TYPES}


def resource_type(resource: str) -> ResourceType | None:
    """The known resource named ``resource`` (URL spelling), or None."""
    return RESOURCE_TYPES.get(resource)


class ObjectLookupFailed(Exception):
    """The Kubernetes API could not answer which objects exist."""


class BadSelector(Exception):
    """The Kubernetes API rejected a label selector."""


class ObjectLister(Protocol):
    """Which objects exist: the seam between the provider and the Kubernetes API."""

    async def list_names(self, rtype: ResourceType, namespace: str | None, label_selector: str) -> list[str]:
        """Names of the objects of ``rtype`` in ``namespace`` that ``label_selector`` selects."""
        ...

    async def exists(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        """Whether the named object exists."""
        ...


class KubeObjects:
    """``ObjectLister`` over the Kubernetes API, listing only object names (metadata)."""

    def __init__(self, client: kube.KubeClient) -> None:
        self._client = client

    async def list_names(self, rtype: ResourceType, namespace: str | None, label_selector: str) -> list[str]:
        params: dict[str, str | int | bool] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        try:
            doc = await self._client.get(rtype.collection_path(namespace), params=params)
        except kube.BadRequest as exc:
            raise BadSelector(str(exc)) from exc
        except kube.KubeError as exc:
            raise ObjectLookupFailed(str(exc)) from exc
        names = [str(item.get("metadata", {}).get("name", "")) for item in doc.get("items", [])]
        return sorted(n for n in names if n)

    async def exists(self, rtype: ResourceType, namespace: str | None, name: str) -> bool:
        try:
            await self._client.get(f"{rtype.collection_path(namespace)}/{name}")
        except kube.NotFound:
            return False
        except kube.KubeError as exc:
            raise ObjectLookupFailed(str(exc)) from exc
        return True
