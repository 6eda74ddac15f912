"""The provider: the seam between HTTP routes and data sources.

``MetricsProvider`` follows custom-metrics-apiserver's provider contract: listing (which never fails: it
comes from the validated configuration), one value for a named object, and values for the objects a
label selector picks. ``ConfiguredProvider`` implements it from the metrics config, the backends, the
Kubernetes object lister and the cache. Errors are typed here and mapped to ``Status`` at the edge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from teflon.metrics.backends import Backend, BackendError, InvalidMetricSelector, Series, Target
from teflon.metrics.cache import QueryCache
from teflon.metrics.config import MetricDef, MetricsConfig
from teflon.metrics.errors import InvalidRequest, MetricNotFound, ObjectNotFound, Unavailable
from teflon.metrics.resources import (
    BadSelector,
    ObjectLister,
    ObjectLookupFailed,
    ResourceType,
    resource_type,
)
from teflon.metrics.selectors import Selector
from teflon.metrics.telemetry import Telemetry

T = TypeVar("T")

#: The aggregator gives up on an extension server after 5 s; answer (or fail) well before that.
REQUEST_DEADLINE_SECONDS = 4.5


@dataclass(frozen=True)
class MetricInfo:
    """One metric for one resource, as discovery lists it."""

    resource: str
    namespaced: bool
    metric: str


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    api_version: str


@dataclass(frozen=True)
class MetricValue:
    described: ObjectRef
    metric: str
    timestamp: datetime
    window_seconds: int
    value: float
    selector: Selector


@dataclass(frozen=True)
class ExternalValue:
    metric: str
    labels: dict[str, str]
    timestamp: datetime
    window_seconds: int
    value: float


class MetricsProvider(Protocol):
    def list_all_metrics(self) -> list[MetricInfo]: ...

    async def get_metric_by_name(
        self, resource: str, namespace: str | None, name: str, metric: str, metric_selector: Selector
    ) -> MetricValue: ...

    async def get_metric_by_selector(
        self,
        resource: str,
        namespace: str | None,
        label_selector: str,
        metric: str,
        metric_selector: Selector,
    ) -> list[MetricValue]: ...

    def list_all_external_metrics(self) -> list[str]: ...

    async def get_external_metric(
        self, namespace: str, metric: str, selector: Selector
    ) -> list[ExternalValue]: ...


class ConfiguredProvider:
    """``MetricsProvider`` over the configured metrics and backends."""

    def __init__(
        self,
        config: MetricsConfig,
        backends: Mapping[str, Backend],
        objects: ObjectLister,
        telemetry: Telemetry,
        *,
        cache: QueryCache[object] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        deadline: float = REQUEST_DEADLINE_SECONDS,
    ) -> None:
        self._deadline = deadline
        self._metrics = config.all_metrics()
        self._by_key = {(r, m.name): m for m in self._metrics for r in m.resources}
        self._external = {m.name: m for m in self._metrics if m.external}
        self._backends = backends
        self._objects = objects
        self._telemetry = telemetry
        self._cache: QueryCache[object] = cache or QueryCache(telemetry)
        self._now = now

    def _bounded(self, compute: Callable[[], Awaitable[T]], metric: str) -> Callable[[], Awaitable[T]]:
        """``compute`` under the request deadline: object lookups plus backend queries stay inside it."""

        async def run() -> T:
            try:
                async with asyncio.timeout(self._deadline):
                    return await compute()
            except TimeoutError as exc:
                raise Unavailable(
                    f"unable to fetch metric {metric}: no answer within {self._deadline}s"
                ) from exc

        return run

    def list_all_metrics(self) -> list[MetricInfo]:
        out = []
        for m in self._metrics:
            for r in m.resources:
                rtype = resource_type(r)
                out.append(MetricInfo(r, rtype.namespaced if rtype else True, m.name))
        return out

    def list_all_external_metrics(self) -> list[str]:
        return sorted(self._external)

    def _lookup(self, resource: str, metric: str, what: str) -> tuple[MetricDef, ResourceType]:
        mdef = self._by_key.get((resource, metric))
        rtype = resource_type(resource)
        if mdef is None or rtype is None:
            raise MetricNotFound(f"the server could not find the metric {metric} for {resource}{what}")
        return mdef, rtype

    def _scope(self, rtype: ResourceType, namespace: str | None) -> str | None:
        if rtype.namespaced and namespace is None:
            raise MetricNotFound(f"{rtype.resource} are namespaced; ask under /namespaces/{{namespace}}/")
        if not rtype.namespaced and namespace is not None:
            raise MetricNotFound(f"{rtype.resource} are not namespaced")
        return namespace

    async def _fetch(self, mdef: MetricDef, target: Target) -> dict[str, float]:
        backend = self._backends.get(mdef.backend)
        if backend is None:
            raise Unavailable(f"backend {mdef.backend} is not running")
        try:
            values = await backend.fetch(mdef, target)
        except BackendError as exc:
            raise Unavailable(f"unable to fetch metric {mdef.name}: {exc}") from exc
        except InvalidMetricSelector as exc:
            raise InvalidRequest(f"metricLabelSelector: {exc}") from exc
        self._telemetry.fresh(mdef.name)
        return values

    def _ref(self, rtype: ResourceType, namespace: str | None, name: str) -> ObjectRef:
        return ObjectRef(rtype.kind, namespace or "", name, rtype.api_version)

    async def get_metric_by_name(
        self, resource: str, namespace: str | None, name: str, metric: str, metric_selector: Selector
    ) -> MetricValue:
        mdef, rtype = self._lookup(resource, metric, f" {name}")
        ns = self._scope(rtype, namespace)

        async def compute() -> MetricValue:
            try:
                exists = await self._objects.exists(rtype, ns, name)
            except ObjectLookupFailed as exc:
                raise Unavailable(f"cannot look up {resource} {name}: {exc}") from exc
            if not exists:
                where = f" in namespace {ns}" if ns else ""
                raise ObjectNotFound(f'{resource} "{name}" not found{where}')
            when = self._now()
            values = await self._fetch(mdef, Target(rtype, ns, (name,), metric_selector))
            if name in values:
                value = values[name]
            elif mdef.empty_is_zero:
                value = 0.0
            else:
                raise MetricNotFound(f"the server could not find the metric {metric} for {resource} {name}")
            return MetricValue(
                self._ref(rtype, ns, name), metric, when, mdef.window_seconds, value, metric_selector
            )

        key = ("name", metric, resource, ns, name, metric_selector.text)
        result = await self._cache.get(key, mdef.cache_seconds, self._bounded(compute, metric))
        assert isinstance(result, MetricValue)  # noqa: S101 - the key space is ours
        return result

    async def get_metric_by_selector(
        self,
        resource: str,
        namespace: str | None,
        label_selector: str,
        metric: str,
        metric_selector: Selector,
    ) -> list[MetricValue]:
        mdef, rtype = self._lookup(resource, metric, f" with selector {label_selector!r}")
        ns = self._scope(rtype, namespace)

        async def compute() -> list[MetricValue]:
            try:
                names = await self._objects.list_names(rtype, ns, label_selector)
            except BadSelector as exc:
                raise InvalidRequest(f"labelSelector {label_selector!r}: {exc}") from exc
            except ObjectLookupFailed as exc:
                raise Unavailable(f"cannot list {resource}: {exc}") from exc
            if not names:
                return []
            when = self._now()
            values = await self._fetch(mdef, Target(rtype, ns, tuple(names), metric_selector))
            if not values and not mdef.empty_is_zero:
                raise MetricNotFound(
                    f"the server could not find the metric {metric} for {resource} "
                    f"with selector {label_selector!r}"
                )
            out = []
            for n in names:
                if n in values or mdef.empty_is_zero:
                    out.append(
                        MetricValue(
                            self._ref(rtype, ns, n),
                            metric,
                            when,
                            mdef.window_seconds,
                            values.get(n, 0.0),
                            metric_selector,
                        )
                    )
            return out

        key = ("selector", metric, resource, ns, label_selector, metric_selector.text)
        result = await self._cache.get(key, mdef.cache_seconds, self._bounded(compute, metric))
        assert isinstance(result, list)  # noqa: S101 - the key space is ours
        return result

    async def get_external_metric(
        self, namespace: str, metric: str, selector: Selector
    ) -> list[ExternalValue]:
        mdef = self._external.get(metric)
        if mdef is None:
            raise MetricNotFound(f"the server could not find the external metric {metric}")
        backend = self._backends.get(mdef.backend)
        if backend is None:
            raise Unavailable(f"backend {mdef.backend} is not running")

        async def compute() -> list[ExternalValue]:
            when = self._now()
            try:
                series: list[Series] = await backend.fetch_external(mdef, namespace, selector)
            except BackendError as exc:
                raise Unavailable(f"unable to fetch external metric {metric}: {exc}") from exc
            except InvalidMetricSelector as exc:
                raise InvalidRequest(f"labelSelector: {exc}") from exc
            self._telemetry.fresh(mdef.name)
            if not series:
                if not mdef.empty_is_zero:
                    raise MetricNotFound(f"the server could not find the external metric {metric}")
                series = [Series({}, 0.0)]
            return [ExternalValue(metric, s.labels, when, mdef.window_seconds, s.value) for s in series]

        key = ("external", metric, namespace, selector.text)
        result = await self._cache.get(key, mdef.cache_seconds, self._bounded(compute, metric))
        assert isinstance(result, list)  # noqa: S101 - the key space is ours
        return result
