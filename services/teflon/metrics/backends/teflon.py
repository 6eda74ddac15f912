"""The built-in backend: Falco alert and response counts from the webhook's rate API.

Every webhook replica keeps its own windowed counts, so the backend asks all of them, found through the
webhook Service's EndpointSlices, and adds the counts up. Counts travel on the wire (not rates) so the
sum is exact; the per-minute rate is computed here from the window that was asked for.

One replica that fails makes the whole answer an error: a sum over the replicas that happened to answer
would be a silently low number, and a low alert rate is exactly what must not be fabricated.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol

import httpx
from pydantic import ValidationError

from teflon.common import kube
from teflon.common.wire import HeldObject, Priority, RateScope, RateSnapshot, RatesQuery
from teflon.metrics.backends import BackendError, InvalidMetricSelector, Series, Target
from teflon.metrics.config import MetricDef, TeflonBackend
from teflon.metrics.selectors import Selector
from teflon.metrics.telemetry import Telemetry

log = logging.getLogger(__name__)

#: metricLabelSelector keys the rate API can filter on, and the query parameter each becomes.
SELECTOR_KEYS = {"minPriority": "minPriority", "rule": "rule"}


class ReplicaFinder(Protocol):
    """Where the webhook replicas are: base URLs of their ops ports."""

    async def replicas(self) -> list[str]: ...


class StaticReplicas:
    """A fixed list of replica base URLs (tests, benchmarks, out-of-cluster runs)."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._urls = [u.rstrip("/") for u in urls]

    async def replicas(self) -> list[str]:
        return list(self._urls)


class EndpointSliceReplicas:
    """Ready endpoints of a Service's port, read from ``discovery.k8s.io/v1`` EndpointSlices."""

    def __init__(self, client: kube.KubeClient, namespace: str, service: str, port_name: str) -> None:
        self._client = client
        self._namespace = namespace
        self._service = service
        self._port_name = port_name

    async def replicas(self) -> list[str]:
        path = kube.RESOURCES["EndpointSlice"].path(self._namespace)
        try:
            doc = await self._client.get(
                path, params={"labelSelector": f"kubernetes.io/service-name={self._service}"}
            )
        except kube.KubeError as exc:
            raise BackendError(f"cannot list endpoints of {self._namespace}/{self._service}: {exc}") from exc
        urls: set[str] = set()
        for eps in doc.get("items", []):
            port = next(
                (p.get("port") for p in eps.get("ports") or [] if p.get("name", "") == self._port_name), None
            )
            if port is None:
                continue
            for ep in eps.get("endpoints") or []:
                # ready unset means ready (the API documents nil as "unknown, treat as ready")
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                addresses = ep.get("addresses") or []
                if addresses:
                    host = addresses[0]
                    host = f"[{host}]" if ":" in host else host
                    urls.add(f"http://{host}:{port}")
        return sorted(urls)


def _filters(selector: Selector, metric: MetricDef) -> dict[str, str]:
    """Rate API filters: those fixed in the metric definition, then those of the selector."""
    fixed = {"minPriority": metric.min_priority, "rule": metric.rule}
    params = {k: v for k, v in fixed.items() if v}
    for req in selector.requirements:
        param = SELECTOR_KEYS.get(req.key)
        if param is None or req.op != "=":
            raise InvalidMetricSelector(
                f"the teflon backend filters on {' and '.join(f'{k}=<value>' for k in SELECTOR_KEYS)} "
                f"only, not {req.key!r} ({req.op})"
            )
        if param == "minPriority":
            try:
                params[param] = Priority.parse(req.values[0]).label
            except ValueError as exc:
                raise InvalidMetricSelector(str(exc)) from exc
        else:
            params[param] = req.values[0]
        if fixed[param] and params[param] != fixed[param]:
            raise InvalidMetricSelector(f"metric {metric.name} is defined with {param}={fixed[param]}")
    return params


def _query(metric: MetricDef, selector: Selector, **where: object) -> RatesQuery:
    """The rate API query for ``metric``: its signal and window, the filters, and ``where`` it counts."""
    return RatesQuery.model_validate(
        {"signal": metric.signal, "window": metric.window_seconds, **_filters(selector, metric), **where}
    )


def _hold(rates: dict[str, float], held: list[HeldObject]) -> dict[str, float]:
    """Apply the webhook's guardrail to ``rates``: an error for a held object, or its capped value.

    Raises ``BackendError`` for an object held without a cap: the metrics API then answers an error
    and the HPA keeps its replica count, instead of scaling a compromised workload out on its own
    alerts. A cap (``hold: cap``) replaces the value by at most the rate before the response.
    """
    out = dict(rates)
    for h in held:
        if h.cap_per_minute is None:
            raise BackendError(
                f"{h.kind} {h.namespace}/{h.name} is held until {h.until.isoformat(timespec='seconds')}: "
                f"teflon enforced a response on it at {h.since.isoformat(timespec='seconds')}, so its "
                "alert rates do not drive scaling (webhook.policy.guardrail)"
            )
        out[h.name] = min(out.get(h.name, 0.0), h.cap_per_minute)
    return out


