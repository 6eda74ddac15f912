#!/usr/bin/env python3
"""Benchmark of the webhook's ingest path (``make bench-webhook``); a measurement, not a test.

Starts ``python -m teflon.webhook`` on loopback in dry run without a cluster, then drives it with a
small asyncio HTTP/1.1 keep-alive client (raw streams, so the client is not the bottleneck):

1. sustained throughput: single-alert requests, closed loop over several connections;
2. latency at fixed request rates, open loop: each request has a scheduled send time and its latency is
   measured from that time, so a stalled server cannot hide queueing (no coordinated omission);
3. memory: one million alerts over 100,000 distinct pods (NDJSON batches), then the server's RSS once its
   queue has drained, and what it reports as tracked.

Latencies are observed by the client on loopback, so they include the client's own scheduling: an upper
bound on server time. Usage: scripts/bench_webhook.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ALERT = json.loads(
    (ROOT / "tests/fixtures/falco-alerts/11-terminal-shell-2024-thread-fields-tags.json").read_text()
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alert_body(namespace: str, pod: str) -> bytes:
    doc = dict(ALERT)
    doc["output_fields"] = {**ALERT["output_fields"], "k8s.ns.name": namespace, "k8s.pod.name": pod}
    return json.dumps(doc, separators=(",", ":")).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection that posts bodies and reads the status of each answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: bytes, body: bytes, ctype: bytes = b"application/json") -> int:
        head = b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
            path,
            ctype,
            len(body),
        )
        self.writer.write(head + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    ops_port: int
    log: Path

    def rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used (independent of how busy the machine is)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def metric(self, name: str) -> float:
        conn = await Connection.open(self.ops_port)
        try:
            conn.writer.write(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            text = (await conn.reader.read()).decode()
        finally:
            conn.close()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def start_server(tmp: Path) -> Server:
    port, ops_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "KUBECONFIG": str(tmp / "none"),
        "TEFLON_WEBHOOK_HOST": "127.0.0.1",
        "TEFLON_WEBHOOK_PORT": str(port),
        "TEFLON_WEBHOOK_OPS_PORT": str(ops_port),
        "TEFLON_WEBHOOK_QUEUE_SIZE": "200000",
        "TEFLON_WEBHOOK_RATE_MAX_TRACKED": "250000",
        "TEFLON_WEBHOOK_LOG_LEVEL": "WARNING",
    }
    log = tmp / "webhook.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "teflon.webhook"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"webhook exited {proc.returncode}:\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", ops_port)) == 0:
                return Server(proc, port, ops_port, log)
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("webhook did not start within 60 s")


async def wait_drained(server: Server, patience: float = 600, below: float = 1) -> None:
    """Wait until the server's queue holds fewer than ``below`` alerts."""
    deadline = time.monotonic() + patience
    while await server.metric("teflon_webhook_queue_depth") >= below:
        if time.monotonic() > deadline:
            raise SystemExit("the queue did not drain")
        await asyncio.sleep(0.5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def sustained(server: Server, seconds: float, connections: int) -> dict[str, float]:
    bodies = [alert_body(f"ns-{i % 10}", f"pod-{i}") for i in range(1000)]
    stop = time.monotonic() + seconds
    counts: list[int] = []
    errors = 0

    async def loop(k: int) -> None:
        nonlocal errors
        conn = await Connection.open(server.port)
        n = 0
        while time.monotonic() < stop:
            if await conn.post(b"/v1/falco", bodies[(k * 131 + n) % len(bodies)]) != 202:
                errors += 1
            n += 1
        counts.append(n)
        conn.close()

    started, cpu = time.monotonic(), server.cpu_seconds()
    await asyncio.gather(*(loop(k) for k in range(connections)))
    elapsed = time.monotonic() - started
    await wait_drained(server)
    return {
        "alerts_per_second": sum(counts) / elapsed,
        "requests": sum(counts),
        "errors": errors,
        "server_cpu_us_per_alert": (server.cpu_seconds() - cpu) / sum(counts) * 1e6,
    }


async def fixed_rate(server: Server, rate: int, seconds: float, pool_size: int = 64) -> dict[str, float]:
    bodies = [alert_body(f"ns-{i % 10}", f"pod-{i}") for i in range(1000)]
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool_size):
        pool.put_nowait(await Connection.open(server.port))
    latencies: list[float] = []
    errors = 0

    async def one(scheduled: float, body: bytes) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            if await conn.post(b"/v1/falco", body) != 202:
                errors += 1
        finally:
            pool.put_nowait(conn)
        latencies.append(time.monotonic() - scheduled)

    total = int(rate * seconds)
    start = time.monotonic() + 0.05
    tasks = []
    for k in range(total):
        scheduled = start + k / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled, bodies[k % len(bodies)])))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    ms = [v * 1000 for v in latencies]
    return {
        "rate": rate,
        "achieved_rate": total / (time.monotonic() - start),
        "p50_ms": pct(ms, 0.50),
        "p99_ms": pct(ms, 0.99),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "errors": errors,
    }


