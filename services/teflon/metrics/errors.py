"""The metrics server's one exception hierarchy, and its mapping to Kubernetes ``Status`` answers.

Every error a request can end in is a ``MetricsError`` carrying the ``Status`` reason and code (and,
for a refusal, its details); the exception handlers installed here are the only place that turns them
into HTTP. Routes and the provider raise, never build error responses.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from teflon.metrics import wire
from teflon.metrics.auth import AuthError

log = logging.getLogger("teflon.metrics.app")


class MetricsError(Exception):
    """Base of the server's errors; ``reason`` and ``code`` are the Kubernetes Status ones."""

    reason = "InternalError"
    code = 500
    details: wire.StatusDetails | None = None


class NotFound(MetricsError):
    """No such path, version or name."""

    reason, code = "NotFound", 404


class MetricNotFound(NotFound):
    """The metric is not configured for the resource."""


class ObjectNotFound(NotFound):
    """The described object does not exist, or has no value."""


class InvalidRequest(MetricsError):
    """A selector or parameter the server cannot use."""

    reason, code = "BadRequest", 400


class Unauthenticated(MetricsError):
    reason, code = "Unauthorized", 401

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class Forbidden(MetricsError):
    reason, code = "Forbidden", 403

    def __init__(self, message: str, details: wire.StatusDetails) -> None:
        super().__init__(message)
        self.details = details


class Unavailable(MetricsError):
    """The backend failed or did not answer in time: the HPA must hold its scale."""

    reason, code = "ServiceUnavailable", 503


def status_response(
    code: int, reason: str, message: str, details: wire.StatusDetails | None = None
) -> JSONResponse:
    body = wire.Status(message=message, reason=reason, code=code, details=details)
    return JSONResponse(wire.dump(body), status_code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error as a ``Status``: ours, authentication failures and the framework's own."""

    @app.exception_handler(MetricsError)
    async def _metrics_error(_: Request, exc: MetricsError) -> JSONResponse:
        if exc.code >= 500:
            log.warning("metric request failed", extra={"error": str(exc)})
        return status_response(exc.code, exc.reason, str(exc), exc.details)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, exc: AuthError) -> JSONResponse:
        log.warning("authentication or authorization could not be decided", extra={"error": str(exc)})
        return status_response(500, "InternalError", f"Internal error occurred: {exc}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "InternalError")
        message = (
            "the server could not find the requested resource" if exc.status_code == 404 else str(exc.detail)
        )
        return status_response(exc.status_code, reason, message)
