# ruff: noqa: S603, S607 - runs the project's own scripts, taskset and the binaries they built
"""The peers teflon is measured against, built from their release archives, and how to run them.

* falcosidekick 2.34.1, with no outputs (the ingest and memory peer): it answers Falco ``200`` and
  counts the alert, which is the least any receiver does;
* Falco Talon v0.3.0 (the reaction peer): ``kubernetes:label`` and ``kubernetes:terminate`` on the
  same alerts teflon labels and deletes for.

``scripts/peers.sh`` builds both from their sha256-pinned release archives and caches them by that
sha256 under ``${XDG_CACHE_HOME:-~/.cache}/teflon/peers/`` (the client test in ``tests/peers`` uses
the same builder); a peer that cannot be built is reported with the builder's own message, and every
table then says why its peer column is empty.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from bench.alerts import AlertMix
from bench.ingest import HOST, Process, ready
from bench.loadgen import Connection
from tests.harness.ports import free_port
from tests.harness.prom import metric_sum, series

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "scripts" / "peers.sh"

#: name -> what the benchmarks run it as
ROLES = {
    "falcosidekick": "no outputs: accepts each alert and counts it (ingest and memory)",
    "falco-talon": "kubernetes:label and kubernetes:terminate rules equivalent to teflon's (reaction)",
}


def build(name: str) -> dict[str, Any]:
    """Version, commit and archive of ``name``, and its binary (built now when the cache has none)."""
    info = subprocess.run([str(BUILDER), "--info", name], capture_output=True, text=True, check=True)
    version, commit, sha256, archive = info.stdout.split()
    out: dict[str, Any] = {
        "version": version,
        "commit": commit,
        "archive": archive,
        "archive_sha256": sha256,
        "role": ROLES[name],
    }
    print(f"bench: building {name} {version} (cached after the first run)", file=sys.stderr, flush=True)
    built = subprocess.run([str(BUILDER), name], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        return out | {"available": False, "reason": built.stderr.strip()[-2000:]}
    return out | {"available": True, "binary": built.stdout.strip().splitlines()[-1]}


def build_all() -> dict[str, dict[str, Any]]:
    if os.environ.get("TEFLON_BENCH_NO_PEERS"):
        return {name: {"available": False, "reason": "not built (TEFLON_BENCH_NO_PEERS)"} for name in ROLES}
    return {name: build(name) for name in ROLES}


@dataclass
class Sidekick(Process):
    """falcosidekick with no outputs, measured as ``bench.ingest`` measures the webhook.

    It serves ingest and ``/metrics`` on one port and has no queue: an alert is done when answered.
    """

    ACCEPTED: ClassVar[int] = 200

    @classmethod
    def launch(cls, binary: str, workdir: Path, cpu: int | None = None) -> Sidekick:
        """Start it; with ``cpu``, on that CPU alone (``taskset``, and ``GOMAXPROCS=1`` as Go would pick)."""
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            "LISTENADDRESS": HOST,
            "LISTENPORT": str(port),
        }
        argv = [binary]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), binary]
            env["GOMAXPROCS"] = "1"
        log = workdir / f"falcosidekick-{port}.log"
        proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"falcosidekick exited {proc.returncode}:\n{log.read_text()}")
            if ready(port, b"/ping"):
                return cls(proc, port, port, log)
            time.sleep(0.1)
        proc.kill()
        raise RuntimeError("falcosidekick did not answer /ping within 30 s")

    async def metrics(self) -> str:
        # Go answers a page this size chunked, which the load generator's minimal client does not read.
        async with httpx.AsyncClient(timeout=60) as http:
            resp = await http.get(f"http://{HOST}:{self.port}/metrics")
        resp.raise_for_status()
        return resp.text

    async def counts(self) -> tuple[float, float]:
        text = await self.metrics()
        inputs = "falcosecurity_falcosidekick_inputs_total"
        return metric_sum(text, inputs, status="accepted"), metric_sum(text, inputs, status="rejected")

    async def drained(self, patience: float = 900) -> float:
        return time.monotonic()  # no outputs, no queue: answered means done


def pin(pid: int, cpu: int) -> None:
    """Every thread of ``pid`` onto ``cpu`` (``taskset -a``)."""
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, check=True)


async def sidekick_memory(s: Sidekick, mix: AlertMix, alerts: int, connections: int = 4) -> dict[str, Any]:
    """``bench.ingest.memory`` for falcosidekick: the same alerts, one per request (it takes no batches)."""
    rss0 = s.rss_mib()
    per_conn = alerts // connections

    async def sender(k: int) -> None:
        conn = await Connection.open(HOST, s.port)
        try:
            for i in range(k * per_conn, (k + 1) * per_conn):
                status = await conn.post(b"/", mix.alert(i))
                if status != Sidekick.ACCEPTED:
                    raise RuntimeError(f"alert {i} refused with HTTP {status}")
        finally:
            conn.close()

    started, cpu0 = time.monotonic(), s.cpu_seconds()
    await asyncio.gather(*(sender(k) for k in range(connections)))
    done = time.monotonic()
    text = await s.metrics()
    events = "falcosecurity_falcosidekick_falco_events_total"
    return {
        "alerts": per_conn * connections,
        "distinct_pods": len(mix.targets),
        "counted": (await s.counts())[0],
        "seconds": done - started,
        "alerts_per_second": per_conn * connections / (done - started),
        "server_cpu_us_per_alert": (s.cpu_seconds() - cpu0) / (per_conn * connections) * 1e6,
        "rss_idle_mib": rss0,
        "rss_after_mib": s.rss_mib(),
        "metric_series": series(text),
        "pod_labelled_series": sum(1 for line in text.splitlines() if line.startswith(events + "{")),
        "metrics_bytes": len(text.encode()),
    }
