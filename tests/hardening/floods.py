"""Floods over real sockets against the real server processes, and what they are measured by.

``Server`` runs ``python -m teflon.webhook`` or ``python -m teflon.metrics`` on 127.0.0.1;
``Watch`` samples the server's resident memory and times ``/healthz`` while an attack runs; the
``send_*`` helpers speak raw HTTP/1.1, so methods, declared lengths and stalls are whatever the
attacker chooses, not what a client library allows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.harness.stats import percentile

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
_UNITS = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}


def chart_memory_limit(component: str) -> int:
    """The container memory limit the chart's default values give ``component``, in bytes."""
    values = yaml.safe_load((REPO / "charts" / "teflon" / "values.yaml").read_text(encoding="utf-8"))
    text = str(values[component]["resources"]["limits"]["memory"])
    return int(text[:-2]) * _UNITS[text[-2:]]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@dataclass
class Server:
    """A server process on loopback; ``ports`` by role (ingest, ops, api)."""

    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    tls: ssl.SSLContext | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, port: str = "ops", timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, self.ports[port], timeout=timeout)
        try:
            conn.request("GET", path)
            answer = conn.getresponse()
            return answer.status, answer.read()
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(module: str, env: dict[str, str], ports: dict[str, int], ready_port: str = "ops") -> Server:
    full = {"PATH": os.environ.get("PATH", ""), **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = Server(proc, ports)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{module} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if server.get("/healthz", ready_port, timeout=1)[0] == 200:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{module} did not answer /healthz within 30 s")


@dataclass
class Watch:
    """Peak RSS of the server and its ``/healthz`` latencies while the ``with`` block runs."""

    server: Server
    interval: float = 0.02
    peak_rss: int = 0
    latencies: list[float] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def slowest_health(self) -> float:
        return max(self.latencies, default=0.0)

    def health_percentile(self, q: float) -> float:
        """The ``q`` (0 to 1) quantile of the /healthz latencies (``tests.harness.stats.percentile``)."""
        return percentile(self.latencies, q * 100) if self.latencies else 0.0

    def _sample_memory(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_bytes(self.server.pid))
            time.sleep(self.interval)

    @contextlib.contextmanager
    def running(self) -> Iterator[Watch]:
        prober = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.hardening.prober",
                str(self.server.ports["ops"]),
                str(self.interval),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        sampler = threading.Thread(target=self._sample_memory, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            time.sleep(0.5)  # and a little after
            self._stop.set()
            sampler.join()
            out, _ = prober.communicate(timeout=30)
            doc = json.loads(out)
            self.latencies, self.failed_checks = doc["latencies"], doc["failures"]


def connect(port: int, tls: ssl.SSLContext | None = None, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=HOST)
    return sock


def status_of(sock: socket.socket) -> int:
    """The status code of the first answer on ``sock`` (0 when the server closed without one)."""
    head = b""
    while b"\r\n" not in head:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            return 0
        if not chunk:
            return 0
        head += chunk
    return int(head.split(b" ", 2)[1])


def send_request(
    port: int,
    *,
    method: str = "POST",
    path: str = "/",
    body: bytes = b"",
    content_type: str = "application/json",
    tls: ssl.SSLContext | None = None,
) -> int:
    """One request on its own connection; its status code (0 if the server closed without answering)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    with connect(port, tls) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        return status_of(sock)


def stall(port: int, *, declared: int, sent: int) -> socket.socket:
    """A connection that declares ``declared`` body bytes, sends ``sent`` of them and then waits."""
    sock = connect(port)
    head = (
        f"POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(head.encode("ascii") + b"[" + b" " * (sent - 1))
    return sock


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (answering first or not) within ``seconds``."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def flood(task: Callable[[Any], int], items: Sequence[Any], concurrency: int = 10) -> dict[int, int]:
    """Run ``task`` over ``items`` on ``concurrency`` threads; how many answers had each status."""
    counts: dict[int, int] = {}
    with ThreadPoolExecutor(concurrency) as pool:
        for status in pool.map(task, items):
            counts[status] = counts.get(status, 0) + 1
    return counts
