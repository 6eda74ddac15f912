"""Custom metrics URLs: what a path names, and the bounded label a request is counted under.

``parse_metric_path`` turns the part of ``/apis/custom.metrics.k8s.io/{version}/...`` after the version
into a ``MetricPath`` with the SubjectAccessReview attributes k8s.io/apiserver would derive from it; a
path that names no metric is ``NotFound``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from teflon.metrics import wire
from teflon.metrics.auth import Attributes
from teflon.metrics.errors import NotFound

HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CUSTOM = f"/apis/{wire.CUSTOM_GROUP}"
EXTERNAL = f"/apis/{wire.EXTERNAL_GROUP}"


@dataclass(frozen=True)
class MetricPath:
    """A custom metrics URL after ``/apis/custom.metrics.k8s.io/{version}/``."""

    version: str
    resource: str
    namespace: str | None  # the namespace of namespaced objects; None for root-scoped ones
    name: str  # "*" asks for every object the labelSelector selects
    metric: str
    attributes: Attributes


def _request_attributes(group: str, version: str, parts: list[str]) -> Attributes:
    """The SubjectAccessReview attributes of a resource path, as k8s.io/apiserver's RequestInfo does."""
    namespace = ""
    if parts[0] == "namespaces" and len(parts) > 1:
        namespace = parts[1]
        if len(parts) > 2:
            parts = parts[2:]
    return Attributes(
        namespace=namespace,
        group=group,
        version=version,
        resource=parts[0],
        name=parts[1] if len(parts) > 1 else "",
        subresource=parts[2] if len(parts) > 2 else "",
    )


def check_name(value: str, what: str, *, star: bool = False) -> str:
    if (star and value == "*") or (_DNS_NAME.match(value) and len(value) <= 253):
        return value
    raise NotFound(f"{what} {value!r} is not a valid Kubernetes name")


def parse_metric_path(version: str, rest: str) -> MetricPath:
    """Parse the part of a custom metrics URL after the version; ``NotFound`` if it is no metric URL."""
    if version not in wire.CUSTOM_VERSIONS:
        raise NotFound(f"the server could not find the requested resource (version {version})")
    parts = [p for p in rest.split("/") if p]
    attrs = _request_attributes(wire.CUSTOM_GROUP, version, parts) if parts else Attributes()
    if len(parts) == 4 and parts[0] == "namespaces" and parts[2] == "metrics":
        ns = check_name(parts[1], "namespace")
        return MetricPath(version, "namespaces", None, ns, parts[3], attrs)
    if len(parts) == 5 and parts[0] == "namespaces":
        ns = check_name(parts[1], "namespace")
        name = check_name(parts[3], "object name", star=True)
        return MetricPath(version, parts[2], ns, name, parts[4], attrs)
    if len(parts) == 3:
        name = check_name(parts[1], "object name", star=True)
        return MetricPath(version, parts[0], None, name, parts[2], attrs)
    raise NotFound("the server could not find the requested resource")


def path_kind(path: str) -> str:
    """A bounded label for request latency: what kind of path was asked."""
    if path in HEALTH_PATHS:
        return "health"
    if path.startswith(EXTERNAL + "/"):
        return "external" if path.count("/") >= 6 else "discovery"
    if path.startswith(CUSTOM + "/"):
        depth = path.count("/")
        if depth <= 3:
            return "discovery"
        return "selector" if "/*/" in path else "named"
    if path in ("/apis", CUSTOM, EXTERNAL):
        return "discovery"
    return "other"
