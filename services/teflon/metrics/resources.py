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
    """One resource as the custom metrics API names it, over its entry in ``kube.RESOURCES``."""

    resource: str  # group-qualified plural as it appears in the URL
    kind: str

    @property
    def _kube(self) -> kube.Resource:
        return kube.RESOURCES[self.kind]

    @property
    def api_version(self) -> str:
        """Of the described object, e.g. ``v1`` or ``apps/v1``."""
        return self._kube.api_version

    @property
    def namespaced(self) -> bool:
        return self._kube.namespaced

    @property
    def plural(self) -> str:
        return self._kube.plural

    def collection_path(self, namespace: str | None) -> str:
        return self._kube.path(namespace)


def _url_name(r: kube.Resource) -> str:
    """The custom metrics API's spelling: the plural, qualified by the group unless it is the core one."""
    return f"{r.plural}.{r.group}" if r.group else r.plural


# The kinds metrics can describe; names, versions and paths come from the one table in common.kube.
_KINDS = (
    "Pod",
    "Service",
    "Namespace",
    "Node",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Ingress",
)
_TYPES = [ResourceType(_url_name(kube.RESOURCES[kind]), kind) for kind in _KINDS]

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
