"""``make chaos``: faults injected into the real local control plane while teflon works.

    python -m hardening.chaos [--quick] [--out docs/hardening/chaos.json]

The chart is installed in enforce mode on a cluster of its own (``build/evidence-cluster`` unless
TEFLON_CLUSTER_STATE says otherwise; its kube-apiserver is stopped on purpose, so never one other work
is using), with its webhook and metrics server as real processes (``tests/harness/stack.py``). Faults:

1. kube-apiserver stopped (SIGTERM) and started again with ``scripts/cluster.sh stop|start`` during
   an alert flood: the webhook keeps answering 202, every decision it logged as applied is in the
   cluster, no pod UID is acted on twice per action, and every pod is acted on once the API is back;
2. a webhook replica killed (SIGKILL) and another stopped (SIGTERM) mid-burst: the surviving replica
   answers every alert, the stopped one drains its queue; what the killed one had queued is counted;
3. the metrics backend (every webhook replica's rate API) slow (SIGSTOP) and then down: the custom
   metrics API answers errors, never a value, and the HPA keeps its replica count;
4. a corrupt policy pushed into the mounted ConfigMap file, an invalid policy through ``helm upgrade``,
   and a corrupt metrics config rolled out: the old policy and server stay in force, the error surfaces.

Every check is printed; the exit status is 1 if any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from hardening.summary import publish
from tests.harness.cluster import ROOT, ApiError, Cluster, CommandError, evidence_cluster
from tests.harness.falco import alert_doc
from tests.harness.process import run_to_exit
from tests.harness.prom import metric_sum
from tests.harness.stack import ChartStack
from tests.harness.workloads import (
    DELETE_RULE,
    LABEL_RULE,
    deployment,
    ensure_namespace,
    ingest_url,
    installed_stack,
    ops_url,
    unbounded_enforce_values,
    wait_ready_pods,
)
from tests.harness.workloads import QUARANTINE_LABEL as LABEL

RELEASE = "teflon"
NAMESPACE = "teflon-chaos"
SHOP = "chaos-shop"
CM = "/apis/custom.metrics.k8s.io/v1beta2"

VALUES: dict[str, Any] = {
    **unbounded_enforce_values(dedupe_seconds=600),
    "autoscaling": {
        "targets": [
            {
                "name": "web",
                "namespace": SHOP,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 6,
                "metrics": [
                    {
                        "type": "Object",
                        "object": {
                            "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                            "metric": {"name": "falco_alerts_per_minute_5m"},
                            "target": {"type": "AverageValue", "averageValue": "10"},
                        },
                    }
                ],
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 200, "periodSeconds": 5}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
                    },
                },
            }
        ]
    },
}


class Report:
    def __init__(self) -> None:
        self.scenarios: dict[str, dict[str, Any]] = {}

    def check(self, scenario: str, name: str, ok: bool, detail: Any = "") -> None:
        entry = self.scenarios.setdefault(scenario, {"checks": {}, "figures": {}})
        entry["checks"][name] = {"ok": bool(ok), "detail": detail}
        print(f"chaos: [{'PASS' if ok else 'FAIL'}] {scenario}: {name} {detail}", file=sys.stderr, flush=True)

    def figure(self, scenario: str, **figures: Any) -> None:
        self.scenarios.setdefault(scenario, {"checks": {}, "figures": {}})["figures"].update(figures)

    @property
    def failed(self) -> list[str]:
        return [f"{s}: {c}" for s, e in self.scenarios.items() for c, v in e["checks"].items() if not v["ok"]]


# --- the control plane ---------------------------------------------------------------------------


def cluster_sh(*args: str) -> None:
    """``scripts/cluster.sh ARGS`` against this cluster's state (TEFLON_CLUSTER_STATE)."""
    subprocess.run([str(ROOT / "scripts" / "cluster.sh"), *args], check=True, cwd=ROOT, timeout=300)


def stop_apiserver() -> None:
    cluster_sh("stop", "kube-apiserver")


def start_apiserver() -> None:
    cluster_sh("start", "kube-apiserver")


def fresh_namespace(cluster: Cluster, name: str) -> None:
    """``name`` with nothing left from an earlier run in it."""

    def gone() -> bool | None:
        try:
            cluster.request("GET", f"/api/v1/namespaces/{name}")
        except ApiError as exc:
            return exc.status == 404 or None
        return None

    with contextlib.suppress(ApiError):
        cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    cluster.wait_until(gone, 180, f"namespace {name} to be deleted")
    ensure_namespace(cluster, name)


