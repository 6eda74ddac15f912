"""``POST /v1/falco/stream`` over real sockets: lines handled as they arrive, and the attacks on a stream.

The webhook's ingest app runs in uvicorn on 127.0.0.1 (the server ``python -m teflon.webhook`` runs, on
the same keepalive socket); the client writes raw HTTP/1.1 chunks so each test decides exactly which
bytes have arrived when it looks at the counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from teflon.webhook.app import WebhookApp, create_app
from teflon.webhook.settings import Settings
from teflon.webhook.stream import STREAM_PATH, LineSplitter, keepalive_listener

from .conftest import REAL_ALERTS, load, make_settings

LINES = [json.dumps(load(p)).encode() + b"\n" for p in REAL_ALERTS]
GOOD = LINES[3]


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll a counter of the server under test (same loop, other tasks) for up to ten seconds."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within 10 s: {what}")


class RawStream:
    """One chunked HTTP/1.1 request to the stream route, written chunk by chunk."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, content_type: str = "application/x-ndjson") -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            f"POST {STREAM_PATH} HTTP/1.1\r\nHost: teflon-webhook\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def end(self) -> tuple[int, dict[str, str], Any]:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()
        return await self.reply()

    async def reply(self) -> tuple[int, dict[str, str], Any]:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *fields = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields if f)}
        body = await self.reader.readexactly(int(headers["content-length"]))
        self.writer.close()
        return int(status_line.split()[1]), headers, json.loads(body)

    def cut(self) -> None:
        self.writer.transport.abort()


class Served:
    def __init__(self, app: WebhookApp, port: int) -> None:
        self.app, self.port = app, port

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.app.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    def accepted(self) -> float:
        """Alerts counted by ``teflon_webhook_alerts_total``, over every label set."""
        return sum(
            s.value
            for m in self.app.registry.collect()
            for s in m.samples
            if s.name == "teflon_webhook_alerts_total"
        )

    def rejected(self, reason: str) -> float:
        return self.metric("teflon_webhook_alerts_rejected_total", {"reason": reason})

    def streams(self, result: str) -> float:
        return self.metric("teflon_webhook_streams_total", {"result": result})

    async def stream(self, content_type: str = "application/x-ndjson") -> RawStream:
        return await RawStream.open(self.port, content_type)


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    running: list[tuple[WebhookApp, _Server, asyncio.Task[None]]] = []

    async def start(settings: Settings | None = None) -> Served:
        app = create_app(settings or make_settings(), registry=CollectorRegistry())
        await app.service.start()
        listener = keepalive_listener("127.0.0.1", 0)
        config = uvicorn.Config(app.ingest, lifespan="off", log_config=None, access_log=False)
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]))
        running.append((app, server, task))
        await until(lambda: server.started, "uvicorn started")
        return Served(app, listener.getsockname()[1])

    yield start
    for app, server, task in running:
        app.streams.close()
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        await app.service.stop()


