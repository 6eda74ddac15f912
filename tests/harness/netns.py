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
import fcntl
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
# Which test process owns each namespace, so a later session can reap those of a killed one.
OWNERS = Path("/run/teflon-netns")


class NetnsError(RuntimeError):
    """Creating or using a network namespace failed."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


# setpriv (util-linux) sets the parent-death signal and execs; it survives `ip netns exec`, which
# execs in place too. If the test process is killed outright, its servers and bridges go with it.
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"]


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the PID it names one process, even after PID reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _netns_pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _abandoned(name: str) -> bool:
    """True if the test process that made namespace ``name`` is gone."""
    try:
        pid, start = (OWNERS / name).read_text().split()
    except (OSError, ValueError):
        # No owner record: judge by what runs inside; orphans (re-parented to init) have no owner.
        return all(_parent(p) == 1 for p in _netns_pids(name))
    return _start_time(int(pid)) != start


def _reap(name: str, slot: int) -> None:
    """Remove a namespace whose owning test process is gone, with whatever still runs inside."""
    for pid in _netns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for args in (("netns", "del", name), ("link", "del", f"tfh{slot}")):
        with contextlib.suppress(NetnsError):
            _ip(*args)
    (OWNERS / name).unlink(missing_ok=True)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def _reap_abandoned() -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        slot = name.removeprefix(PREFIX)
        if name.startswith(PREFIX) and slot.isdigit() and _abandoned(name):
            _reap(name, int(slot))


def _claim(name: str) -> bool:
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        if "exists" in proc.stderr:
            return False
        raise NetnsError(f"ip netns add {name}: {proc.stderr.strip()}")
    (OWNERS / name).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
    return True


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
        # `ip netns add` fails if the name exists, so it claims a slot atomically; the lock makes
        # the claim and the owner record one step, so no session reaps a namespace being set up.
        OWNERS.mkdir(parents=True, exist_ok=True)
        with (OWNERS / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _reap_abandoned()
            for slot in range(1, MAX_SLOTS + 1):
                name = f"{PREFIX}{slot}"
                if _claim(name):
                    return slot
                if _abandoned(name):
                    _reap(name, slot)
                    if _claim(name):
                        return slot
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
        # nodelay on both TCP ends: with Nagle's algorithm on, a client that writes its headers and
        # its body separately waits for the peer's delayed ACK (~40 ms) on every request, a delay a
        # pod talking to its API server does not have.
        if shutil.which("socat") is None:
            raise NetnsError("socat is not installed; run `make tools`")
        sock = self._tmp / "api.sock"
        host = subprocess.Popen(
            [
                *_DIE_WITH_PARENT,
                "socat",
                f"UNIX-LISTEN:{sock},fork,mode=600",
                f"TCP:127.0.0.1:{port},nodelay",
            ],
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
                *_DIE_WITH_PARENT,
                "ip",
                "netns",
                "exec",
                self.name,
                "socat",
                f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,nodelay",
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
            [*_DIE_WITH_PARENT, "ip", "netns", "exec", self.name, *cmd],
            env=full_env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
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
        (OWNERS / self.name).unlink(missing_ok=True)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
