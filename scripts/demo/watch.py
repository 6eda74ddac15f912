"""What the demo shows while it runs: a status line every few seconds (alerts, responses, the
storefront's pods, the HPA's reading) and each response Event as it appears.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from scripts.demo.common import APP, HANDLER, SHOP, say
from tests.harness.cluster import ApiError, Cluster
from tests.harness.prom import metric_sum
from tests.harness.workloads import quantity, ready_pods


def hpa_reading(c: Cluster) -> tuple[int, float | None]:
    """The storefront HPA's desired replicas and its metric as it last read it (None: no reading)."""
    try:
        obj = c.request("GET", f"/apis/autoscaling/v2/namespaces/{SHOP}/horizontalpodautoscalers/{APP}")
    except ApiError:
        return 0, None
    st = obj.get("status", {})
    current = (st.get("currentMetrics") or [{}])[0].get("object", {}).get("current", {})
    if "averageValue" not in current:
        return int(st.get("desiredReplicas") or 0), None
    # An AverageValue target reports the metric divided by the replicas the HPA counted.
    return int(st.get("desiredReplicas") or 0), quantity(current["averageValue"]) * int(
        st.get("currentReplicas") or 0
    )


def webhook_metrics(status: dict[str, Any]) -> list[str]:
    """The /metrics text of every webhook replica."""
    return [httpx.get(f"http://{ip}:8081/metrics", timeout=5).text for ip in status["pods"]["webhook"]]


def total(texts: list[str], name: str, **labels: str) -> float:
    """``name``'s samples whose labels include ``labels``, summed over the replicas."""
    return sum(metric_sum(text, name, **labels) for text in texts)


@dataclass
class Phase:
    title: str
    mode: str
    alerts: float = 0.0
    would: float = 0.0
    applied: dict[str, float] = field(default_factory=dict)
    skipped: float = 0.0
    deduped: float = 0.0
    policies: int = 0
    peak_replicas: int = 0
    peak_handler: int = 0
    peak_metric: float = 0.0
    min_ready: int = 0
    replaced_in: list[float] = field(default_factory=list)
    seconds: float = 0.0


class Watch:
    """Prints a status line every few seconds and each response Event as it appears."""

    def __init__(self, c: Cluster, status: dict[str, Any], phase: Phase) -> None:
        self.c = c
        self.status = status
        self.phase = phase
        self.start = time.monotonic()
        self.seen_events: set[str] = set()
        self.next_line = 0.0
        self.header_done = False
        self.pending: dict[str, float] = {}  # quarantined pod -> when its quarantine Event appeared
        for e in self._events():
            self.seen_events.add(e["metadata"]["uid"])

    def clock(self) -> str:
        s = int(time.monotonic() - self.start)
        return f"{s // 60}:{s % 60:02d}"

    def _events(self) -> list[dict[str, Any]]:
        items = self.c.request("GET", f"/apis/events.k8s.io/v1/namespaces/{SHOP}/events")["items"]
        return [e for e in items if e.get("reportingController") == "teflon.io/webhook"]

    def hpa(self) -> tuple[int, float | None]:
        return hpa_reading(self.c)

    def tick(self) -> None:
        for e in sorted(self._events(), key=lambda e: e.get("eventTime") or ""):
            uid = e["metadata"]["uid"]
            if uid in self.seen_events:
                continue
            self.seen_events.add(uid)
            pod = e["regarding"]["name"]
            note = e.get("note", "").split(". Falco rule")[0]
            note = note if len(note) <= 44 else note[:43] + "…"
            rule = (
                e.get("note", "").split("Falco rule ")[-1].split(" (")[0]
                if "Falco rule" in e.get("note", "")
                else ""
            )
            mark = "⚑" if e["reason"] == "TeflonDryRun" else ("✔" if e["reason"] == "TeflonApplied" else "·")
            say(f"   {self.clock():>5} {mark} {pod:<30} {note:<44} ← {rule}")
            if e["reason"] == "TeflonApplied" and e.get("action") == "Quarantine":
                self.pending[pod] = time.monotonic()
        self._replacements()
        if time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + 5
            self.line()

    def _replacements(self) -> None:
        """Time each quarantined pod's replacement: until the Deployment's ready pods are whole again."""
        if not self.pending:
            return
        ready = ready_pods(self.c, SHOP, APP)
        dep = self.c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{APP}")
        names = {p["metadata"]["name"] for p in ready}
        for pod, since in list(self.pending.items()):
            if pod not in names and len(ready) >= int(dep["spec"]["replicas"]):
                seconds = time.monotonic() - since
                self.phase.replaced_in.append(seconds)
                say(f"   {self.clock():>5}   {pod} replaced: {len(ready)} ready again after {seconds:.1f}s")
                del self.pending[pod]

    def line(self) -> None:
        samples = webhook_metrics(self.status)
        ph = self.phase
        ph.alerts = total(samples, "teflon_webhook_alerts_total")
        ph.would = total(samples, "teflon_webhook_actions_total", result="dry_run")
        ph.deduped = total(samples, "teflon_webhook_skips_total", reason="deduped")
        ph.skipped = total(samples, "teflon_webhook_actions_total", result="skipped") - ph.deduped
        ph.applied = {
            a: total(samples, "teflon_webhook_actions_total", result="applied", action=a)
            for a in ("label", "isolate", "evict", "delete", "quarantine")
        }
        ready = ready_pods(self.c, SHOP, APP)
        dep = self.c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{APP}")
        desired, metric = self.hpa()
        ph.peak_replicas = max(ph.peak_replicas, int(dep["spec"]["replicas"]))
        handler = self.c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{HANDLER}")
        ph.peak_handler = max(ph.peak_handler, int(handler["spec"]["replicas"]))
        ph.min_ready = min(ph.min_ready, len(ready)) if ph.min_ready else len(ready)
        if metric is not None:
            ph.peak_metric = max(ph.peak_metric, metric)
        ph.policies = len(
            self.c.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{SHOP}/networkpolicies")["items"]
        )
        if not self.header_done:
            rule = "─" * 26
            say(f"   ─────┬────────┬{rule}┬────────────────────┬{rule}──")
            columns = ["    time", " alerts ", " responses".ljust(26), " storefront pods".ljust(20)]
            say("│".join([*columns, " HPA: falco_alerts_per_minute"]))
            say(f"   ─────┼────────┼{rule}┼────────────────────┼{rule}──")
            self.header_done = True
        acted = int(sum(ph.applied.values()))
        responses = (
            f"{int(ph.would)} would act"
            if ph.mode == "dryRun"
            else f"{acted} applied, {int(ph.deduped)} repeats"
        )
        pods = f"{len(ready)}/{dep['spec']['replicas']} ready"
        hpa = f"{metric:5.1f}/min → {desired} replicas" if metric is not None else "(held: no reading)"
        say(f"   {self.clock():>5}│ {int(ph.alerts):>6} │ {responses:<24} │ {pods:<18} │ {hpa}")