class TeflonRates:
    """``Backend`` over the webhook's ``GET /v1/rates`` on every replica."""

    def __init__(
        self,
        cfg: TeflonBackend,
        finder: ReplicaFinder,
        telemetry: Telemetry,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._cfg = cfg
        self._finder = finder
        self._telemetry = telemetry
        self._http = http or httpx.AsyncClient(
            timeout=cfg.timeout_seconds, limits=httpx.Limits(max_connections=64)
        )

    async def _ask(self, url: str, query: RatesQuery) -> RateSnapshot:
        try:
            resp = await self._http.get(f"{url}/v1/rates", params=query.params())
        except httpx.HTTPError as exc:
            raise BackendError(f"webhook replica {url}: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise BackendError(f"webhook replica {url}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            snap = RateSnapshot.model_validate_json(resp.content)
        except ValidationError as exc:
            raise BackendError(f"webhook replica {url}: malformed rate snapshot: {exc}") from exc
        if not query.answered_by(snap):
            raise BackendError(
                f"webhook replica {url} answered scope={snap.scope} signal={snap.signal} "
                f"window={snap.window_seconds} for {query.params()}"
            )
        if not snap.complete:
            log.warning("webhook replica dropped tracked objects; counts may be low", extra={"url": url})
        return snap

    async def _counts(self, query: RatesQuery) -> tuple[dict[tuple[str, str, str], int], list[HeldObject]]:
        """Counts summed over every replica, and the objects any replica holds (the guardrail)."""
        urls = await self._finder.replicas()
        if not urls:
            raise BackendError("no ready webhook replica to ask for alert rates")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._cfg.timeout_seconds), asyncio.TaskGroup() as group:
                # a task group, not gather: the first failing replica cancels the others' queries
                tasks = [group.create_task(self._ask(u, query)) for u in urls]
        except TimeoutError as exc:
            self._telemetry.backend_error("teflon", "timeout")
            raise BackendError(
                f"webhook replicas did not answer within {self._cfg.timeout_seconds}s"
            ) from exc
        except BaseExceptionGroup as group_error:
            self._telemetry.backend_error("teflon", "error")
            failed = [e for e in group_error.exceptions if isinstance(e, BackendError)]
            if failed:
                raise failed[0] from None
            raise
        finally:
            self._telemetry.backend_latency("teflon", time.perf_counter() - started)
        snaps = [t.result() for t in tasks]
        total: dict[tuple[str, str, str], int] = {}
        held: list[HeldObject] = []
        for snap in snaps:
            held.extend(snap.held)
            for e in snap.entries:
                key = (e.namespace, e.kind, e.name)
                total[key] = total.get(key, 0) + e.count
        return total, held

    async def fetch(self, metric: MetricDef, target: Target) -> dict[str, float]:
        rtype = target.rtype
        one = target.names[0] if len(target.names) == 1 else None
        if rtype.resource == "namespaces":
            where: dict[str, object] = {"scope": RateScope.NAMESPACE, "namespace": one}
        else:
            where = {
                "scope": RateScope.POD if rtype.kind == "Pod" else RateScope.WORKLOAD,
                "namespace": target.namespace,
                "kind": None if rtype.kind == "Pod" else rtype.kind,
                "name": one,
            }
        counts, held = await self._counts(_query(metric, target.metric_selector, **where))
        wanted = set(target.names)
        per_object: dict[str, int] = {}
        for (ns, kind, name), count in counts.items():
            if rtype.resource == "namespaces":
                if kind != "Namespace":
                    continue
            elif kind != rtype.kind or (target.namespace is not None and ns != target.namespace):
                continue
            if name in wanted:
                per_object[name] = per_object.get(name, 0) + count
        # sum exact counts first, divide once: the rate is as exact as a float can be
        rates = {name: count * 60.0 / metric.window_seconds for name, count in per_object.items()}
        return _hold(rates, [h for h in held if h.kind == rtype.kind and h.name in wanted])

    async def fetch_external(self, metric: MetricDef, namespace: str, selector: Selector) -> list[Series]:
        counts, _held = await self._counts(
            _query(metric, selector, scope=RateScope.NAMESPACE, namespace=namespace)
        )
        total = sum(c for (ns, kind, name), c in counts.items() if kind == "Namespace" and name == namespace)
        return [Series({"namespace": namespace}, total * 60.0 / metric.window_seconds)]

    async def aclose(self) -> None:
        await self._http.aclose()
