"""Real webhook replicas (``python -m teflon.webhook``) on 127.0.0.1 for the teflon backend's tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert(
    namespace: str, pod: str, priority: str = "Critical", rule: str = "Terminal shell in container"
) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "hostname": "node-1",
        "output": f"{now.isoformat()}: {priority} {rule} (k8s_ns_name={namespace} k8s_pod_name={pod})",
        "output_fields": {"k8s.ns.name": namespace, "k8s.pod.name": pod, "container.id": "0123456789ab"},
        "priority": priority,
        "rule": rule,
        "source": "syscall",
        "tags": ["container", "mitre_execution"],
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.%f000Z"),
    }


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    ingest: str
    ops: str
    log: Path

    def send(self, *alerts: dict[str, object]) -> None:
        resp = httpx.post(f"{self.ingest}/v1/falco", json=list(alerts), timeout=10)
        resp.raise_for_status()

    def count(self, namespace: str) -> int:
        doc = httpx.get(
            f"{self.ops}/v1/rates",
            params={"scope": "namespace", "namespace": namespace},
            timeout=5,
        ).json()
        return sum(e["count"] for e in doc["entries"])

    def wait_count(self, namespace: str, n: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.count(namespace) != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"replica {self.ops} counted {self.count(namespace)} alerts, not {n}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def webhook_replicas(n: int, tmp: Path) -> Iterator[list[Replica]]:
    """Start ``n`` webhook processes with no Kubernetes API (dry run) and wait until they answer."""
    replicas: list[Replica] = []
    try:
        for i in range(n):
            ingest, ops = free_port(), free_port()
            env = {
                "PATH": os.environ.get("PATH", ""),
                "TEFLON_WEBHOOK_HOST": "127.0.0.1",
                "TEFLON_WEBHOOK_PORT": str(ingest),
                "TEFLON_WEBHOOK_OPS_PORT": str(ops),
                "TEFLON_WEBHOOK_POD_NAME": f"teflon-webhook-{i}",
                "TEFLON_WEBHOOK_KUBECONFIG": str(tmp / "no-such-kubeconfig"),
                "TEFLON_WEBHOOK_DRAIN_SECONDS": "0",
            }
            log = tmp / f"webhook-{i}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "teflon.webhook"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            replicas.append(Replica(proc, f"http://127.0.0.1:{ingest}", f"http://127.0.0.1:{ops}", log))
        for r in replicas:
            deadline = time.monotonic() + 30
            while True:
                if r.proc.poll() is not None:
                    raise RuntimeError(f"webhook exited: {r.log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{r.ops}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"webhook {r.ops} did not start: {r.log.read_text()[-2000:]}")
                time.sleep(0.1)
        yield replicas
    finally:
        for r in replicas:
            r.stop()
