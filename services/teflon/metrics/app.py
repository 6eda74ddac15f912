"""The HTTP layer: the API app (HTTPS, authenticated) and the ops app (plain HTTP, probes and scrapes).

Routes are adapters: they parse the URL into a ``MetricPath``, authenticate and authorize it, ask the
``MetricsProvider``, and shape the answer for the requested version. Every error leaves through an
exception handler as a Kubernetes ``Status`` object with the matching code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator
from pydantic import BaseModel

from teflon.common.serving import BoundedMethods
from teflon.metrics import wire
from teflon.metrics.auth import Attributes, Authenticator, Authorizer, Headers, UserInfo
from teflon.metrics.errors import Forbidden, InvalidRequest, NotFound, Unauthenticated, install_error_handlers
from teflon.metrics.paths import CUSTOM, EXTERNAL, HEALTH_PATHS, check_name, parse_metric_path, path_kind
from teflon.metrics.provider import ExternalValue, MetricsProvider, MetricValue
from teflon.metrics.selectors import Selector, SelectorError, parse_selector
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import client_chain

log = logging.getLogger(__name__)


def _json(model: BaseModel) -> Response:
    # serialized by pydantic-core in one pass; 1,000-item lists are the common HPA answer
    return Response(wire.dump_json(model), media_type="application/json")


def metric_value_list(version: str, values: list[MetricValue]) -> BaseModel:
    """The ``MetricValueList`` of ``version`` for ``values``.

    Items are built as plain documents and validated in one pass by pydantic-core: a ``pods/*`` answer
    for a large Deployment has a thousand items, and per-item model construction in Python dominated the
    cached path.
    """
    stamps: dict[datetime, str] = {}
    selectors: dict[Selector, dict[str, Any] | None] = {}
    items: list[dict[str, Any]] = []
    for v in values:
        stamp = stamps.get(v.timestamp)
        if stamp is None:
            stamp = stamps[v.timestamp] = wire.format_time(v.timestamp)
        if v.selector not in selectors:
            selectors[v.selector] = v.selector.to_label_selector()
        d = v.described
        item: dict[str, Any] = {
            "describedObject": {
                "kind": d.kind,
                "namespace": d.namespace,
                "name": d.name,
                "apiVersion": d.api_version,
            },
            "timestamp": stamp,
            "value": wire.format_quantity(v.value),
        }
        if version == "v1beta1":
            item |= {"metricName": v.metric, "window": v.window_seconds, "selector": selectors[v.selector]}
        else:
            item |= {
                "metric": {"name": v.metric, "selector": selectors[v.selector]},
                "windowSeconds": v.window_seconds,
            }
        items.append(item)
    if version == "v1beta1":
        return wire.MetricValueListV1Beta1.model_validate({"items": items})
    return wire.MetricValueListV1Beta2.model_validate({"items": items})


class RenderedLists:
    """Serialized answers for value lists the provider served from its cache.

    A cached ``pods/*`` answer is the same list object each time; rendering its thousand items once per
    cache period instead of once per request keeps cache hits cheap. Entries hold their list, so an
    identity match cannot be a recycled ``id``.
    """

    def __init__(self, size: int = 16) -> None:  # a few MB at most: large answers are the point
        self._size = size
        self._entries: dict[tuple[str, int], tuple[list[MetricValue], bytes]] = {}

    def body(self, version: str, values: list[MetricValue]) -> bytes:
        key = (version, id(values))
        hit = self._entries.get(key)
        if hit is not None and hit[0] is values:
            return hit[1]
        body = wire.dump_json(metric_value_list(version, values))
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (values, body)
        return body


def external_value_list(values: list[ExternalValue]) -> wire.ExternalMetricValueList:
    return wire.ExternalMetricValueList(
        items=[
            wire.ExternalMetricValue(
                metric_name=v.metric,
                metric_labels=v.labels,
                timestamp=wire.format_time(v.timestamp),
                window=v.window_seconds,
                value=wire.format_quantity(v.value),
            )
            for v in values
        ]
    )


@dataclass
class Components:
    """What the apps need; built by ``__main__`` from settings, or by tests from fakes."""

    provider: MetricsProvider
    authenticator: Authenticator
    authorizer: Authorizer
    telemetry: Telemetry
    registry: CollectorRegistry
    ready: Callable[[], bool]


def _parse_selector(text: str, what: str) -> Selector:
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise InvalidRequest(f"{what}: {exc}") from exc


class Gate:
    """Authenticates and authorizes one request; raises what the error handlers turn into Status."""

    def __init__(self, authenticator: Authenticator, authorizer: Authorizer) -> None:
        self._authenticator = authenticator
        self._authorizer = authorizer

    async def check(self, request: Request, attrs: Attributes) -> UserInfo:
        pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"]]
        user = await self._authenticator.authenticate(Headers(pairs), client_chain(request.scope))
        if user is None:
            raise Unauthenticated
        allowed, reason = await self._authorizer.authorize(user, attrs)
        if allowed:
            return user
        if attrs.path:
            raise Forbidden(
                f'forbidden: User "{user.name}" cannot get path "{attrs.path}"', wire.StatusDetails()
            )
        res = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f' in the namespace "{attrs.namespace}"' if attrs.namespace else ""
        because = f": {reason}" if reason else ""
        msg = (
            f'{attrs.resource}.{attrs.group} "{attrs.name}" is forbidden: User "{user.name}" cannot get '
            f'resource "{res}" in API group "{attrs.group}"{where}{because}'
        )
        raise Forbidden(msg, wire.StatusDetails(name=attrs.name, group=attrs.group, kind=attrs.resource))

    async def discovery(self, request: Request) -> UserInfo:
        return await self.check(request, Attributes(path=request.url.path))


def _add_discovery_routes(app: FastAPI, c: Components, gate: Gate) -> None:
    @app.get("/apis")
    async def apis(request: Request) -> Response:
        await gate.discovery(request)
        groups = [wire.api_group(wire.CUSTOM_GROUP, wire.CUSTOM_VERSIONS)]
        if c.provider.list_all_external_metrics():
            groups.append(wire.api_group(wire.EXTERNAL_GROUP, wire.EXTERNAL_VERSIONS))
        return _json(wire.APIGroupList(groups=groups))

    @app.get(CUSTOM)
    async def custom_group(request: Request) -> Response:
        await gate.discovery(request)
        return _json(wire.api_group(wire.CUSTOM_GROUP, wire.CUSTOM_VERSIONS))

    @app.get(CUSTOM + "/{version}")
    async def custom_resources(version: str, request: Request) -> Response:
        if version not in wire.CUSTOM_VERSIONS:
            raise NotFound("the server could not find the requested resource")
        await gate.discovery(request)
        resources = [
            wire.APIResource(name=f"{i.resource}/{i.metric}", namespaced=i.namespaced, kind="MetricValueList")
            for i in c.provider.list_all_metrics()
        ]
        return _json(
            wire.APIResourceList(group_version=f"{wire.CUSTOM_GROUP}/{version}", resources=resources)
        )

    @app.get(EXTERNAL)
    async def external_group(request: Request) -> Response:
        await gate.discovery(request)
        return _json(wire.api_group(wire.EXTERNAL_GROUP, wire.EXTERNAL_VERSIONS))

    @app.get(EXTERNAL + "/v1beta1")
    async def external_resources(request: Request) -> Response:
        await gate.discovery(request)
        resources = [
            wire.APIResource(name=name, namespaced=True, kind="ExternalMetricValueList")
            for name in c.provider.list_all_external_metrics()
        ]
        return _json(
            wire.APIResourceList(group_version=f"{wire.EXTERNAL_GROUP}/v1beta1", resources=resources)
        )


def _add_metric_routes(app: FastAPI, c: Components, gate: Gate) -> None:
    rendered = RenderedLists()

    @app.get(CUSTOM + "/{version}/{rest:path}")
    async def custom_metric(version: str, rest: str, request: Request) -> Response:
        mp = parse_metric_path(version, rest)
        await gate.check(request, mp.attributes)
        q = request.query_params
        metric_selector = _parse_selector(q.get("metricLabelSelector", ""), "metricLabelSelector")
        if mp.name == "*":
            label_selector = q.get("labelSelector", "")
            _parse_selector(label_selector, "labelSelector")
            values = await c.provider.get_metric_by_selector(
                mp.resource, mp.namespace, label_selector, mp.metric, metric_selector
            )
            return Response(rendered.body(version, values), media_type="application/json")
        value = await c.provider.get_metric_by_name(
            mp.resource, mp.namespace, mp.name, mp.metric, metric_selector
        )
        return _json(metric_value_list(version, [value]))

    @app.get(EXTERNAL + "/v1beta1/namespaces/{namespace}/{metric}")
    async def external_metric(namespace: str, metric: str, request: Request) -> Response:
        check_name(namespace, "namespace")
        attrs = Attributes(namespace=namespace, group=wire.EXTERNAL_GROUP, version="v1beta1", resource=metric)
        await gate.check(request, attrs)
        # client-go lower-cases this path segment; configured names are lower-case too
        selector = _parse_selector(request.query_params.get("labelSelector", ""), "labelSelector")
        values = await c.provider.get_external_metric(namespace, metric.lower(), selector)
        return _json(external_value_list(values))


@dataclass(frozen=True)
class MetricsApp:
    """What ``create_app`` builds: both ASGI apps and the components they share."""

    api: FastAPI
    ops: FastAPI
    components: Components


def create_app(components: Components) -> MetricsApp:
    """Build the API app (HTTPS, authenticated) and the ops app (probes, scrapes) around ``components``.

    ``__main__`` builds the components from ``Settings``; tests build them from fakes.
    """
    return MetricsApp(api=_api_app(components), ops=_ops_app(components), components=components)


def _api_app(c: Components) -> FastAPI:
    """The API app, served on ``Settings.port`` over HTTPS."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="teflon metrics")
    Instrumentator(registry=c.registry, excluded_handlers=list(HEALTH_PATHS)).instrument(
        app, metric_namespace="teflon", metric_subsystem="metrics"
    )

    @app.middleware("http")
    async def _timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        c.telemetry.requests.labels(path_kind(request.url.path), str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    install_error_handlers(app)
    for path in HEALTH_PATHS:
        app.add_api_route(path, _health(c, path), methods=["GET"], include_in_schema=False)
    gate = Gate(c.authenticator, c.authorizer)
    _add_discovery_routes(app, c, gate)
    _add_metric_routes(app, c, gate)
    app.add_middleware(BoundedMethods)  # added last: outermost, before the request metrics
    return app


def _health(c: Components, path: str) -> Callable[[], Awaitable[JSONResponse]]:
    async def handler() -> JSONResponse:
        if path == "/readyz" and not c.ready():
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return handler


def _ops_app(c: Components) -> FastAPI:
    """The ops app on ``Settings.ops_port``: probes and ``/metrics``, plain HTTP, no authentication."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, title="teflon metrics ops")
    for path in HEALTH_PATHS:
        app.add_api_route(path, _health(c, path), methods=["GET"], include_in_schema=False)
    Instrumentator(registry=c.registry).expose(app, include_in_schema=False)
    app.add_middleware(BoundedMethods)
    return app
