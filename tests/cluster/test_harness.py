"""The harness's network namespaces: real addresses for test servers, and nothing left behind."""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.harness.cluster import ROOT, Cluster
from tests.harness.netns import OWNERS, SUBNET, NetNamespace

pytestmark = pytest.mark.cluster


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_namespace_gives_a_server_its_own_address_and_the_api_server_its_loopback(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text("hello from the namespace")
    with NetNamespace(api_port=cluster.api_port) as ns:
        assert ipaddress.IPv4Address(ns.ip) in SUBNET
        server = ns.run([sys.executable, "-m", "http.server", "8080", "--bind", ns.ip], cwd=tmp_path)
        ns.wait_for_port(ns.ip, 8080)
        with urllib.request.urlopen(f"http://{ns.ip}:8080/index.html", timeout=5) as resp:
            assert resp.read() == b"hello from the namespace"
        # Inside, the cluster's kubeconfig works unchanged: 127.0.0.1:<api port> is bridged to it.
        certs = ["--cacert", str(cluster.ca_file), "--cert", str(cluster.admin_cert_file)]
        ready = ns.exec(
            ["curl", "-sS", *certs, "--key", str(cluster.admin_key_file), f"{cluster.server}/readyz"]
        )
        assert (ready.returncode, ready.stdout) == (0, "ok")
        name = ns.name
    assert server.poll() is not None
    assert name not in _namespaces()


def test_the_namespace_of_a_killed_test_process_is_reaped_with_its_servers() -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from tests.harness.netns import NetNamespace
        ns = NetNamespace()
        server = ns.run(["sleep", "600"])
        print(ns.name, server.pid, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert owner.stdout is not None
    name, server_pid = owner.stdout.readline().split()
    assert name in _namespaces()
    assert _alive(int(server_pid))

    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(int(server_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(server_pid)), "the server outlived the test process that started it"

    # The next namespace made by anyone reaps the abandoned one (and may reuse its slot).
    with NetNamespace():
        record = OWNERS / name
        claimed_by = record.read_text().split()[0] if record.exists() else None
        assert name not in _namespaces() or claimed_by != str(owner.pid)
