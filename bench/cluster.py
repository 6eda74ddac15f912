"""Benchmarks on the real local control plane (``scripts/cluster.sh``), with the chart installed.

The chart's webhook and metrics server run as real processes behind the chart's own Services
(``tests/harness/stack.py``), so the API calls, the kube-aggregator and the RBAC are the real ones.

* ``reaction`` (``bench.reaction``): an alert posted to a webhook replica or to Falco Talon, to the
  Kubernetes API call completed, seen on a watch of the pods (``PodWatch``);
* ``custom_metrics``: ``GET /apis/custom.metrics.k8s.io/v1beta2/...`` through the kube-apiserver and
  its aggregator to the metrics server and on to every webhook replica, for ``pods/*`` over 1,000
  Deployment pods and for the Deployment object, with a metric served from cache and one that is not.

The cluster is a separate one (state in ``build/evidence-cluster``) unless TEFLON_CLUSTER_STATE says
otherwise, so the benchmark never disturbs a cluster other work is using.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.alerts import AlertMix, Target
from tests.harness.cluster import ApiError, Cluster, evidence_cluster
from tests.harness.stack import ChartStack
from tests.harness.stats import percentile
from tests.harness.workloads import QUARANTINE_LABEL as LABEL
from tests.harness.workloads import (
    deployment,
    ensure_namespace,
    ingest_url,
    installed_stack,
    unbounded_enforce_values,
    wait_ready_pods,
)

RELEASE = "teflon"
NAMESPACE = "teflon-bench"
TARGETS = "bench-target"
METRICS_NS = "bench-metrics"
GROUP = "/apis/custom.metrics.k8s.io/v1beta2"

VALUES: dict[str, Any] = unbounded_enforce_values(dedupe_seconds=300)
VALUES["metrics"]["definitions"] = [
    {
        "name": "bench_alerts_cached",
        "backend": "teflon",
        "resources": ["pods", "deployments.apps"],
        "signal": "alerts",
        "windowSeconds": 300,
        "cacheSeconds": 3600,
    },
    {
        "name": "bench_alerts_uncached",
        "backend": "teflon",
        "resources": ["pods", "deployments.apps"],
        "signal": "alerts",
        "windowSeconds": 300,
        "cacheSeconds": 0,
    },
]


def apply_deployment(cluster: Cluster, name: str, namespace: str, replicas: int) -> None:
    obj = deployment(name, namespace, replicas)
    try:
        cluster.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", obj)
    except ApiError as exc:
        if exc.status != 409:
            raise
        cluster.apply(obj)


def tls_client(cluster: Cluster, timeout: float = 30) -> httpx.AsyncClient:
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))
    ctx.load_cert_chain(cluster.admin_cert_file, cluster.admin_key_file)
    return httpx.AsyncClient(base_url=cluster.server, verify=ctx, timeout=timeout)


class PodWatch:
    """A watch on the pods of one namespace: when each UID was first seen labelled, and deleting."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.labelled: dict[str, float] = {}
        self.deleting: dict[str, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        listing = self.cluster.request("GET", f"/api/v1/namespaces/{self.namespace}/pods")
        rv = listing["metadata"]["resourceVersion"]
        async with tls_client(self.cluster, timeout=None) as client:  # type: ignore[arg-type]
            params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "false"}
            async with client.stream(
                "GET", f"/api/v1/namespaces/{self.namespace}/pods", params=params
            ) as resp:
                self.ready.set()
                async for line in resp.aiter_lines():
                    now = time.monotonic()
                    if not line:
                        continue
                    event = json.loads(line)
                    meta = event["object"].get("metadata", {})
                    uid = meta.get("uid", "")
                    if LABEL in (meta.get("labels") or {}):
                        self.labelled.setdefault(uid, now)
                    if "deletionTimestamp" in meta or event["type"] == "DELETED":
                        self.deleting.setdefault(uid, now)

    async def __aenter__(self) -> PodWatch:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await self.task

    async def seen(self, table: dict[str, float], uid: str, patience: float = 15) -> float:
        deadline = time.monotonic() + patience
        while uid not in table:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {uid}: no watch event within {patience}s")
            await asyncio.sleep(0.001)
        return table[uid]


