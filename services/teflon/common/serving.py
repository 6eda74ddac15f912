"""Limits every teflon HTTP server applies to whatever arrives, before any route sees it.

- ``BoundedH11Protocol``: a request's line, headers and body must all arrive within ``request_seconds``
  of its first byte (and a new connection must send a request within that time). uvicorn itself only
  times out idle keep-alive connections, so a sender that stalls mid-headers or mid-body would otherwise
  hold its connection, and the body read so far, for as long as it likes. When the deadline passes the
  connection is closed; the app sees a disconnect and frees what it had buffered. Paths that take a
  body of unbounded duration (the webhook's alert stream) are given only the headers deadline.
- ``BoundedMethods``: an HTTP method outside RFC 9110's set reaches the app as ``other``. No route
  accepts it either way (405), but the method is a label of the request metrics, and a method is any
  token up to the header size limit: without this, each distinct one is a new series.
- ``server_limits``: the uvicorn settings that bound connections, header size and shutdown time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
OTHER_METHOD = "other"
# Falco's and the API server's requests have a few hundred bytes of headers; 8 KiB is plenty and halves
# what one connection may make the server hold before its request is even complete.
MAX_HEADER_BYTES = 8 * 1024
DEFAULT_REQUEST_SECONDS = 10.0
_RECEIVED = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR)


class BoundedMethods:
    """ASGI middleware: requests with a method outside ``KNOWN_METHODS`` reach the app as ``other``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") not in KNOWN_METHODS:
            scope = {**scope, "method": OTHER_METHOD}
        await self.app(scope, receive, send)


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each whole request (line, headers, body)."""

    request_seconds: float = DEFAULT_REQUEST_SECONDS
    streaming_paths: frozenset[str] = frozenset()

    _deadline: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_seconds, self._request_timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.debug("request not received in time; closing the connection", extra={"client": self.client})
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a request is closed too

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            self._arm()
        super().data_received(data)
        state = self.conn.their_state
        if state in _RECEIVED or (
            state is h11.SEND_BODY and self.scope is not None and self.scope["path"] in self.streaming_paths
        ):
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def bounded_h11(
    request_seconds: float,
    base: type[BoundedH11Protocol] = BoundedH11Protocol,
    *,
    streaming_paths: frozenset[str] = frozenset(),
) -> type[BoundedH11Protocol]:
    """A subclass of ``base`` (a ``BoundedH11Protocol``) with its own deadline and streaming paths."""
    attrs = {"request_seconds": request_seconds, "streaming_paths": streaming_paths}
    return type(base.__name__, (base,), attrs)


def server_limits(
    *, max_connections: int, keepalive_seconds: float, shutdown_seconds: float
) -> dict[str, Any]:
    """uvicorn ``Config`` keyword arguments bounding connections, header size and graceful shutdown.

    Past ``max_connections`` open connections (or requests in progress) uvicorn answers 503 at once.
    """
    return {
        "limit_concurrency": max_connections,
        "timeout_keep_alive": keepalive_seconds,
        "timeout_graceful_shutdown": shutdown_seconds,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
