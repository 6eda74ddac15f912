"""Real webhook replicas (``python -m teflon.webhook``) on 127.0.0.1 for the teflon backend's tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness.falco import SHELL_RULE, alert_doc
from tests.harness.webhook import WebhookProcess


def alert(namespace: str, pod: str, priority: str = "Critical", rule: str = SHELL_RULE) -> dict[str, Any]:
    """A shell alert about ``namespace/pod`` as a replica counts it (stamped with the current time)."""
    return alert_doc(
        namespace,
        pod,
        rule=rule,
        priority=priority,
        tags=["container", "mitre_execution"],
        fields={"container.id": "0123456789ab"},
        stamped=True,
    )


@dataclass
class Replica:
    process: WebhookProcess

    @property
    def ingest(self) -> str:
        return self.process.ingest_url

    @property
    def ops(self) -> str:
        return self.process.ops_url

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


@contextmanager
def webhook_replicas(n: int, tmp: Path) -> Iterator[list[Replica]]:
    """Start ``n`` webhook processes with no Kubernetes API (dry run) and wait until they answer."""
    replicas: list[Replica] = []
    try:
        for i in range(n):
            hook = WebhookProcess.start(
                tmp, {"TEFLON_WEBHOOK_DRAIN_SECONDS": "0"}, name=f"teflon-webhook-{i}", timeout=30
            )
            replicas.append(Replica(hook))
        yield replicas
    finally:
        for r in replicas:
            r.process.stop(timeout=15)
