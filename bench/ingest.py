"""Ingest benchmarks of one webhook process on 127.0.0.1, without a cluster (dry run, as Falco's peer).

* ``throughput``: closed loop, one alert per request over 8 connections; alerts/s counted up to the
  moment the queue has drained, with zero drops (every answer 202, ``alerts_total`` up by exactly the
  number sent, ``alerts_rejected_total`` unchanged);
* ``latency``: open loop at fixed rates; client-observed latency p50/p99 on loopback (an upper bound
  on server time: it includes the generator's own scheduling);
* ``memory``: a fresh process, one million alerts over 100,000 distinct pods in NDJSON batches of 500,
  then its resident memory once the queue has drained.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.alerts import AlertMix
from bench.loadgen import Connection, closed_loop, get_text, open_loop
from tests.harness.prom import metric_sum, series
from tests.harness.stats import percentile
from tests.harness.webhook import WebhookProcess

HOST = "127.0.0.1"
PATH = b"/v1/falco"


@dataclass
class Process:
    """A webhook (``python -m teflon.webhook``, no cluster) started for one measurement."""

    proc: subprocess.Popen[bytes]
    port: int
    ops_port: int
    log: Path

    #: the HTTP status of an accepted alert (a peer's may differ)
    ACCEPTED: ClassVar[int] = 202

    @classmethod
    def start(cls, workdir: Path, env: dict[str, str]) -> Process:
        settings = {"TEFLON_WEBHOOK_LOG_LEVEL": "WARNING", **env}
        hook = WebhookProcess.start(workdir, settings, probe="/readyz")
        return cls(hook.proc, hook.port, hook.ops_port, hook.log)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rss_mib(self) -> float:
        match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(match.group(1)) / 1024 if match else float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def metrics(self) -> str:
        return await get_text(HOST, self.ops_port, "/metrics")

    async def counts(self) -> tuple[float, float]:
        """Alerts counted and alerts refused so far, from the process's own metrics."""
        text = await self.metrics()
        return metric_sum(text, "teflon_webhook_alerts_total"), metric_sum(
            text, "teflon_webhook_alerts_rejected_total"
        )

    async def drained(self, patience: float = 900) -> float:
        """Wait until the queue is empty; the time it became so."""
        deadline = time.monotonic() + patience
        while metric_sum(await self.metrics(), "teflon_webhook_queue_depth") > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the queue did not drain")
            await asyncio.sleep(0.05)
        return time.monotonic()


def ready(port: int, path: bytes = b"/readyz") -> bool:
    """Whether ``GET path`` on ``port`` answers 200."""
    try:
        with socket.create_connection((HOST, port), timeout=1) as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


async def throughput(p: Process, mix: AlertMix, seconds: float, connections: int = 8) -> dict[str, Any]:
    alerts0, rejected0 = await p.counts()
    cpu0 = p.cpu_seconds()
    started = time.monotonic()
    out = await closed_loop(HOST, p.port, PATH, mix.alert, seconds=seconds, connections=connections)
    done = await p.drained()
    alerts1, rejected1 = await p.counts()
    refused = out.sent - out.statuses.get(p.ACCEPTED, 0)
    return {
        "alerts_per_second": out.sent / (done - started),
        "sent": out.sent,
        "non_202": refused,
        "counted": alerts1 - alerts0,
        "rejected": rejected1 - rejected0,
        "zero_drops": refused == 0 and alerts1 - alerts0 == out.sent and rejected1 == rejected0,
        "server_cpu_us_per_alert": (p.cpu_seconds() - cpu0) / max(1, out.sent) * 1e6,
    }


async def latency(p: Process, mix: AlertMix, rate: int, seconds: float) -> dict[str, Any]:
    out = await open_loop(HOST, p.port, PATH, mix.alert, rate=rate, seconds=seconds)
    await p.drained()
    return {
        "rate": rate,
        "achieved_rate": out.sent / out.seconds,
        "p50_ms": percentile(out.latencies_ms, 50),
        "p99_ms": percentile(out.latencies_ms, 99),
        "max_ms": max(out.latencies_ms),
        "non_202": out.sent - out.statuses.get(p.ACCEPTED, 0),
    }


async def memory(
    p: Process, mix: AlertMix, alerts: int, batch: int = 500, connections: int = 4
) -> dict[str, Any]:
    rss0 = p.rss_mib()
    per_conn = alerts // connections
    retries = 0

    async def sender(k: int) -> None:
        nonlocal retries
        conn = await Connection.open(HOST, p.port)
        try:
            first = k * per_conn
            for offset in range(0, per_conn, batch):
                start, count = first + offset, min(batch, per_conn - offset)
                status, reply = await conn.request(
                    b"POST", PATH, mix.ndjson(start, count), b"application/x-ndjson"
                )
                while status == 503:
                    # Queue full: the first ``accepted`` alerts of the batch were queued. Back off and
                    # resend the rest, as a forwarding agent would, so no alert is sent twice.
                    done = int(json.loads(reply).get("accepted") or 0)
                    start, count = start + done, count - done
                    if count <= 0:
                        status = 202
                        break
                    retries += 1
                    await asyncio.sleep(0.05)
                    status, reply = await conn.request(
                        b"POST", PATH, mix.ndjson(start, count), b"application/x-ndjson"
                    )
                if status != 202:
                    raise RuntimeError(f"batch refused with HTTP {status}")
        finally:
            conn.close()

    started, cpu0 = time.monotonic(), p.cpu_seconds()
    await asyncio.gather(*(sender(k) for k in range(connections)))
    done = await p.drained()
    text = await p.metrics()
    return {
        "alerts": per_conn * connections,
        "distinct_pods": len(mix.targets),
        "counted": metric_sum(text, "teflon_webhook_alerts_total"),
        "seconds": done - started,
        "alerts_per_second_batched": per_conn * connections / (done - started),
        "server_cpu_us_per_alert": (p.cpu_seconds() - cpu0) / (per_conn * connections) * 1e6,
        "rss_idle_mib": rss0,
        "rss_after_mib": p.rss_mib(),
        "tracked_pods": metric_sum(text, "teflon_webhook_rate_tracked_objects", scope="pod"),
        "queue_full_retries": retries,
        "metric_series": series(text),
        "metrics_bytes": len(text.encode()),
    }
