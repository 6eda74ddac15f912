"""Falco's ``program_output`` as a transport: one long-lived NDJSON request, ingested line by line.

``POST /v1/falco/stream`` takes an NDJSON body of any length, typically chunked (``curl -T -`` uploading
the alert lines Falco writes to the program's stdin), and handles each line when its newline arrives:
parsed, counted and queued exactly like an alert posted to ``/v1/falco``. A bad line is counted by reason
and skipped; the stream goes on. The size limit (``max_body_bytes``) is per line: a line is refused as
soon as it passes the limit and skipped up to its newline, so a stream never holds more than one line and
one chunk in memory. A full queue drops and counts the line, as it does for ``/v1/falco``.

There is deliberately no idle timeout: Falco writes only when a rule fires, and a quiet node may send
nothing for hours. What bounds the cost instead: at most ``max_streams`` streams per process (more are
answered 503, and the sender retries), TCP keepalive on the ingest socket (a sender that vanished without
closing frees its slot within about two minutes), and the sender checks every ingest request passes
(mTLS, NetworkPolicy). A stream is answered only when it ends: 202 with its counts when the sender closes
its body; 503 when the webhook shuts down, after every line already received was queued, so the sender
reconnects to another replica.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.types import Message, Receive

from teflon.webhook.alert import AlertRejected, RejectReason, decode_line, is_ndjson, parse_one
from teflon.webhook.service import QueueFull, ShuttingDown, WebhookService
from teflon.webhook.telemetry import Telemetry

log = logging.getLogger(__name__)

STREAM_PATH = "/v1/falco/stream"
#: Rejected lines a reply lists one by one; the counts by reason cover all of them.
MAX_LISTED_ERRORS = 20
# A peer that vanished without a FIN or RST is probed after a minute of silence and dropped after six
# unanswered probes ten seconds apart.
_KEEPALIVE_IDLE, _KEEPALIVE_INTERVAL, _KEEPALIVE_COUNT = 60, 10, 6


class StreamEnd(StrEnum):
    """How a stream ended; the ``result`` label of ``teflon_webhook_streams_total``."""

    COMPLETED = "completed"
    CUT = "cut"
    SHUTDOWN = "shutdown"
    REFUSED = "refused"


class StreamError(BaseModel):
    line: int
    reason: RejectReason
    detail: str


class StreamReply(BaseModel):
    """Answer to a stream once it ended: every line is either accepted or counted in ``rejected``."""

    accepted: int
    rejected: dict[RejectReason, int] = {}
    errors: list[StreamError] = []
    error: Literal["shutting_down", "too_many_streams"] | None = None


class LineSplitter:
    """Cuts a byte stream into lines of at most ``limit`` bytes, holding at most one unfinished line.

    ``feed`` returns the complete lines of a chunk, with ``None`` in place of a line that passed the limit
    (reported once, as soon as it passes; its remaining bytes are dropped up to its newline).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._partial = bytearray()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line held in memory."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> list[bytes | None]:
        lines: list[bytes | None] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._skipping:
                self._skipping = False
            elif len(self._partial) + end - start > self.limit:
                lines.append(None)
                self._partial.clear()
            elif self._partial:
                self._partial += chunk[start:end]
                lines.append(bytes(self._partial))
                self._partial.clear()
            else:
                lines.append(chunk[start:end])
            start = end + 1
        if self._skipping or start == len(chunk):
            return lines
        if len(self._partial) + len(chunk) - start > self.limit:
            lines.append(None)
            self._partial.clear()
            self._skipping = True
        else:
            self._partial += chunk[start:]
        return lines

    def finish(self) -> bytes:
        """The unterminated last line (empty if the stream ended on a newline or inside a refused line)."""
        rest = bytes(self._partial)
        self._partial.clear()
        self._skipping = False
        return rest


class StreamGate:
    """Admits at most ``limit`` open streams, and ends them all when the webhook shuts down."""

    def __init__(self, limit: int, telemetry: Telemetry) -> None:
        self.limit = limit
        self.open = 0
        self.closing = asyncio.Event()
        telemetry.streams_open.set_function(lambda: float(self.open))

    def enter(self) -> bool:
        if self.closing.is_set() or self.open >= self.limit:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1

    def close(self) -> None:
        """End every open stream after the lines it already received, and refuse new ones."""
        self.closing.set()