def workload(
    cluster: Cluster, namespace: str, name: str, replicas: int, *, fresh: bool = True
) -> list[dict[str, Any]]:
    if fresh:
        fresh_namespace(cluster, namespace)
    with contextlib.suppress(ApiError):
        cluster.request(
            "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment(name, namespace, replicas)
        )
    return wait_ready_pods(cluster, namespace, name, replicas, timeout=300)


def alert(rule: str, pod: dict[str, Any]) -> bytes:
    meta = pod["metadata"]
    doc = alert_doc(
        meta["namespace"],
        meta["name"],
        rule=rule,
        uid=meta["uid"],
        hostname=pod["spec"]["nodeName"],
        fields={"container.id": "0123456789ab", "proc.cmdline": "sh"},
        output=f"{rule} in {meta['name']}",
    )
    return json.dumps(doc).encode()


def decisions(stack: ChartStack, replica: int | None = None) -> list[dict[str, Any]]:
    pods = stack.pods["webhook"] if replica is None else [stack.pods["webhook"][replica]]
    out = []
    for p in pods:
        if p.log_file is None or not p.log_file.exists():
            continue
        for line in p.log_file.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict) and doc.get("msg") == "response decided":
                    out.append(doc)
    return out


async def metric(http: httpx.AsyncClient, stack: ChartStack, replica: int, name: str) -> float:
    text = (await http.get(f"{ops_url(stack, 'webhook', replica)}/metrics")).text
    return metric_sum(text, name)


async def drained(http: httpx.AsyncClient, stack: ChartStack, patience: float = 120) -> None:
    deadline = time.monotonic() + patience
    for i in range(len(stack.pods["webhook"])):
        while await metric(http, stack, i, "teflon_webhook_queue_depth") > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("webhook queues did not drain")
            await asyncio.sleep(0.3)


# --- 1. kube-apiserver down during a flood -------------------------------------------------------


