"""Reaction on the local control plane, teflon and Falco Talon side by side, rounds interleaved.

Both act on pods of one Deployment (``bench-target``, kwok nodes) through the same API server: teflon
as the chart installs it (its webhook a real process in a network namespace, with the chart's
ServiceAccount), Talon v0.3.0 in a network namespace of its own (its embedded NATS server listens on
0.0.0.0:4222) with the cluster's kubeconfig, ``deduplication.leader_election: false`` and rules
equivalent to teflon's: label ``teflon.io/quarantined=true`` on *Terminal shell in container*,
terminate with grace period 0 on *Fileless execution via memfd_create*. Both reach the API server
through the same kind of bridge (``harness.netns``, TCP_NODELAY on both ends).

Each alert names a different pod and its output text names the pod too (Talon drops identical
outputs within 5 s as duplicates). The time runs from posting the alert to a watch on the pods
showing the label or the ``deletionTimestamp``. Two regimes: one alert a second, and bursts of five
alerts 0.2 s apart (Talon's client has client-go's default 5 requests/s, burst 10).

API calls per alert come from the API server's own ``apiserver_request_total`` around each block of
alerts, less the idle rate of the control plane measured before: they include what the control
plane does in response (the ReplicaSet controller replacing a deleted pod, for one).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.alerts import AlertMix, Target
from bench.cluster import TARGETS, PodWatch, apply_deployment, tls_client
from tests.harness.cluster import Cluster
from tests.harness.netns import NetNamespace
from tests.harness.stack import ChartStack
from tests.harness.stats import percentile
from tests.harness.workloads import DELETE_RULE, LABEL_RULE, ensure_namespace, ingest_url, wait_ready_pods
from tests.harness.workloads import QUARANTINE_LABEL as LABEL

TALON_PORT = 2803
RULE_OF = {"label": LABEL_RULE, "delete": DELETE_RULE}
#: regime -> (alerts per block, seconds between alerts)
REGIMES = {"1 alert/s": (0, 1.0), "5 alerts/s burst": (5, 0.2)}
COUNTED_VERBS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def talon_files(workdir: Path, kubeconfig: Path) -> Path:
    """Talon's configuration and rules, equivalent to the chart policy the benchmark gives teflon."""
    rules = [
        {
            "action": "Label Pod as Suspicious",
            "actionner": "kubernetes:label",
            "parameters": {"level": "pod", "labels": {LABEL: "true"}},
        },
        {
            "action": "Terminate Pod",
            "actionner": "kubernetes:terminate",
            "parameters": {"grace_period_seconds": 0},
        },
        {
            "rule": "label-shell",
            "match": {"rules": [LABEL_RULE], "output_fields": [f"k8s.ns.name={TARGETS}"]},
            "actions": [{"action": "Label Pod as Suspicious"}],
        },
        {
            "rule": "delete-fileless",
            "match": {"rules": [DELETE_RULE], "output_fields": [f"k8s.ns.name={TARGETS}"]},
            "actions": [{"action": "Terminate Pod"}],
        },
    ]
    (workdir / "talon-rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = {
        # Its own network namespace: reachable only from this host, through the veth pair.
        "listen_address": "0.0.0.0",  # noqa: S104
        "listen_port": TALON_PORT,
        "rules_files": [str(workdir / "talon-rules.yaml")],
        "kubeconfig": str(kubeconfig),
        "log_format": "text",
        "watch_rules": False,
        "print_all_events": False,
        "default_notifiers": [],
        "deduplication": {"leader_election": False, "time_window_seconds": 5},
        "otel": {"traces_enabled": False, "metrics_enabled": False},
    }
    (workdir / "talon-config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "talon-config.yaml"


@dataclass
class Reactor:
    name: str
    url: str
    accepted: int


def alert_for(mix: AlertMix, action: str, pod: dict[str, Any]) -> bytes:
    meta = pod["metadata"]
    target = Target(TARGETS, meta["name"], meta["uid"], pod["spec"]["nodeName"])
    doc = json.loads(mix.for_target(RULE_OF[action], target))
    doc["output"] = f"{doc['output']} k8s_pod_name={meta['name']}"
    return json.dumps(doc).encode()


async def request_counts(cluster: Cluster) -> Counter[str]:
    """``apiserver_request_total`` by verb and resource (LIST and WATCH left out)."""
    async with tls_client(cluster) as client:
        text = (await client.get("/metrics")).text
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line.rsplit(" ", 1)
        labels = dict(
            part.split("=", 1) for part in labels_text[len("apiserver_request_total{") : -1].split('",')
        )
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") not in COUNTED_VERBS or not labels.get("resource"):
            continue  # lists, watches and non-resource paths (this benchmark's own /metrics reads)
        resource = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        out[f"{labels['verb']} {resource}"] += int(float(value))
    return out


class Bench:
    """One benchmark run over both systems: the pods used so far, the watch, the samples."""

    def __init__(self, cluster: Cluster, watch: PodWatch, http: httpx.AsyncClient, replicas: int) -> None:
        self.cluster, self.watch, self.http, self.replicas = cluster, watch, http, replicas
        self.mix = AlertMix(pods=1)
        self.used: set[str] = set()
        self.values: dict[tuple[str, str, str], list[float]] = {}
        self.round_medians: dict[tuple[str, str, str], list[float]] = {}
        self.calls: dict[tuple[str, str], Counter[str]] = {}
        self.alerts: Counter[tuple[str, str]] = Counter()
        self.idle_per_second: dict[str, float] = {}

    async def idle_rate(self, seconds: float) -> None:
        before = await request_counts(self.cluster)
        await asyncio.sleep(seconds)
        after = await request_counts(self.cluster)
        self.idle_per_second = {k: (after[k] - before[k]) / seconds for k in after}

    def fresh_pods(self, count: int) -> list[dict[str, Any]]:
        pods = wait_ready_pods(self.cluster, TARGETS, "target", self.replicas, timeout=120)
        chosen = [p for p in pods if p["metadata"]["uid"] not in self.used][:count]
        if len(chosen) < count:
            raise RuntimeError(f"only {len(chosen)} unused pods left of {self.replicas}")
        self.used.update(p["metadata"]["uid"] for p in chosen)
        return chosen

    async def block(self, who: Reactor, action: str, regime: str, count: int, interval: float) -> None:
        """``count`` alerts about distinct pods, ``interval`` apart (open loop), each to its result."""
        pods = self.fresh_pods(count)
        table = self.watch.labelled if action == "label" else self.watch.deleting
        calls0, t0 = await request_counts(self.cluster), time.monotonic()
        start = time.monotonic() + 0.05

        async def one(i: int, pod: dict[str, Any]) -> float:
            await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
            sent = time.monotonic()
            resp = await self.http.post(
                who.url,
                content=alert_for(self.mix, action, pod),
                headers={"Content-Type": "application/json"},
            )
            if resp.status_code != who.accepted:
                raise RuntimeError(f"{who.name} refused the alert: {resp.status_code} {resp.text[:200]}")
            seen = await self.watch.seen(table, pod["metadata"]["uid"], patience=60)
            return (seen - sent) * 1000

        got = await asyncio.gather(*(one(i, p) for i, p in enumerate(pods)))
        await asyncio.sleep(1.0)  # late calls of the last alert (Talon's second PATCH) still count
        calls1, seconds = await request_counts(self.cluster), time.monotonic() - t0
        key = (who.name, action, regime)
        self.values.setdefault(key, []).extend(got)
        self.round_medians.setdefault(key, []).append(percentile(got, 50))
        if regime == "1 alert/s":
            delta = self.calls.setdefault((who.name, action), Counter())
            for k in calls1:
                delta[k] += calls1[k] - calls0[k]
                delta[k] -= round(self.idle_per_second.get(k, 0.0) * seconds)
            self.alerts[(who.name, action)] += count

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (name, action, regime), values in self.values.items():
            cell = out.setdefault(name, {}).setdefault(action, {})
            cell[regime] = {
                "samples": len(values),
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
                "max_ms": max(values),
                "round_medians_ms": self.round_medians[(name, action, regime)],
                "values_ms": values,
            }
        for (name, action), delta in self.calls.items():
            n = self.alerts[(name, action)]
            out[name][action]["api_calls_per_alert"] = {
                k: round(v / n, 2) for k, v in sorted(delta.items()) if v / n >= 0.25
            }
        return out


async def run(
    cluster: Cluster, stack: ChartStack, talon: dict[str, Any], workdir: Path, *, samples: int, rounds: int
) -> dict[str, Any]:
    per_round = {"1 alert/s": samples, "5 alerts/s burst": 5}
    systems = 2 if talon.get("available") else 1
    labels_needed = systems * rounds * sum(per_round.values())
    replicas = labels_needed + 10
    ensure_namespace(cluster, TARGETS)
    apply_deployment(cluster, "target", TARGETS, replicas)
    wait_ready_pods(cluster, TARGETS, "target", replicas, timeout=600)
    reactors = [Reactor("teflon", ingest_url(stack, 0), 202)]
    ns: NetNamespace | None = None
    try:
        if talon.get("available"):
            ns = NetNamespace(api_port=cluster.api_port)
            tmp = workdir / "talon-tmp"
            tmp.mkdir(exist_ok=True)
            config = talon_files(workdir, cluster.kubeconfig)
            log = (workdir / "talon.log").open("wb")
            ns.run(
                [talon["binary"], "server", "-c", str(config)],
                env={"TMPDIR": str(tmp)},
                stdout=log,
                stderr=log,
            )
            ns.wait_for_port(ns.ip, TALON_PORT, timeout=60)
            reactors.append(Reactor("falco-talon", f"http://{ns.ip}:{TALON_PORT}/", 200))
        async with PodWatch(cluster, TARGETS) as watch, httpx.AsyncClient(timeout=30) as http:
            bench = Bench(cluster, watch, http, replicas)
            await bench.idle_rate(10.0)
            for r in range(rounds):
                order = reactors if r % 2 == 0 else reactors[::-1]
                for regime, (count, interval) in REGIMES.items():
                    for who in order:
                        for action in ("label", "delete"):
                            print(
                                f"bench: reaction round {r + 1}/{rounds}: {who.name}, {action}, {regime}",
                                file=sys.stderr,
                                flush=True,
                            )
                            await bench.block(who, action, regime, count or samples, interval)
                            await asyncio.sleep(3.0)  # a burst must not eat into the next block's budget
            return bench.summary()
    except Exception:
        tail = _tail(workdir / "talon.log")
        if tail:
            print("bench: the end of Falco Talon's log:\n" + "\n".join(tail), file=sys.stderr, flush=True)
        raise
    finally:
        if ns is not None:
            ns.close()


def _tail(path: Path, lines: int = 20) -> list[str]:
    return path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
