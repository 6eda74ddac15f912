"""Typed views of the Kubernetes objects the responder reads, built once from the API's JSON.

The decisions read fields (uid, labels, node, controller, readiness) from these views instead of
walking ``.get("metadata", {})`` chains, so a missing field has one meaning, decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# Marks teflon's actions leave on a pod (``actions.ISOLATE_LABEL``, ``quarantine.AT``).
ACTED_LABEL = "teflon.io/isolate"
ACTED_ANNOTATION = "teflon.io/quarantined-at"


@dataclass(frozen=True)
class OwnerRef:
    """One ownerReference of an object."""

    api_version: str
    kind: str
    name: str
    controller: bool = False

    @classmethod
    def parse(cls, ref: Mapping[str, Any]) -> OwnerRef:
        return cls(
            api_version=str(ref.get("apiVersion", "")),
            kind=str(ref.get("kind", "")),
            name=str(ref.get("name", "")),
            controller=bool(ref.get("controller")),
        )


def owner_refs(obj: Mapping[str, Any]) -> tuple[OwnerRef, ...]:
    meta = obj.get("metadata") or {}
    return tuple(OwnerRef.parse(r) for r in meta.get("ownerReferences") or [] if isinstance(r, Mapping))


def controller_of(obj: Mapping[str, Any]) -> OwnerRef | None:
    """The ownerReference with ``controller: true``, if any."""
    return next((r for r in owner_refs(obj) if r.controller), None)


@dataclass(frozen=True)
class PodRef:
    """The pod an action is about; ``uid`` is the precondition every change carries."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PodView:
    """The fields of a pod the responder decides on."""

    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node: str | None = None
    owners: tuple[OwnerRef, ...] = ()
    ready: bool = False

    @classmethod
    def parse(cls, pod: Mapping[str, Any]) -> PodView:
        meta = pod.get("metadata") or {}
        ready = False
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
                break
        node = (pod.get("spec") or {}).get("nodeName")
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            node=str(node) if node is not None else None,
            owners=owner_refs(pod),
            ready=ready,
        )

    @property
    def ref(self) -> PodRef:
        return PodRef(self.namespace, self.name, self.uid)

    @property
    def controller(self) -> OwnerRef | None:
        return next((r for r in self.owners if r.controller), None)

    @property
    def acted_on(self) -> bool:
        """Whether teflon isolated or quarantined this pod (its alerts no longer drive scaling)."""
        return ACTED_LABEL in self.labels or ACTED_ANNOTATION in self.annotations

    @property
    def static(self) -> bool:
        """A static (mirror) pod: the kubelet owns it, and the API can only mirror it."""
        return MIRROR_ANNOTATION in self.annotations or any(r.kind == "Node" for r in self.owners)


@dataclass(frozen=True)
class ReplicaCount:
    """What a controller says about its pods; ``replicated`` False when it has no ``spec.replicas``."""

    replicated: bool
    ready: int

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> ReplicaCount:
        spec = obj.get("spec") or {}
        ready = (obj.get("status") or {}).get("readyReplicas")
        return cls(replicated="replicas" in spec, ready=int(ready or 0))