async def apiserver_outage(cluster: Cluster, stack: ChartStack, report: Report, quick: bool) -> None:
    pods = workload(cluster, "chaos-a", "victims", 40 if quick else 60)
    # Alternate the two actions. Half the pods are in the flood from the start; the others join one by
    # one once the API server has gone, so their first alerts arrive while it is down.
    plan = [(LABEL_RULE if k % 2 == 0 else DELETE_RULE, p) for k, p in enumerate(pods)]
    half = len(plan) // 2
    statuses: Counter[str] = Counter()
    first_sent: dict[str, float] = {}
    stop_at, down_for, pace = 6.0, 12.0, 0.25
    timeline: dict[str, float] = {}
    # Resolved now: the helper reads the Deployment, and the API server is about to go away.
    urls = [ingest_url(stack, r) for r in range(len(stack.pods["webhook"]))]

    async def flood(http: httpx.AsyncClient, until: asyncio.Event, started: float) -> None:
        i = 0
        while not until.is_set():
            now = time.monotonic() - started
            gone = timeline.get("apiserver_gone_s")
            eligible = half if gone is None else min(len(plan), half + 1 + int((now - gone) / pace))
            rule, pod = plan[i % eligible]
            first_sent.setdefault(pod["metadata"]["uid"], now)
            try:
                resp = await http.post(
                    urls[i % 2], content=alert(rule, pod), headers={"Content-Type": "application/json"}
                )
                statuses[str(resp.status_code)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            i += 1
            await asyncio.sleep(0.02)  # about 50 alerts/s

    async with httpx.AsyncClient(timeout=10) as http:
        until = asyncio.Event()
        started = time.monotonic()
        task = asyncio.create_task(flood(http, until, started))
        await asyncio.sleep(stop_at)
        timeline["apiserver_sigterm_s"] = time.monotonic() - started
        await asyncio.to_thread(stop_apiserver)
        timeline["apiserver_gone_s"] = time.monotonic() - started
        await asyncio.sleep(down_for)
        timeline["apiserver_restart_s"] = time.monotonic() - started
        await asyncio.to_thread(start_apiserver)
        timeline["apiserver_ready_s"] = time.monotonic() - started
        # Alerts keep coming after the API is back, as Falco's would: failed actions are tried again.
        await asyncio.sleep(20)
        until.set()
        await task
        timeline["flood_end_s"] = time.monotonic() - started
        await drained(http, stack)
    window = (timeline["apiserver_gone_s"], timeline["apiserver_restart_s"])
    during = {u for u, t in first_sent.items() if window[0] <= t < window[1]}
    outage_checks(cluster, stack, report, plan=plan, statuses=statuses, timeline=timeline, during=during)


def outage_checks(
    cluster: Cluster,
    stack: ChartStack,
    report: Report,
    *,
    plan: list[tuple[str, dict[str, Any]]],
    statuses: Counter[str],
    timeline: dict[str, float],
    during: set[str],
) -> None:
    s = "kube-apiserver stopped and restarted during an alert flood"
    logged = [d for d in decisions(stack) if d.get("namespace") == "chaos-a"]
    applied = Counter((d["pod_uid"], d["action"]) for d in logged if d["result"] == "applied")
    results = Counter(d["result"] for d in logged)
    now = {
        p["metadata"]["uid"]: p for p in cluster.request("GET", "/api/v1/namespaces/chaos-a/pods")["items"]
    }
    label_uids = {p["metadata"]["uid"] for rule, p in plan if rule == LABEL_RULE}
    delete_uids = {p["metadata"]["uid"] for rule, p in plan if rule == DELETE_RULE}
    labelled = {u for u in label_uids if LABEL in (now.get(u, {}).get("metadata", {}).get("labels") or {})}
    gone = {u for u in delete_uids if u not in now or "deletionTimestamp" in now[u]["metadata"]}
    report.figure(
        s, alerts_sent=sum(statuses.values()), answers=dict(statuses), decisions=dict(results), **timeline
    )
    report.check(
        s, "the webhook answered every alert with 202 throughout", set(statuses) == {"202"}, dict(statuses)
    )
    report.check(
        s,
        "the outage was felt (some calls failed or lookups were skipped)",
        results["failed"] > 0 or _skips(stack, "lookup_failed") > 0,
        dict(results),
    )
    # Both replicas get alerts about every pod; the Lease claim makes (pod UID, action) one action.
    double = {f"{u} {a}": n for (u, a), n in applied.items() if n > 1}
    report.check(
        s,
        "no pod UID was acted on twice per action, across both replicas",
        not double,
        double or f"{len(applied)} (uid, action) pairs applied once each",
    )
    claimed_elsewhere = sum(
        1
        for line in stack.logs("webhook")
        if line.get("msg") == "response claimed elsewhere" and line.get("namespace") == "chaos-a"
    )
    report.figure(s, actions_left_to_the_replica_holding_the_claim=claimed_elsewhere)
    lost_labels = [u for (u, a) in applied if a == "label" and u not in labelled]
    lost_deletes = [u for (u, a) in applied if a == "delete" and u not in gone]
    report.check(
        s,
        "every applied decision in the log is in the cluster",
        not lost_labels and not lost_deletes,
        {"labels_missing": lost_labels, "deletes_missing": lost_deletes},
    )
    report.check(
        s,
        "every pod was acted on once the API was back",
        labelled == label_uids and gone == delete_uids,
        f"{len(labelled)}/{len(label_uids)} labelled, {len(gone)}/{len(delete_uids)} deleted",
    )
    acted = labelled | gone
    report.check(
        s,
        "pods first alerted while the API was down were acted on after it came back",
        bool(during) and during <= acted,
        f"{len(during & acted)}/{len(during)} such pods acted on",
    )


def _skips(stack: ChartStack, reason: str) -> float:
    total = 0.0
    for i in range(len(stack.pods["webhook"])):
        with contextlib.suppress(httpx.HTTPError):
            text = httpx.get(f"{ops_url(stack, 'webhook', i)}/metrics", timeout=5).text
            total += metric_sum(text, "teflon_webhook_skips_total", reason=reason)
    return total


# --- 2. a replica killed mid-burst -----------------------------------------------------------------


async def replica_killed(cluster: Cluster, stack: ChartStack, report: Report, quick: bool) -> None:
    s = "a webhook replica killed mid-burst"
    per = 40 if quick else 80
    pods = workload(cluster, "chaos-b", "burst", per * 4)
    for signal_name, batch in (("SIGKILL", pods[: per * 2]), ("SIGTERM", pods[per * 2 :])):
        stack.restart("webhook")  # fresh processes and logs for this round
        answers: list[Counter[str]] = [Counter(), Counter()]
        urls = [ingest_url(stack, r) for r in (0, 1)]

        async def send(
            http: httpx.AsyncClient,
            replica: int,
            targets: list[dict[str, Any]],
            answers: list[Counter[str]] = answers,
            urls: list[str] = urls,
        ) -> None:
            for pod in targets:
                try:
                    resp = await http.post(
                        urls[replica],
                        content=alert(LABEL_RULE, pod),
                        headers={"Content-Type": "application/json"},
                    )
                    answers[replica][str(resp.status_code)] += 1
                except httpx.HTTPError as exc:
                    answers[replica][type(exc).__name__] += 1

        victim = stack.pods["webhook"][1]
        async with httpx.AsyncClient(timeout=10) as http:
            senders = [asyncio.create_task(send(http, r, batch[r::2])) for r in (0, 1)]
            await asyncio.sleep(0.5)
            if victim.proc is None:
                raise RuntimeError("the webhook replica to stop has no process")
            if signal_name == "SIGKILL":
                victim.proc.kill()
            else:
                victim.proc.terminate()
            await asyncio.gather(*senders)
            await asyncio.to_thread(victim.proc.wait, 60)
            deadline = time.monotonic() + 120
            while (  # noqa: ASYNC110 - polls another process's gauge over HTTP
                await metric(http, stack, 0, "teflon_webhook_queue_depth") > 0 and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.3)

        def decided(replica: int) -> int:
            return len({d["pod_uid"] for d in decisions(stack, replica) if d.get("namespace") == "chaos-b"})

        # An empty queue can still have alerts in the workers' hands: wait for their decisions.
        deadline = time.monotonic() + 30
        while decided(0) < answers[0]["202"] and time.monotonic() < deadline:  # noqa: ASYNC110 - a log file
            await asyncio.sleep(0.3)
        done = [decided(0), decided(1)]
        accepted = [answers[r]["202"] for r in (0, 1)]
        report.figure(
            s,
            **{
                f"{signal_name}_answers_survivor": dict(answers[0]),
                f"{signal_name}_answers_victim": dict(answers[1]),
                f"{signal_name}_accepted": accepted,
                f"{signal_name}_decided": done,
            },
        )
        report.check(
            s,
            f"{signal_name}: the surviving replica accepted and decided every alert it got",
            accepted[0] == len(batch[0::2]) and done[0] == accepted[0],
            f"accepted {accepted[0]}/{len(batch[0::2])}, decided {done[0]}",
        )
        if signal_name == "SIGTERM":
            report.check(
                s,
                "SIGTERM: the stopped replica decided every alert it had accepted (queue drained)",
                done[1] == accepted[1],
                f"accepted {accepted[1]}, decided {done[1]}",
            )
        else:
            report.figure(s, SIGKILL_lost_in_queue=accepted[1] - done[1])
            report.check(
                s,
                "SIGKILL: the killed replica never decided more than it accepted",
                done[1] <= accepted[1],
                f"accepted {accepted[1]}, decided {done[1]}, lost with the process {accepted[1] - done[1]}",
            )
    stack.restart("webhook")


# --- 3. the metrics backend slow and down ----------------------------------------------------------


def hpa(cluster: Cluster) -> dict[str, Any]:
    return dict(
        cluster.request("GET", f"/apis/autoscaling/v2/namespaces/{SHOP}/horizontalpodautoscalers/web")
    )


def web_replicas(cluster: Cluster) -> int:
    return int(cluster.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/web")["spec"]["replicas"])


async def backend_faults(cluster: Cluster, stack: ChartStack, report: Report, quick: bool) -> None:
    s = "the metrics backend slow and down"
    pods = workload(cluster, SHOP, "web", 2, fresh=False)  # the HPA lives here already
    # 300 alerts within the 5-minute window: 60 per minute, so the HPA wants 6 (its maximum).
    urls = [ingest_url(stack, r) for r in (0, 1)]
    async with httpx.AsyncClient(timeout=10) as http:
        for i in range(300):
            await http.post(
                urls[i % 2],
                content=alert("Unexpected UDP Traffic", pods[i % 2]),
                headers={"Content-Type": "application/json"},
            )
    cluster.wait_until(lambda: web_replicas(cluster) == 6 or None, 180, "the HPA to scale web to 6")
    path = f"{CM}/namespaces/{SHOP}/deployments.apps/web/falco_alerts_per_minute_5m"
    before = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    report.figure(s, value_before=before["items"][0]["value"], replicas_before=6)
    seconds = 25 if quick else 35
    # The built-in metrics are cached for 15 s: a value read just before the fault may be served until
    # then. Past that (plus a backend timeout), only errors are acceptable.
    cached_for = 15 + 5
    faults: list[tuple[str, Callable[[], None], Callable[[], None]]] = [
        ("slow (SIGSTOP)", lambda: stack.pause("webhook"), lambda: stack.resume("webhook")),
        ("down (stopped)", lambda: stack.stop_processes("webhook"), lambda: stack.start("webhook")),
    ]
    for fault, inject, heal in faults:
        inject()
        answers: Counter[str] = Counter()
        lowest = 6
        zero_values = late_values = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            got = cluster.kubectl("get", "--raw", path, check=False)
            if got.returncode == 0:
                value = json.loads(got.stdout)["items"][0]["value"]
                answers[f"value {value}"] += 1
                zero_values += value in ("0", "0m")
                late_values += time.monotonic() - started > cached_for
            else:
                answers["error"] += 1
            lowest = min(lowest, web_replicas(cluster))
            await asyncio.sleep(1)
        conditions = {
            c["type"]: f"{c['status']} {c.get('reason', '')}"
            for c in hpa(cluster).get("status", {}).get("conditions", [])
        }
        heal()
        report.figure(s, **{f"{fault} answers": dict(answers), f"{fault} hpa_conditions": conditions})
        report.check(
            s,
            f"{fault}: the custom metrics API answered errors once its cache expired, never a zero",
            zero_values == 0 and late_values == 0 and answers["error"] > 0,
            dict(answers),
        )
        report.check(
            s, f"{fault}: the HPA held its replicas", lowest == 6, f"lowest {lowest}, conditions {conditions}"
        )
        if fault.startswith("slow"):
            cluster.wait_until(
                lambda: cluster.kubectl("get", "--raw", path, check=False).returncode == 0 or None,
                60,
                "the metric to answer again",
            )


# --- 4. corrupt configuration ---------------------------------------------------------------------


async def corrupt_config(cluster: Cluster, stack: ChartStack, report: Report, workdir: Path) -> None:
    s = "a corrupt policy or metrics config pushed"
    async with httpx.AsyncClient(timeout=10) as http:
        errors_before = [
            await metric(http, stack, i, "teflon_webhook_policy_reload_errors_total") for i in (0, 1)
        ]
        bad = "mode: enforce\nrules: [{name: x, actions: [{type: explode}]\n"
        for p in stack.pods["webhook"]:
            for f in (p.root / "fs" / "etc" / "teflon" / "policy").glob("*.yaml"):
                f.write_text(bad)  # what the kubelet does when the ConfigMap changes
        await asyncio.sleep(6)  # three reload periods
        errors_after = [
            await metric(http, stack, i, "teflon_webhook_policy_reload_errors_total") for i in (0, 1)
        ]
        loaded = [await metric(http, stack, i, "teflon_webhook_policy_loaded") for i in (0, 1)]
        enforce = [await metric(http, stack, i, "teflon_webhook_policy_enforce") for i in (0, 1)]
        report.check(
            s,
            "corrupt policy file: the reload error is counted on every replica",
            all(a > b for a, b in zip(errors_after, errors_before, strict=True)),
            f"{errors_before} -> {errors_after}",
        )
        report.check(
            s,
            "corrupt policy file: the previous policy stays in force",
            loaded == [1.0, 1.0] and enforce == [1.0, 1.0],
            f"loaded {loaded}, enforce {enforce}",
        )
        logged = [
            line
            for line in stack.logs("webhook")
            if line.get("msg") == "policy not loaded; keeping the previous one"
        ]
        report.check(
            s,
            "corrupt policy file: the error is logged with its cause",
            bool(logged) and "error" in logged[0],
            (logged[0].get("error", "") if logged else "")[:160],
        )
        pods = workload(cluster, "chaos-d", "still", 1)
        resp = await http.post(
            ingest_url(stack, 0),
            content=alert(LABEL_RULE, pods[0]),
            headers={"Content-Type": "application/json"},
        )
        name = pods[0]["metadata"]["name"]

        def labelled() -> dict[str, Any] | None:
            pod = cluster.request("GET", f"/api/v1/namespaces/chaos-d/pods/{name}")
            return pod if LABEL in (pod["metadata"].get("labels") or {}) else None

        try:
            pod = await asyncio.to_thread(cluster.wait_until, labelled, 20, f"{LABEL} on {name}")
        except TimeoutError:
            pod = cluster.request("GET", f"/api/v1/namespaces/chaos-d/pods/{name}")
        report.check(
            s,
            "corrupt policy file: the webhook still acts under the previous policy",
            resp.status_code == 202 and LABEL in (pod["metadata"].get("labels") or {}),
            pod["metadata"].get("labels"),
        )
    # An invalid policy through helm: the chart's schema refuses it and the release stays as it was.
    revision = _revision(cluster)
    broken = workdir / "broken.yaml"
    broken.write_text(yaml.safe_dump({"webhook": {"policy": {"mode": "enforec"}}}))
    try:
        stack.helm_install([workdir / "values.yaml", broken])
        refused, message = False, "helm upgrade succeeded"
    except CommandError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        refused, message = True, (lines[-1] if lines else "")[:200]
    report.check(
        s,
        "invalid policy via helm upgrade: refused with a message, release unchanged",
        refused and _revision(cluster) == revision,
        message,
    )
    # A corrupt metrics config rolled out: the new process refuses to start; the old one keeps serving.
    config = workdir / "bad-metrics.yaml"
    config.write_text("metrics:\n  - name: x\n    backend: nowhere\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "TEFLON_METRICS_CONFIG_FILE": str(config),
        "TEFLON_METRICS_HOST": "127.0.0.1",
        "TEFLON_METRICS_PORT": "1",
        "TEFLON_METRICS_OPS_PORT": "2",
        # Valid serving files, so the config is what the server trips over.
        "TEFLON_METRICS_TLS_CERT_FILE": str(cluster.state / "pki" / "controller-serving.crt"),
        "TEFLON_METRICS_TLS_KEY_FILE": str(cluster.state / "pki" / "controller-serving.key"),
    }
    proc = await asyncio.to_thread(run_to_exit, "teflon.metrics", env)
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    report.check(
        s,
        "corrupt metrics config: a new server refuses to start and says why",
        proc.returncode != 0 and str(config) in tail[0] and "backend" in tail[0],
        tail[0][:200],
    )
    # The API's discovery document is answered by the metrics server itself, through the aggregator.
    still = cluster.kubectl("get", "--raw", CM, check=False)
    report.check(
        s,
        "corrupt metrics config: the running metrics servers keep answering",
        still.returncode == 0,
        still.stdout[:120] or still.stderr[:200],
    )


def _revision(cluster: Cluster) -> int:
    out = cluster.helm("history", RELEASE, "--namespace", NAMESPACE, "--max", "1", "--output", "json").stdout
    return int(json.loads(out)[-1]["revision"])


# --- running ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def chaos_stack(workdir: Path) -> Iterator[tuple[Cluster, ChartStack]]:
    cluster = evidence_cluster()
    fresh_namespace(cluster, SHOP)
    try:
        with installed_stack(cluster, RELEASE, NAMESPACE, workdir, VALUES) as stack:
            yield cluster, stack
    finally:
        for ns in ("chaos-a", "chaos-b", "chaos-d", SHOP):
            with contextlib.suppress(ApiError):
                cluster.request("DELETE", f"/api/v1/namespaces/{ns}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", type=int, action="append", help="scenario number(s) to run (1-4)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    only = set(args.only or [1, 2, 3, 4])
    report = Report()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="teflon-chaos-"))
    workdir.chmod(0o755)
    try:
        with chaos_stack(workdir) as (cluster, stack):
            if 3 in only:  # first: it needs the webhook's alert counts that the other faults reset
                asyncio.run(backend_faults(cluster, stack, report, args.quick))
            if 4 in only:
                asyncio.run(corrupt_config(cluster, stack, report, workdir))
                stack.restart("webhook")
            if 2 in only:
                asyncio.run(replica_killed(cluster, stack, report, args.quick))
            # Last: after the API server's outage the node lifecycle controller has marked the kwok
            # nodes' pods NotReady, and kwok does not mark them Ready again.
            if 1 in only:
                asyncio.run(apiserver_outage(cluster, stack, report, args.quick))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = {
        "seconds": round(time.monotonic() - started, 1),
        "checks": sum(len(e["checks"]) for e in report.scenarios.values()),
        "failed": report.failed,
        "scenarios": report.scenarios,
    }
    publish(summary, args.out)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