async def test_each_line_is_counted_and_queued_when_its_newline_arrives(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    await stream.send(LINES[0])
    await until(lambda: served.accepted() == 1, "the first line counted while the body is open")
    half = len(LINES[1]) // 2
    await stream.send(LINES[1][:half])
    await asyncio.sleep(0.3)
    assert served.accepted() == 1, "half a line is not an alert yet"
    await stream.send(LINES[1][half:] + LINES[2])  # the rest of one line and a whole next one
    await until(lambda: served.accepted() == 3, "both lines counted when their newlines arrived")
    assert served.metric("teflon_webhook_streams_open") == 1
    status, _, reply = await stream.end()
    assert (status, reply) == (202, {"accepted": 3, "rejected": {}, "errors": []})
    assert served.streams("completed") == 1
    assert served.metric("teflon_webhook_streams_open") == 0
    await asyncio.wait_for(served.app.service.queue.join(), 10)  # the workers took all three


async def test_every_real_alert_streams_through_in_one_request(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    for line in LINES:
        await stream.send(line)
    status, _, reply = await stream.end()
    assert status == 202
    assert reply["accepted"] == len(LINES)
    assert served.accepted() == len(LINES)


BAD_LINES = [
    (b"{\n", "invalid_json"),
    (b'{"rule": 1, "priority": "Notice"}\n', "invalid_alert"),
    (b'{"rule": "r", "priority": "Urgent"}\n', "unknown_priority"),
    (b"7\n", "invalid_alert"),
    (b'\xff{"rule": "r"}\n', "invalid_json"),
]


async def test_bad_lines_are_counted_by_reason_and_skipped_without_ending_the_stream(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="teflon.webhook")
    served = await serve()
    stream = await served.stream()
    await stream.send(GOOD)
    for line, _reason in BAD_LINES:
        await stream.send(line + b"\n")  # the blank line after each is skipped, not counted
    await stream.send(GOOD)
    await until(lambda: served.accepted() == 2, "the good line after the bad ones counted")
    status, _, reply = await stream.end()
    assert status == 202
    assert reply["accepted"] == 2
    assert reply["rejected"] == {"invalid_json": 2, "invalid_alert": 2, "unknown_priority": 1}
    assert [(e["line"], e["reason"]) for e in reply["errors"]] == [
        (i, reason) for i, (_, reason) in enumerate(BAD_LINES, start=2)
    ]
    assert "line 2" in reply["errors"][0]["detail"]
    for reason, count in reply["rejected"].items():
        assert served.rejected(reason) == count
    warnings = [r for r in caplog.records if r.getMessage() == "alert rejected from a stream"]
    assert len(warnings) == 1, "one warning per stream, not one per bad line"
    (ended,) = [r for r in caplog.records if r.getMessage() == "alert stream ended"]
    fields = ended.__dict__
    assert (fields["accepted"], fields["rejected"], fields["result"]) == (2, 5, "completed")


async def test_an_over_long_line_is_refused_as_it_passes_the_limit_and_skipped(serve: Serve) -> None:
    served = await serve(make_settings(max_body_bytes=4096))
    stream = await served.stream()
    await stream.send(GOOD)
    for _ in range(2):
        await stream.send(b'{"rule": "r", "priority": "Notice", "output": "' + b"x" * 1500)
    await asyncio.sleep(0.2)
    assert served.rejected("line_too_large") == 0, "3 KB of a line is within the limit"
    await stream.send(b"x" * 1500)
    await until(lambda: served.rejected("line_too_large") == 1, "refused before its newline arrives")
    for _ in range(64):  # 4 MiB more of the same line: skipped, never buffered, counted once
        await stream.send(b"x" * 65536)
    await stream.send(b'"}\n' + GOOD)
    await until(lambda: served.accepted() == 2, "the line after the over-long one counted")
    status, _, reply = await stream.end()
    assert status == 202
    assert reply["accepted"] == 2
    assert reply["rejected"] == {"line_too_large": 1}
    assert reply["errors"][0]["line"] == 2
    assert "over the limit of 4096 bytes" in reply["errors"][0]["detail"]
    assert served.rejected("line_too_large") == 1


async def test_a_cut_stream_keeps_every_line_it_received(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    await stream.send(LINES[0] + LINES[1] + LINES[2][:40])
    await until(lambda: served.accepted() == 2, "two whole lines counted")
    stream.cut()
    await until(lambda: served.streams("cut") == 1, "the cut noticed")
    assert served.accepted() == 2
    assert served.rejected("invalid_json") == 1, "the cut half line is counted, not silently gone"
    assert served.metric("teflon_webhook_streams_open") == 0
    await asyncio.wait_for(served.app.service.queue.join(), 10)


async def test_a_whole_alert_without_its_newline_is_kept_when_the_stream_is_cut(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    await stream.send(LINES[0] + LINES[1].rstrip(b"\n"))
    await until(lambda: served.accepted() == 1, "the first line counted")
    stream.cut()
    await until(lambda: served.streams("cut") == 1, "the cut noticed")
    assert served.accepted() == 2
    assert served.rejected("invalid_json") == 0


async def test_a_stalled_stream_stays_open_loses_nothing_and_blocks_no_other_sender(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    await stream.send(LINES[0] + LINES[1])
    await stream.send(LINES[2][:100])  # and then nothing, mid-line, for a while
    await until(lambda: served.accepted() == 2, "the lines before the stall counted")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as client:
        resp = await client.post("/v1/falco", content=GOOD, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202
    await asyncio.sleep(2)  # no idle timeout: Falco may have nothing to say for hours
    assert served.metric("teflon_webhook_streams_open") == 1
    assert served.accepted() == 3
    await stream.send(LINES[2][100:] + LINES[3])
    status, _, reply = await stream.end()
    assert (status, reply["accepted"]) == (202, 4)


async def test_streams_over_the_limit_are_refused_and_the_rest_of_ingest_goes_on(serve: Serve) -> None:
    served = await serve(make_settings(max_streams=2))
    first, second = await served.stream(), await served.stream()
    await first.send(GOOD)
    await second.send(GOOD)
    await until(lambda: served.accepted() == 2, "both admitted streams counted a line")
    third = await served.stream()
    status, headers, reply = await third.reply()
    assert (status, reply["error"], reply["accepted"]) == (503, "too_many_streams", 0)
    assert headers["retry-after"] == "1"
    assert served.streams("refused") == 1
    assert served.accepted() == 2
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}") as client:
        resp = await client.post("/v1/falco", content=GOOD, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202
    assert (await first.end())[0] == 202
    await until(lambda: served.metric("teflon_webhook_streams_open") == 1, "a slot freed")
    fourth = await served.stream()
    await fourth.send(GOOD)
    assert (await fourth.end())[2]["accepted"] == 1
    assert (await second.end())[2]["accepted"] == 1


async def test_two_hundred_open_streams_take_a_slot_each_and_the_next_is_refused(serve: Serve) -> None:
    served = await serve(make_settings(max_streams=200))
    streams = [await served.stream() for _ in range(200)]
    for stream in streams:
        await stream.send(GOOD)
    await until(lambda: served.accepted() == 200, "a line from each of 200 streams")
    assert served.metric("teflon_webhook_streams_open") == 200
    extra = await served.stream()
    assert (await extra.reply())[0] == 503
    for stream in streams:
        stream.cut()
    await until(lambda: served.streams("cut") == 200, "every cut stream released")
    assert served.metric("teflon_webhook_streams_open") == 0


async def test_shutdown_ends_open_streams_after_the_lines_they_received(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream()
    await stream.send(LINES[0] + LINES[1])
    await until(lambda: served.accepted() == 2, "two lines counted")
    served.app.streams.close()
    status, headers, reply = await stream.reply()
    assert (status, reply["error"], reply["accepted"]) == (503, "shutting_down", 2)
    assert headers["connection"] == "close"
    assert served.streams("shutdown") == 1
    late = await served.stream()
    assert (await late.reply())[2]["error"] == "shutting_down"


async def test_a_stream_that_is_not_json_is_refused_before_it_is_read(serve: Serve) -> None:
    served = await serve()
    stream = await served.stream(content_type="text/plain")
    status, _, reply = await stream.reply()
    assert (status, reply["error"]) == (415, "unsupported_media_type")
    assert "json_output: true" in reply["detail"]
    assert served.metric("teflon_webhook_streams_open") == 0


async def test_the_ingest_socket_probes_idle_peers_with_tcp_keepalive() -> None:
    listener = keepalive_listener("127.0.0.1", 0)
    with listener, socket.create_connection(listener.getsockname()):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60


async def test_the_ingest_socket_answers_without_waiting_for_a_delayed_ack() -> None:
    listener = keepalive_listener("127.0.0.1", 0)
    with listener, socket.create_connection(listener.getsockname()):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


_LINE_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@given(
    lines=st.lists(_LINE_BYTES, max_size=12),
    tail=_LINE_BYTES,
    limit=st.integers(min_value=1, max_value=16),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=20),
)
def test_line_splitter_yields_exactly_the_lines_and_never_holds_more_than_one(
    lines: list[bytes], tail: bytes, limit: int, cuts: list[int]
) -> None:
    data = b"".join(line + b"\n" for line in lines) + tail
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    splitter = LineSplitter(limit)
    got: list[bytes | None] = []
    for start, end in itertools.pairwise(bounds):
        got += splitter.feed(data[start:end])
        assert splitter.pending <= limit
    got.append(splitter.finish())
    expected: list[bytes | None] = [line if len(line) <= limit else None for line in lines]
    expected += [None, b""] if len(tail) > limit else [tail]
    assert got == expected