class StreamIngest:
    """One stream: its lines go to the service one at a time as they complete."""

    def __init__(self, service: WebhookService, telemetry: Telemetry, limit: int) -> None:
        self.service = service
        self.telemetry = telemetry
        self.splitter = LineSplitter(limit)
        self.lines = 0
        self.accepted = 0
        self.rejected: Counter[RejectReason] = Counter()
        self.errors: list[StreamError] = []

    def feed(self, chunk: bytes) -> None:
        """Handle every line ``chunk`` completes; ``ShuttingDown`` once the service takes no more alerts."""
        lines = self.splitter.feed(chunk)
        if lines:
            received = datetime.now(UTC)
            for line in lines:
                self._line(line, received)

    def finish(self) -> None:
        """Handle the unterminated last line: a whole alert is kept even if its newline never came."""
        rest = self.splitter.finish()
        if rest.strip():
            self._line(rest, datetime.now(UTC))

    def _line(self, line: bytes | None, received: datetime) -> None:
        if line is not None and not line.strip():
            return
        self.lines += 1
        if line is None:
            limit = self.splitter.limit
            self._reject(RejectReason.LINE_TOO_LARGE, f"line is over the limit of {limit} bytes")
            return
        try:
            alert = parse_one(decode_line(line, self.lines), received=received)
        except AlertRejected as exc:
            self._reject(exc.reason, exc.detail)
            return
        try:
            self.service.submit([alert], body_bytes=len(line))
        except QueueFull:
            self._reject(RejectReason.QUEUE_FULL, "alert queue full: line dropped")
            return
        self.accepted += 1

    def _reject(self, reason: RejectReason, detail: str) -> None:
        self.telemetry.rejected.labels(reason.value).inc()
        if not self.rejected:  # one line per stream here; the end of the stream logs the totals
            log.warning("alert rejected from a stream", extra={"reason": reason.value, "detail": detail})
        self.rejected[reason] += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(StreamError(line=self.lines, reason=reason, detail=detail))

    def reply(self, error: Literal["shutting_down", "too_many_streams"] | None = None) -> StreamReply:
        return StreamReply(
            accepted=self.accepted, rejected=dict(self.rejected), errors=self.errors, error=error
        )


async def _next_message(receive: Receive, closing: asyncio.Future[Literal[True]]) -> Message | None:
    """The next ASGI message of the request, or None once the gate closes first."""
    message = asyncio.ensure_future(receive())
    try:
        await asyncio.wait((message, closing), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when this request is cancelled itself: no read may outlive the stream.
        if not message.done():
            message.cancel()
    return message.result() if message.done() and not message.cancelled() else None


async def run_stream(stream: StreamIngest, receive: Receive, gate: StreamGate) -> StreamEnd:
    """Feed ``stream`` until its body ends, its sender goes away or the gate closes."""
    closing = asyncio.ensure_future(gate.closing.wait())
    try:
        while True:
            message = await _next_message(receive, closing)
            if message is None:
                end = StreamEnd.SHUTDOWN
                break
            if message["type"] == "http.disconnect":
                end = StreamEnd.CUT
                break
            stream.feed(message.get("body", b""))
            if not message.get("more_body", False):
                end = StreamEnd.COMPLETED
                break
            if closing.done():
                end = StreamEnd.SHUTDOWN
                break
        stream.finish()
    except ShuttingDown:
        return StreamEnd.SHUTDOWN
    finally:
        closing.cancel()
    return end


def _answer(reply: StreamReply, status: int, *, close: bool = False) -> Response:
    headers = {"Connection": "close", "Retry-After": "1"} if close else None
    body = reply.model_dump_json(exclude_none=True)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def stream_router(service: WebhookService, telemetry: Telemetry, gate: StreamGate, limit: int) -> APIRouter:
    """``POST /v1/falco/stream``; ``limit`` is the largest line in bytes."""
    router = APIRouter()

    async def ingest_stream(request: Request) -> Response:
        is_ndjson(request.headers.get("content-type", ""))  # a non-JSON type is refused before reading
        if not gate.enter():
            telemetry.streams.labels(StreamEnd.REFUSED.value).inc()
            error: Literal["shutting_down", "too_many_streams"] = (
                "shutting_down" if gate.closing.is_set() else "too_many_streams"
            )
            log.warning("alert stream refused", extra={"reason": error, "open": gate.open})
            return _answer(StreamReply(accepted=0, error=error), 503, close=True)
        stream = StreamIngest(service, telemetry, limit)
        started = time.monotonic()
        try:
            end = await run_stream(stream, request.receive, gate)
        finally:
            gate.leave()
        telemetry.streams.labels(end.value).inc()
        log.info(
            "alert stream ended",
            extra={
                "result": end.value,
                "accepted": stream.accepted,
                "rejected": sum(stream.rejected.values()),
                "seconds": round(time.monotonic() - started, 3),
            },
        )
        if end is StreamEnd.COMPLETED:
            return _answer(stream.reply(), 202)
        if end is StreamEnd.SHUTDOWN:
            return _answer(stream.reply("shutting_down"), 503, close=True)
        return Response(status_code=400)  # cut: nobody is left to read an answer

    router.add_api_route(
        STREAM_PATH,
        ingest_stream,
        methods=["POST"],
        status_code=202,
        response_class=Response,
        responses={202: {"model": StreamReply}, 503: {"model": StreamReply}},
        summary="Receive a stream of Falco alerts, one JSON alert per line (program_output)",
    )
    return router


def keepalive_listener(host: str, port: int) -> socket.socket:
    """The ingest socket, with TCP keepalive and no Nagle delay, which accepted connections inherit (Linux).

    Streams have no idle timeout, so a sender whose node vanished must be detected by the kernel.
    asyncio turns Nagle's algorithm off only on sockets created with ``IPPROTO_TCP`` as protocol,
    which ``create_server`` does not pass: without ``TCP_NODELAY`` here, every answer whose headers
    and body leave in two writes waits for the sender's delayed ACK (~40 ms), and a sender that
    posts one alert at a time (Falco's http_output) gets about 25 answers a second.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, _KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _KEEPALIVE_COUNT)
    return sock