async def million(server: Server, alerts: int, pods: int, batch: int, connections: int) -> dict[str, float]:
    rss_before = server.rss_mib()
    template = json.dumps(
        {
            **ALERT,
            "output_fields": {**ALERT["output_fields"], "k8s.ns.name": "@NS@", "k8s.pod.name": "@POD@"},
        },
        separators=(",", ":"),
    )
    head, rest = template.split('"@NS@"')
    mid, tail = rest.split('"@POD@"')
    per_conn = alerts // connections

    async def sender(k: int) -> None:
        conn = await Connection.open(server.port)
        first = k * per_conn
        for n, offset in enumerate(range(0, per_conn, batch)):
            # Keep the backlog modest, as a steady stream would: the figure is the memory of what the
            # webhook tracks, not of a queue holding a hundred thousand undigested alerts.
            if n % 10 == 0:
                await wait_drained(server, below=20_000)
            lines = []
            for i in range(first + offset, first + min(offset + batch, per_conn)):
                pod = i % pods
                lines.append(f'{head}"ns-{pod % 100}"{mid}"app-{pod}"{tail}')
            body = "\n".join(lines).encode()
            status = await conn.post(b"/v1/falco", body, b"application/x-ndjson")
            while status == 503:  # queue full: back off and resend, as a forwarding agent would
                await asyncio.sleep(0.05)
                status = await conn.post(b"/v1/falco", body, b"application/x-ndjson")
            if status != 202:
                raise SystemExit(f"batch refused with {status}")
        conn.close()

    started, cpu = time.monotonic(), server.cpu_seconds()
    await asyncio.gather(*(sender(k) for k in range(connections)))
    accepted = time.monotonic() - started
    await wait_drained(server)
    processed = time.monotonic() - started
    cpu_used = server.cpu_seconds() - cpu
    received = await server.metric("teflon_webhook_alerts_total")
    tracked_pods = await server.metric('teflon_webhook_rate_tracked_objects{scope="pod"}')
    return {
        "alerts": alerts,
        "distinct_pods": pods,
        "alerts_counted": received,
        "ingest_seconds": accepted,
        "processed_seconds": processed,
        "alerts_per_second_batched": alerts / processed,
        "server_cpu_us_per_alert": cpu_used / alerts * 1e6,
        "rss_before_mib": rss_before,
        "rss_after_mib": server.rss_mib(),
        "tracked_pods": tracked_pods,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scale = 0.2 if args.quick else 1.0
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.phase in ("all", "latency"):
            server = start_server(Path(tmp))
            try:
                results["rss_idle_mib"] = server.rss_mib()
                await sustained(server, 2, 8)  # warm-up
                results["sustained"] = await sustained(server, 10 * scale, 8)
                rates = []
                for rate in (100, 250, 500, 1000):
                    rates.append(await fixed_rate(server, rate, 10 * scale))
                    await wait_drained(server)
                results["fixed_rate"] = rates
            finally:
                server.proc.terminate()
                server.proc.wait(timeout=60)
        if args.phase in ("all", "memory"):
            # A fresh process for the memory figure, so earlier phases do not add to it.
            server = start_server(Path(tmp))
            try:
                results["million"] = await million(
                    server, alerts=int(1_000_000 * scale), pods=int(100_000 * scale), batch=500, connections=4
                )
            finally:
                server.proc.terminate()
                server.proc.wait(timeout=120)
    return results


def report(r: dict[str, Any]) -> None:
    print(f"webhook ingest benchmark (python {r['python']}, {r['cpus']} CPUs, loopback, dry run, no cluster)")
    print(f"  load average at start: {r['load_average_at_start']:.1f} (latency figures need a quiet machine)")
    if "sustained" in r:
        s = r["sustained"]
        print(f"  idle RSS: {r['rss_idle_mib']:.0f} MiB")
        print(
            f"  sustained, one alert per request, 8 connections: {s['alerts_per_second']:.0f} alerts/s, "
            f"server CPU {s['server_cpu_us_per_alert']:.0f} us/alert ({s['errors']} errors)"
        )
        print("  fixed rate (open loop, latency from scheduled send):")
        for row in r["fixed_rate"]:
            print(
                f"    {row['rate']:>5}/s  achieved {row['achieved_rate']:7.0f}/s  "
                f"p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                f"max {row['max_ms']:7.2f} ms  errors {row['errors']}"
            )
    if "million" in r:
        m = r["million"]
        print(
            f"  {m['alerts']:,} alerts over {m['distinct_pods']:,} pods (NDJSON batches of 500): "
            f"processed in {m['processed_seconds']:.1f} s ({m['alerts_per_second_batched']:.0f} alerts/s), "
            f"counted {m['alerts_counted']:,.0f}, tracked pods {m['tracked_pods']:,.0f}, "
            f"server CPU {m['server_cpu_us_per_alert']:.0f} us/alert"
        )
        print(f"  RSS before {m['rss_before_mib']:.0f} MiB, after {m['rss_after_mib']:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the durations and counts")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--phase", choices=["all", "latency", "memory"], default="all", help="run only part of the benchmark"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
