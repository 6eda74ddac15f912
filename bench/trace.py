# ruff: noqa: S607 - runs git on arguments built here
"""Trace one enforced alert end to end: every Kubernetes API call the webhook makes, and when.

A real webhook (``teflon.webhook.app.create_app`` with the service's ``KubeClusterActions``) runs in
this process in enforce mode against the local control plane; its one ``KubeClient`` records each
request it sends (method, path, start, duration, status). One alert is posted to its ingest route
for a pod of a 3-replica Deployment, and the calls from the post to the write that applies the action
are the trace; the Event teflon records afterwards is listed too, after the action. Each scenario
starts a fresh webhook, so its caches are cold: this is the first alert about that pod and workload.

``python -m bench.trace`` (under the cluster lock, with ``TEFLON_CLUSTER_STATE`` set where several
runs share one control plane) writes ``build/bench/trace.json`` and the trace section of
``docs/benchmarks.md``; ``make bench`` runs it with the other control-plane phases. Call counts and
their order are deterministic; the milliseconds depend on the machine's load, which is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry

from teflon.common.kube import JSON, KubeClient, KubeError, load_credentials
from teflon.webhook.app import create_app
from teflon.webhook.kube_actions import KubeClusterActions
from teflon.webhook.settings import Settings
from tests.harness.cluster import Cluster, evidence_cluster
from tests.harness.workloads import deployment, ensure_namespace, wait_ready_pods

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs/benchmarks.md"
BEFORE = ROOT / "docs/benchmarks/trace-before.json"
BEGIN = "<!-- trace:begin (written by python -m bench.trace) -->"
END = "<!-- trace:end -->"
REPLICAS = 3
OK = 200

# (scenario, Falco rule of the alert, the rule's action)
SCENARIOS: tuple[tuple[str, str, JSON], ...] = (
    ("label", "Terminal shell in container", {"type": "label"}),
    ("delete", "Fileless execution via memfd_create", {"type": "delete", "gracePeriodSeconds": 0}),
)


class RecordingKube(KubeClient):
    """A ``KubeClient`` that keeps every request it made, with its start and duration in seconds."""

    def __init__(self, kubeconfig: str) -> None:
        super().__init__(load_credentials(kubeconfig))
        self.calls: list[dict[str, Any]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        start = time.perf_counter()
        status = OK  # a success's own code (200, 201) is not kept by KubeClient
        try:
            return await super().request(method, path, **kwargs)
        except KubeError as exc:
            status = exc.status
            raise
        finally:
            end = time.perf_counter()
            self.calls.append({"method": method, "path": path, "start": start, "end": end, "status": status})


def _policy(rule: str, action: JSON) -> JSON:
    return {
        "mode": "enforce",
        "rules": [{"name": f"trace-{action['type']}", "match": {"rules": [rule]}, "actions": [action]}],
    }


def _alert(rule: str, namespace: str, pod: JSON) -> JSON:
    meta = pod["metadata"]
    return {
        "rule": rule,
        "priority": "Critical",
        "source": "syscall",
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "hostname": pod["spec"]["nodeName"],
        "output": f"{rule} (pod={meta['name']})",
        "output_fields": {"k8s.ns.name": namespace, "k8s.pod.name": meta["name"], "k8s.pod.uid": meta["uid"]},
    }


def _step(call: Mapping[str, Any], pod_path: str, applied: bool) -> str:
    method, path = call["method"], call["path"]
    if applied:
        return "after the action"
    if "/leases" in path:
        return "claim"
    if path == pod_path and method in {"PATCH", "DELETE"}:
        return "action"
    if "/replicasets/" in path or "/deployments/" in path:
        return "owner"
    if path == pod_path:
        return "pod"
    return "other"


async def _scenario(
    cluster: Cluster, *, namespace: str, home: str, pod: JSON, rule: str, action: JSON, work: Path
) -> dict[str, Any]:
    policy_file = work / f"policy-{action['type']}.yaml"
    policy_file.write_text(yaml.safe_dump(_policy(rule, action)))
    settings = Settings(
        namespace=home,
        pod_name="teflon-webhook-trace",
        policy_file=policy_file,
        kubeconfig=str(cluster.kubeconfig),
    )
    kube = RecordingKube(str(cluster.kubeconfig))
    actions = KubeClusterActions(kube, reporting_instance=settings.pod_name)
    app = create_app(settings, actions=actions, registry=CollectorRegistry())
    await app.service.start()
    pod_path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app.ingest), base_url="http://ingest"
        ) as c:
            kube.calls.clear()  # whatever the service did at start is not the alert's
            posted = time.perf_counter()
            resp = await c.post("/", json=_alert(rule, namespace, pod))
            resp.raise_for_status()
            await app.service.queue.join()
    finally:
        await app.service.stop()
        await actions.aclose()
    rows: list[dict[str, Any]] = []
    previous = posted
    applied = False
    for call in kube.calls:
        step = _step(call, pod_path, applied)
        rows.append(
            {
                "step": step,
                "call": f"{call['method']} {call['path'].replace(namespace, '<ns>').replace(home, '<home>')}",
                "status": call["status"],
                "gap_ms": round((call["start"] - previous) * 1000, 2),
                "ms": round((call["end"] - call["start"]) * 1000, 2),
                "at_ms": round((call["end"] - posted) * 1000, 2),
            }
        )
        previous = call["end"]
        applied = applied or step == "action"
    done = next((r["at_ms"] for r in rows if r["step"] == "action"), None)
    return {
        "rows": rows,
        "action_applied_ms": done,
        "calls_before_action": sum(r["step"] != "after the action" for r in rows),
    }


def run(cluster: Cluster) -> dict[str, Any]:
    """Both scenarios on ``cluster``, in namespaces of their own that are removed afterwards."""
    suffix = secrets.token_hex(3)
    namespace, home = f"trace-{suffix}", f"trace-home-{suffix}"
    for name in (namespace, home):
        ensure_namespace(cluster, name)
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "scenarios": {},
    }
    try:
        cluster.request(
            "POST",
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            deployment("shop", namespace, REPLICAS),
        )
        pods = wait_ready_pods(cluster, namespace, "shop", REPLICAS, timeout=90)
        with tempfile.TemporaryDirectory(prefix="teflon-trace-") as tmp:
            for (name, rule, action), pod in zip(SCENARIOS, pods, strict=False):
                out["scenarios"][name] = asyncio.run(
                    _scenario(
                        cluster,
                        namespace=namespace,
                        home=home,
                        pod=pod,
                        rule=rule,
                        action=action,
                        work=Path(tmp),
                    )
                )
    finally:
        for name in (namespace, home):
            cluster.request("DELETE", f"/api/v1/namespaces/{name}")
    out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return out


def _table(scenario: Mapping[str, Any]) -> list[str]:
    lines = [
        "| # | step | call | status | gap ms | call ms | at ms |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for i, r in enumerate(scenario["rows"], 1):
        lines.append(
            f"| {i} | {r['step']} | `{r['call']}` | {'ok' if r['status'] == OK else r['status']} "
            f"| {r['gap_ms']:.1f} | {r['ms']:.1f} | {r['at_ms']:.1f} |"
        )
    return lines


def _counts(scenario: Mapping[str, Any]) -> str:
    before = [r for r in scenario["rows"] if r["step"] != "after the action"]
    return ", ".join(f"{r['call'].split()[0]} {r['step']}" for r in before)


def section(trace: Mapping[str, Any], before: Mapping[str, Any] | None = None) -> list[str]:
    """The docs/benchmarks.md section for ``trace`` (what ``run`` returned), with ``before`` if given."""
    lines = [
        BEGIN,
        "## 6. One enforced alert, call by call",
        "",
        "Every Kubernetes API call one webhook makes for one alert, from the alert's POST to the write that",
        "applies the action, then what it does after (`bench/trace.py`, `python -m bench.trace`). A real",
        "webhook app (queue, workers, responder, `KubeClusterActions`) runs in the benchmark's process in",
        "enforce mode against the local control plane, straight to the API server (no network namespace",
        "bridge); its `KubeClient` records each request. The pod belongs to a 3-replica Deployment; each",
        "scenario starts a fresh webhook, so this is the first alert about the pod and its workload (cold",
        "caches). *gap*: time since the previous call ended (or since the POST, for the first); *at*: when",
        "the call ended, from the POST; *ok*: a 2xx answer. The first call also opens the webhook's",
        "connection to the API server (TCP and TLS handshakes), as the first alert after a start does.",
        "Call counts and order are deterministic; the milliseconds are from",
        f"one run on {trace['cpus']} shared CPUs, load average {trace['load_average_at_start']} at the",
        f"start and {trace['load_average_at_end']} at the end ({trace['date']}).",
        "",
    ]
    for name, sc in trace["scenarios"].items():
        lines += [f"### enforced {name}", ""]
        if before is not None and name in before.get("scenarios", {}):
            old = before["scenarios"][name]
            lines += [
                f"Before (commit `{before.get('commit', '?')}`, {before['date']}, load average"
                f" {before['load_average_at_start']}):"
                f" {old['calls_before_action']} calls until the action ({_counts(old)}),"
                f" applied {old['action_applied_ms']:.1f} ms after the POST.",
                "",
                *_table(old),
                "",
            ]
        lines += [
            f"Now (commit `{trace.get('commit', '?')}`): {sc['calls_before_action']} calls until the action"
            f" ({_counts(sc)}), applied"
            f" {sc['action_applied_ms']:.1f} ms after the POST.",
            "",
            *_table(sc),
            "",
        ]
    lines += [
        "How to read it: the call counts are the result. One run's milliseconds move by more than a call",
        "costs (compare the PATCH and DELETE rows of two runs), so the 3 to 5 ms a removed GET took shows",
        "reliably only in the counts and in the medians of the reaction benchmark (section 2). The pod is",
        "read once per alert and that read serves the decisions, the workload and the action; the owner",
        "read before the claim happens on the first alert about a workload only (cached five minutes); a",
        "removal reads the ReplicaSet again, fresh, because `minHealthyReplicas` must count the ready",
        "replicas as they are now (docs/design.md, *What is read, and when*).",
        "",
        END,
        "",
    ]
    return lines


def before() -> dict[str, Any] | None:
    """The trace kept from before the hot path was trimmed (docs/benchmarks/trace-before.json)."""
    return json.loads(BEFORE.read_text()) if BEFORE.exists() else None


def kept_section(page: str) -> list[str]:
    """The trace section of ``page`` as it stands (BEGIN to END), or nothing when it has none."""
    if BEGIN not in page or END not in page:
        return []
    body = page.split(BEGIN, 1)[1].split(END, 1)[0]
    return [*(BEGIN + body + END).split("\n"), ""]


def write_section(trace: Mapping[str, Any]) -> None:
    """Replace the trace section of docs/benchmarks.md in place (or add it before "Reproduce")."""
    block = "\n".join(section(trace, before()))
    text = DOC.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        head, sep, tail = text.partition("## Reproduce")
        text = head + block + sep + tail if sep else text + "\n" + block
    DOC.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build/bench/trace.json")
    parser.add_argument("--save-before", action="store_true", help=f"also keep this run as {BEFORE.name}")
    parser.add_argument("--no-doc", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--render", type=Path, help="write the section from this saved trace; no cluster")
    args = parser.parse_args()
    if args.render is not None:
        write_section(json.loads(args.render.read_text()))
        return 0
    trace = run(evidence_cluster())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(trace, indent=2) + "\n")
    if args.save_before:
        BEFORE.write_text(json.dumps(trace, indent=2) + "\n")
    if not args.no_doc:
        write_section(trace)
    for name, sc in trace["scenarios"].items():
        applied = sc["action_applied_ms"]
        print(
            f"bench.trace: {name}: {sc['calls_before_action']} calls, applied at {applied} ms",
            file=sys.stderr,
        )
        for r in sc["rows"]:
            times = f"{r['gap_ms']:>7.1f} {r['ms']:>7.1f} {r['at_ms']:>7.1f}"
            print(f"  {r['step']:<17} {r['call']:<80} {r['status']} {times}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
