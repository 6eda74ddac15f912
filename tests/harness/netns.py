"""Network namespaces that give a test's server process its own address on this machine.

The aggregator (and any other client of a Service) refuses loopback endpoints, so a server that should
be reached "inside" the cluster needs an address of its own. ``NetNamespace`` makes one:

* a network namespace ``teflon-ns<N>`` joined to the host by a veth pair;
* the host end gets ``10.250.0.<4N+1>/30``, the namespace end ``10.250.0.<4N+2>/30`` (``ns.ip``). The
  /30 lives only on this machine, and the namespace has no default route: traffic stays on this host;
* the namespace's own ``127.0.0.1:<api port>`` is bridged (socat over a Unix socket) to the host's API
  server, so processes inside use the cluster's ordinary kubeconfig unchanged.

Processes started with ``ns.run([...])`` run inside the namespace and are stopped (SIGTERM, then
SIGKILL) when the namespace is closed; the namespace and its veth pair are then deleted.

Most tests want ``Cluster.netns_service`` (in ``harness.cluster``), which also creates a Service without
selector whose EndpointSlice points at ``ns.ip``. Needs root and iproute2 + socat.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

SUBNET = ipaddress.IPv4Network("10.250.0.0/24")
MAX_SLOTS = SUBNET.num_addresses // 4 - 1  # slot 0 is left unused; slots 1..63
PREFIX = "teflon-ns"


class NetnsError(RuntimeError):
    """Creating or using a network namespace failed."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


class NetNamespace:
    """A network namespace with its own address; use as a context manager."""

    def __init__(self, api_port: int | None = None) -> None:
        if shutil.which("ip") is None:
            raise NetnsError("iproute2 (`ip`) is not installed; run `make tools`")
        self._api_port = api_port
        self._procs: list[subprocess.Popen[bytes]] = []
        self._bridge: list[subprocess.Popen[bytes]] = []
        self.slot = self._allocate()
        self._tmp = Path(tempfile.mkdtemp(prefix="teflon-netns-"))
        self.name = f"{PREFIX}{self.slot}"
        base = int(SUBNET.network_address) + 4 * self.slot
        self.host_ip = str(ipaddress.IPv4Address(base + 1))
        self.ip = str(ipaddress.IPv4Address(base + 2))
        try:
            self._wire()
            if api_port is not None:
                self._bridge_api(api_port)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _allocate() -> int:
        # `ip netns add` fails if the name exists, which makes it an atomic claim on the slot even
        # with several test sessions running at once.
        for slot in range(1, MAX_SLOTS + 1):
            proc = subprocess.run(
                ["ip", "netns", "add", f"{PREFIX}{slot}"], capture_output=True, text=True, check=False
            )
            if proc.returncode == 0:
                return slot
            if "exists" not in proc.stderr and "File exists" not in proc.stderr:
                raise NetnsError(f"ip netns add {PREFIX}{slot}: {proc.stderr.strip()}")
        raise NetnsError(f"all {MAX_SLOTS} {PREFIX}* network namespaces are in use")

    def _wire(self) -> None:
        host_if, ns_if = f"tfh{self.slot}", f"tfn{self.slot}"
        with contextlib.suppress(NetnsError):  # a leftover from a killed session
            _ip("link", "del", host_if)
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ip}/30", "dev", ns_if)
        _ip("-n", self.name, "link", "set", ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def _bridge_api(self, port: int) -> None:
        if shutil.which("socat") is None:
            raise NetnsError("socat is not installed; run `make tools`")
        sock = self._tmp / "api.sock"
        host = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{sock},fork,mode=600", f"TCP:127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._bridge.append(host)
        deadline = time.monotonic() + 5
        while not sock.exists():
            if host.poll() is not None or time.monotonic() > deadline:
                raise NetnsError("the host side of the API bridge did not start")
            time.sleep(0.02)
        inner = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.name,
                "socat",
                f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                f"UNIX-CONNECT:{sock}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._bridge.append(inner)
        self.wait_for_port("127.0.0.1", port, timeout=5)

    def run(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdout: int | IO[bytes] | None = None,
        stderr: int | IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``cmd`` inside the namespace; it is stopped when the namespace closes.

        ``env`` is added to this process's environment.
        """
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *cmd], env=full_env, cwd=cwd, stdout=stdout, stderr=stderr
        )
        self._procs.append(proc)
        return proc

    def exec(self, cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace to completion and return its output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_for_port(self, host: str, port: int, timeout: float = 15) -> None:
        """Wait until something inside the namespace accepts TCP connections on ``host:port``."""
        deadline = time.monotonic() + timeout
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
        while True:
            if self.exec(["python3", "-c", probe], timeout=5).returncode == 0:
                return
            self.check_alive()
            if time.monotonic() > deadline:
                raise NetnsError(f"nothing listens on {host}:{port} in {self.name} after {timeout}s")
            time.sleep(0.1)

    def check_alive(self) -> None:
        """Raise ``NetnsError`` if a process started with ``run`` has exited."""
        for proc in self._procs:
            if proc.poll() is not None:
                raise NetnsError(f"{proc.args!r} exited with {proc.returncode}")

    def close(self) -> None:
        for proc in [*self._procs, *self._bridge]:
            _stop(proc)
        with contextlib.suppress(NetnsError):
            _ip("netns", "del", self.name)
        with contextlib.suppress(NetnsError):
            _ip("link", "del", f"tfh{self.slot}")
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