async def custom_metrics(
    cluster: Cluster, stack: ChartStack, pods: int, requests: int, rounds: int
) -> dict[str, Any]:
    ensure_namespace(cluster, METRICS_NS)
    apply_deployment(cluster, "web", METRICS_NS, pods)
    started = time.monotonic()
    ready = wait_ready_pods(cluster, METRICS_NS, "web", pods, timeout=900)
    print(f"bench: {pods} pods ready in {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
    # Some alerts for a tenth of the pods, spread over both webhook replicas, so values are not all zero.
    mix = AlertMix(pods=1)
    async with httpx.AsyncClient(timeout=10) as http:
        for i, pod in enumerate(ready[: max(1, pods // 10)]):
            target = Target(
                METRICS_NS, pod["metadata"]["name"], pod["metadata"]["uid"], pod["spec"]["nodeName"]
            )
            replica = i % len(stack.pods["webhook"])
            body = mix.render(0, target).encode()  # Unexpected UDP Traffic: matches no response rule
            await http.post(
                ingest_url(stack, replica), content=body, headers={"Content-Type": "application/json"}
            )
    base = f"{GROUP}/namespaces/{METRICS_NS}"
    paths = {
        "pods/* cached": f"{base}/pods/*/bench_alerts_cached?labelSelector=app%3Dweb",
        "pods/* uncached": f"{base}/pods/*/bench_alerts_uncached?labelSelector=app%3Dweb",
        "deployment cached": f"{base}/deployments.apps/web/bench_alerts_cached",
        "deployment uncached": f"{base}/deployments.apps/web/bench_alerts_uncached",
    }
    values: dict[str, list[float]] = {k: [] for k in paths}
    round_medians: dict[str, list[float]] = {k: [] for k in paths}
    items: dict[str, int] = {}
    async with tls_client(cluster) as client:
        deadline = time.monotonic() + 120
        while True:  # the APIService becomes Available once the aggregator reaches the server
            resp = await client.get(paths["deployment uncached"])
            if resp.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"custom metrics API not serving: {resp.status_code} {resp.text[:300]}")
            await asyncio.sleep(1)
        for r in range(rounds):
            print(f"bench: custom metrics round {r + 1}/{rounds}", file=sys.stderr, flush=True)
            for name, path in paths.items():
                await client.get(path)  # warm the cache for the cached metric
                this: list[float] = []
                for _ in range(requests):
                    t0 = time.monotonic()
                    resp = await client.get(path)
                    this.append((time.monotonic() - t0) * 1000)
                    if resp.status_code != 200:
                        raise RuntimeError(f"{path}: {resp.status_code} {resp.text[:300]}")
                items[name] = len(resp.json().get("items", []))
                values[name] += this
                round_medians[name].append(percentile(this, 50))
    return {
        name: {
            "requests": len(v),
            "items": items[name],
            "p50_ms": percentile(v, 50),
            "p99_ms": percentile(v, 99),
            "round_medians_ms": round_medians[name],
        }
        for name, v in values.items()
    } | {"pods": pods, "pods_ready_seconds": time.monotonic() - started}


def run(args: argparse.Namespace, peers: dict[str, Any]) -> dict[str, Any]:
    from bench import reaction  # noqa: PLC0415 - bench.reaction builds on this module

    samples = 4 if args.quick else 8
    pods = 200 if args.quick else 1000
    requests = 20 if args.quick else 100
    workdir = Path(tempfile.mkdtemp(prefix="teflon-bench-stack-"))
    workdir.chmod(0o755)  # the processes run as the image's user and must traverse it
    try:
        cluster = evidence_cluster()
        print(f"bench: local control plane in {cluster.state}", file=sys.stderr, flush=True)
        with installed_stack(cluster, RELEASE, NAMESPACE, workdir, VALUES) as stack:
            out: dict[str, Any] = {"kubernetes": cluster.kubernetes_version}
            out["reaction"] = asyncio.run(
                reaction.run(
                    cluster, stack, peers["falco-talon"], workdir, samples=samples, rounds=args.rounds
                )
            )
            out["custom_metrics"] = asyncio.run(custom_metrics(cluster, stack, pods, requests, args.rounds))
            for ns in (TARGETS, METRICS_NS):
                with contextlib.suppress(ApiError):
                    cluster.request("DELETE", f"/api/v1/namespaces/{ns}")
            return out
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
