"""Data sources of metric values, behind one small ``Backend`` Protocol.

A backend answers "what is the value of this metric for these objects"; the provider decides which
objects are meant (resolving ``labelSelector`` through the Kubernetes API), caches, and shapes answers.
A backend never invents a value: a failure raises ``BackendError`` and a missing object is simply absent
from the answer, so the provider can tell "no data" from "zero" and "unreachable".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from teflon.metrics.config import MetricDef
from teflon.metrics.resources import ResourceType
from teflon.metrics.selectors import Selector


class BackendError(Exception):
    """The backend failed, timed out or answered something unusable; the HPA must hold."""


class InvalidMetricSelector(ValueError):
    """The ``metricLabelSelector`` asks for something this backend cannot filter on."""


@dataclass(frozen=True)
class Target:
    """The objects a metric is asked for: their type, namespace (None: root-scoped) and names."""

    rtype: ResourceType
    namespace: str | None
    names: tuple[str, ...]
    metric_selector: Selector = field(default_factory=Selector)


@dataclass(frozen=True)
class Series:
    """One value with the labels that identify it (external metrics report the labels)."""

    labels: dict[str, str]
    value: float


class Backend(Protocol):
    """A source of metric values."""

    async def fetch(self, metric: MetricDef, target: Target) -> dict[str, float]:
        """Values per object name; objects without data are absent. Raise ``BackendError`` on failure."""
        ...

    async def fetch_external(self, metric: MetricDef, namespace: str, selector: Selector) -> list[Series]:
        """Values for an external metric in ``namespace``; the HPA sums them."""
        ...

    async def aclose(self) -> None: ...
