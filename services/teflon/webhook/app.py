"""The webhook's two HTTP faces, built by ``create_app``: ingest (Falco) and ops (probes, metrics, rates).

Two apps on two ports rather than one: the ingest port may require client certificates, the ops port is
plain cluster-internal HTTP, and neither must expose the other's routes. Routes are thin adapters over
``WebhookService``; errors become HTTP answers only in the exception handlers at the bottom.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from teflon.common.logthrottle import throttle
from teflon.common.serving import BoundedMethods
from teflon.common.wire import RateSnapshot, RatesQuery
from teflon.webhook.actions import ClusterActions
from teflon.webhook.alert import (
    Alert,
    AlertRejected,
    IngestError,
    RejectReason,
    decode_body,
    is_ndjson,
    parse_one,
)
from teflon.webhook.intake import request_body
from teflon.webhook.service import QueueFull, ShuttingDown, WebhookService
from teflon.webhook.settings import Settings
from teflon.webhook.stream import STREAM_PATH, StreamGate, stream_router
from teflon.webhook.telemetry import Telemetry

log = logging.getLogger(__name__)

# Alerts validated between two chances for the event loop to serve other requests (about 5 ms).
_PARSE_SLICE = 100
# Bodies above this (Falco's own are a few KiB) are batches: parsed in slices, one batch at a time, so
# that concurrent batches cannot each add a slice to every turn of the loop.
_BATCH_BYTES = 64 * 1024
_HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

_STATUS = {
    RejectReason.BODY_TOO_LARGE: 413,
    RejectReason.LINE_TOO_LARGE: 413,
    RejectReason.UNSUPPORTED_MEDIA_TYPE: 415,
    RejectReason.INVALID_JSON: 400,
    RejectReason.EMPTY: 400,
    RejectReason.INVALID_ALERT: 422,
    RejectReason.UNKNOWN_PRIORITY: 422,
    RejectReason.QUEUE_FULL: 503,
}


class RejectedItem(BaseModel):
    index: int
    reason: RejectReason
    detail: str


class IngestReply(BaseModel):
    """Answer to an accepted request; a batch lists the items that failed validation, none lost silently."""

    accepted: int
    rejected: list[RejectedItem] = []


class ErrorReply(BaseModel):
    error: RejectReason | Literal["shutting_down"]
    detail: str
    accepted: int = 0
    rejected: list[RejectedItem] = []


class BatchRejected(IngestError):
    """Every alert of a request failed validation."""

    def __init__(self, errors: list[AlertRejected]) -> None:
        super().__init__(errors[0].detail)
        self.errors = errors


@dataclass
class WebhookApp:
    """What ``create_app`` builds: both ASGI apps, the service they share and the gate of alert streams."""

    ingest: FastAPI
    ops: FastAPI
    service: WebhookService
    registry: CollectorRegistry
    streams: StreamGate


def _parsed(body: bytes, content_type: str) -> Iterator[Alert | AlertRejected]:
    """Each document of one request body as an alert or the reason it was refused, in order."""
    docs = decode_body(body, ndjson=is_ndjson(content_type))
    if not docs:
        raise AlertRejected(RejectReason.EMPTY, "the batch holds no alerts")
    received = datetime.now(UTC)
    batch = len(docs) > 1 or body.lstrip()[:1] == b"["
    for i, doc in enumerate(docs):
        try:
            yield parse_one(doc, received=received, index=i if batch else None)
        except AlertRejected as exc:
            yield exc


def parse_request(body: bytes, content_type: str) -> tuple[list[Alert], list[AlertRejected]]:
    """Alerts from one request body, and the items that failed validation."""
    alerts: list[Alert] = []
    errors: list[AlertRejected] = []
    for item in _parsed(body, content_type):
        (errors if isinstance(item, AlertRejected) else alerts).append(item)  # type: ignore[arg-type]
    return alerts, errors


async def parse_request_yielding(body: bytes, content_type: str) -> tuple[list[Alert], list[AlertRejected]]:
    """``parse_request`` that lets the event loop run between slices of a large batch.

    Validating a batch of thousands of alerts takes tens of milliseconds; probes and other senders
    share the loop (a thread would not help: parsing holds the GIL).
    """
    alerts: list[Alert] = []
    errors: list[AlertRejected] = []
    for n, item in enumerate(_parsed(body, content_type), start=1):
        (errors if isinstance(item, AlertRejected) else alerts).append(item)  # type: ignore[arg-type]
        if n % _PARSE_SLICE == 0:
            await asyncio.sleep(0)
    return alerts, errors


def _items(errors: list[AlertRejected]) -> list[RejectedItem]:
    return [
        RejectedItem(index=e.index or 0, reason=e.reason, detail=e.detail)
        for e in errors
        if e.index is not None
    ]


def _ingest_router(service: WebhookService, settings: Settings, telemetry: Telemetry) -> APIRouter:
    router = APIRouter()
    batches = asyncio.Semaphore(1)

    async def ingest(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        async with request_body(request, settings.max_body_bytes, service.memory) as body:
            if len(body) > _BATCH_BYTES:
                async with batches:
                    alerts, errors = await parse_request_yielding(body, content_type)
            else:
                alerts, errors = parse_request(body, content_type)
        if not alerts:
            raise BatchRejected(errors)
        for err in errors:
            telemetry.rejected.labels(err.reason.value).inc()
        if errors:
            log.warning(
                "alerts rejected from a batch",
                extra={"accepted": len(alerts), "rejected": len(errors), "first_error": errors[0].detail},
            )
        service.submit(alerts, body_bytes=len(body))
        # Serialised directly: this answer is on Falco's output thread's clock, and FastAPI's response
        # validation of a model we just built would only add time.
        reply = IngestReply(accepted=len(alerts), rejected=_items(errors))
        return Response(reply.model_dump_json(), status_code=202, media_type="application/json")

    for path in ("/v1/falco", "/"):
        router.add_api_route(
            path,
            ingest,
            methods=["POST"],
            status_code=202,
            response_class=Response,
            responses={202: {"model": IngestReply}},
            summary="Receive Falco alerts",
        )
    return router


def _ops_router(service: WebhookService, telemetry: Telemetry) -> APIRouter:
    router = APIRouter()
    hostname = service.settings.pod_name or socket.gethostname()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        ok, checks = await service.ready()
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        # Rendered in a thread: a large registry must not hold up probes and ingest on the event loop.
        body = await asyncio.to_thread(generate_latest, telemetry.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/rates")
    async def rates(query: Annotated[RatesQuery, Query()]) -> RateSnapshot:
        entries = service.rates.entries(
            query.scope,
            query.signal,
            query.window,
            namespace=query.namespace,
            kind=query.kind,
            name=query.name,
            min_priority=query.min_priority,
            rule=query.rule,
        )
        policy = service.policy()
        held = service.responder.scaling.held(policy.guardrail, query) if policy is not None else []
        return RateSnapshot(
            scope=query.scope,
            signal=query.signal,
            window_seconds=query.window,
            generated_at=datetime.now(UTC),
            replica=hostname,
            complete=service.rates.complete,
            entries=entries,
            held=held,
        )

    return router


def _install_handlers(app: FastAPI, telemetry: Telemetry) -> None:
    async def rejected(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, AlertRejected):  # pragma: no cover - registered for this type only
            raise exc
        telemetry.rejected.labels(exc.reason.value).inc()
        log.warning("alert rejected", extra={"reason": exc.reason.value, "detail": exc.detail})
        reply = ErrorReply(error=exc.reason, detail=exc.detail)
        return JSONResponse(reply.model_dump(mode="json"), status_code=_STATUS[exc.reason])

    async def batch_rejected(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, BatchRejected):  # pragma: no cover - registered for this type only
            raise exc
        for err in exc.errors:
            telemetry.rejected.labels(err.reason.value).inc()
        first = exc.errors[0]
        log.warning(
            "alert rejected",
            extra={"reason": first.reason.value, "detail": first.detail, "rejected": len(exc.errors)},
        )
        reply = ErrorReply(error=first.reason, detail=first.detail, rejected=_items(exc.errors))
        return JSONResponse(reply.model_dump(mode="json"), status_code=_STATUS[first.reason])

    async def queue_full(_request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, QueueFull):  # pragma: no cover - registered for this type only
            raise exc
        telemetry.rejected.labels(RejectReason.QUEUE_FULL.value).inc(exc.dropped)
        log.warning(
            "alert queue full; alerts dropped", extra={"dropped": exc.dropped, "accepted": exc.accepted}
        )
        reply = ErrorReply(error=RejectReason.QUEUE_FULL, detail=str(exc), accepted=exc.accepted)
        return JSONResponse(reply.model_dump(mode="json"), status_code=503, headers={"Retry-After": "1"})

    async def shutting_down(_request: Request, exc: Exception) -> JSONResponse:
        reply = ErrorReply(error="shutting_down", detail=str(exc))
        return JSONResponse(reply.model_dump(mode="json"), status_code=503)

    app.add_exception_handler(AlertRejected, rejected)
    app.add_exception_handler(BatchRejected, batch_rejected)
    app.add_exception_handler(QueueFull, queue_full)

    async def client_gone(_request: Request, _exc: Exception) -> Response:
        # The sender closed the connection before its whole body arrived: no alert was received and
        # nobody is left to answer. A line at INFO, not an ERROR traceback per truncated request.
        log.info("client disconnected before its request body arrived")
        return Response(status_code=400)

    app.add_exception_handler(ShuttingDown, shutting_down)
    app.add_exception_handler(ClientDisconnect, client_gone)


def create_app(
    settings: Settings, *, actions: ClusterActions | None = None, registry: CollectorRegistry | None = None
) -> WebhookApp:
    """Build the ingest and ops apps around one ``WebhookService``.

    ``actions`` is the cluster to act on (None: no cluster, dry run only); ``registry`` receives every
    instrument (a fresh one by default, so apps never share counters).
    """
    registry = registry if registry is not None else CollectorRegistry()
    telemetry = Telemetry(
        registry, namespace_label=settings.metrics_namespace_label, max_series=settings.metrics_max_series
    )
    # Every refusal is logged, and a sender can cause as many as it likes: at most a few lines per kind.
    throttle(log, logging.getLogger("uvicorn.error"))
    service = WebhookService(settings, telemetry=telemetry, actions=actions)

    ingest = FastAPI(title="teflon webhook ingest", docs_url=None, redoc_url=None, openapi_url=None)
    ingest.include_router(_ingest_router(service, settings, telemetry))
    streams = StreamGate(settings.max_streams, telemetry)
    ingest.include_router(stream_router(service, telemetry, streams, settings.max_body_bytes))
    _install_handlers(ingest, telemetry)
    # Request counts and latency only: the default set adds size histograms that cost time on every
    # alert and say little about a receiver whose bodies are bounded anyway. A stream lasts as long as
    # its sender (hours): its own counters describe it, a request latency would not.
    http = Instrumentator(registry=registry, should_group_status_codes=False, excluded_handlers=[STREAM_PATH])
    http.add(metrics.requests(registry=registry))
    http.add(metrics.latency(buckets=_HTTP_BUCKETS, registry=registry))
    http.instrument(ingest)
    ingest.add_middleware(BoundedMethods)  # added last: outermost, before the request metrics

    ops = FastAPI(title="teflon webhook ops", docs_url=None, redoc_url=None)
    ops.include_router(_ops_router(service, telemetry))
    ops.add_middleware(BoundedMethods)
    return WebhookApp(ingest=ingest, ops=ops, service=service, registry=registry, streams=streams)
