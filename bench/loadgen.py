"""The load generator every benchmark uses: raw HTTP/1.1 keep-alive connections on asyncio streams.

A hand-rolled client rather than an HTTP library so the client costs a few microseconds per request and
the server, not the generator, is what runs out of CPU. Fixed-rate runs are open loop: each request has
a scheduled send time and its latency counts from that time, so a stalled server cannot hide its
queueing behind a waiting client (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class Connection:
    """One keep-alive HTTP/1.1 connection that posts bodies and reads the status of each answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host.encode()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host)

    async def request(
        self, method: bytes, path: bytes, body: bytes = b"", ctype: bytes = b"application/json"
    ) -> tuple[int, bytes]:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            method,
            path,
            self.host,
            ctype,
            len(body),
        )
        self.writer.write(head + body)
        line = await self.reader.readline()
        if not line:
            raise ConnectionResetError("the server closed the connection")
        status = int(line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        payload = await self.reader.readexactly(length) if length else b""
        return status, payload

    async def post(self, path: bytes, body: bytes, ctype: bytes = b"application/json") -> int:
        return (await self.request(b"POST", path, body, ctype))[0]

    def close(self) -> None:
        self.writer.close()


async def get_text(host: str, port: int, path: str) -> str:
    conn = await Connection.open(host, port)
    try:
        status, body = await conn.request(b"GET", path.encode())
    finally:
        conn.close()
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}")
    return body.decode()


@dataclass
class Outcome:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: int) -> None:
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def errors(self) -> int:
        return self.sent - self.statuses.get(202, 0)


async def closed_loop(
    host: str, port: int, path: bytes, body: Callable[[int], bytes], *, seconds: float, connections: int
) -> Outcome:
    """Each connection posts the next alert as soon as the previous answer arrives, for ``seconds``."""
    out = Outcome()
    stop = time.monotonic() + seconds
    counter = iter(range(1 << 62))

    async def loop() -> None:
        conn = await Connection.open(host, port)
        try:
            while time.monotonic() < stop:
                out.count(await conn.post(path, body(next(counter))))
        finally:
            conn.close()

    started = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(connections)))
    out.seconds = time.monotonic() - started
    return out


async def open_loop(
    host: str,
    port: int,
    path: bytes,
    body: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    pool: int = 64,
) -> Outcome:
    """``rate`` requests per second on a schedule; latency from each request's scheduled time."""
    conns: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(await Connection.open(host, port))
    out = Outcome()

    async def one(scheduled: float, i: int) -> None:
        conn = await conns.get()
        try:
            status = await conn.post(path, body(i))
        finally:
            conns.put_nowait(conn)
        out.latencies_ms.append((time.monotonic() - scheduled) * 1000)
        out.count(status)

    total = int(rate * seconds)
    start = time.monotonic() + 0.05
    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, i)))
    await asyncio.gather(*tasks)
    out.seconds = time.monotonic() - start
    while not conns.empty():
        conns.get_nowait().close()
    return out
