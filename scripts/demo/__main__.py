"""``make demo``: teflon's whole loop on the local control plane, narrated in the terminal.

    python -m scripts.demo up       install the chart and start its services (a background supervisor)
    python -m scripts.demo attack   deploy the storefront, replay an attack in dry run, then enforced
    python -m scripts.demo down     stop the services, uninstall the chart, delete the demo's namespaces
    python -m scripts.demo serve    the supervisor itself (started by ``up``)

The supervisor runs the chart's webhook and metrics server as real processes behind the chart's
Services (``tests/harness/stack.py``), holding the machine-wide lock on ``custom.metrics.k8s.io``, and
restarts them when their Deployment changes, as a rollout would. It keeps running after the demo so
the aggregated API can be explored; ``make demo-down`` stops it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import falco
from tests.harness.cluster import ApiError, Cluster, CommandError
from tests.harness.stack import ChartStack
from tests.harness.workloads import deployment, quantity, ready_pods

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "teflon-demo"
RELEASE = "teflon"
SHOP = "shop"
APP = "storefront"
HERE = Path(__file__).resolve().parent
VALUES = [ROOT / "tests" / "e2e" / "values" / "processes.yaml", HERE / "values.yaml"]
ENFORCE = [*VALUES, HERE / "enforce.yaml"]
LOCK = "apiservice-custom.metrics.k8s.io"
STATE = ROOT / ".cluster" / "demo"
STATUS = STATE / "status.json"
PIDFILE = STATE / "supervisor.pid"


def say(text: str = "") -> None:
    print(text, flush=True)


def cluster() -> Cluster:
    return Cluster.from_state(ROOT / ".cluster")


# -- the supervisor ---------------------------------------------------------------------------------


def _write_status(**fields: Any) -> None:
    tmp = STATUS.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "time": time.time(), **fields}))
    tmp.replace(STATUS)


def serve() -> int:
    c = cluster()
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    _write_status(state="waiting for the lock on custom.metrics.k8s.io (a test run may own it)")
    with c.lock(LOCK):
        workdir = STATE / "pods"
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o755)
        STATE.chmod(0o755)
        stack = ChartStack(c, RELEASE, NAMESPACE, workdir)
        try:
            _write_status(state="installing the chart")
            stack.uninstall()
            stack.helm_install(VALUES)
            _write_status(state="starting the webhook and the metrics server")
            stack.start("webhook", "metrics")
            generation = 1

            def publish() -> None:
                _write_status(
                    state="ready",
                    generation=generation,
                    pods={k: [p.ip for p in v] for k, v in stack.pods.items()},
                    logs={k: [str(p.log_file) for p in v] for k, v in stack.pods.items()},
                )

            publish()
            while not stop:
                time.sleep(1)
                if stack.reconcile():
                    generation += 1
                    publish()
        except Exception as exc:
            _write_status(state="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            stack.close()
    return 0


def _supervisor_pid() -> int | None:
    try:
        pid = int(PIDFILE.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return pid if b"serve" in cmdline and b"scripts.demo" in cmdline else None


def _status() -> dict[str, Any]:
    try:
        return dict(json.loads(STATUS.read_text()))
    except (OSError, ValueError):
        return {}


def wait_ready(
    generation: int = 1, timeout: float = 300, alive: Callable[[], bool] | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        status = _status()
        state = str(status.get("state", "starting"))
        if state == "ready" and int(status.get("generation", 0)) >= generation:
            return status
        if state == "failed":
            raise SystemExit(
                f"demo: the services did not start: {status.get('error')}\n  see {STATE}/supervisor.log"
            )
        if not (alive() if alive is not None else _supervisor_pid() is not None):
            raise SystemExit(f"demo: the supervisor exited; see {STATE}/supervisor.log")
        if state != last:
            say(f"  … {state}")
            last = state
        time.sleep(0.5)
    raise SystemExit(f"demo: the services were not ready after {timeout:.0f}s; see {STATE}/supervisor.log")


def _gone_or_active(c: Cluster, ns: str) -> bool:
    try:
        return "deletionTimestamp" not in c.request("GET", f"/api/v1/namespaces/{ns}")["metadata"]
    except ApiError as exc:
        if exc.status == 404:
            return True
        raise


def up() -> int:
    if _supervisor_pid() is not None:
        down(quiet=True)
    STATE.mkdir(parents=True, exist_ok=True)
    STATUS.unlink(missing_ok=True)
    c = cluster()
    for ns in (SHOP, NAMESPACE):
        # A previous demo's namespaces may still be terminating (`make demo-down` right before).
        c.wait_until(functools.partial(_gone_or_active, c, ns), 180, f"namespace {ns} to finish terminating")
    try:
        c.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SHOP}},
        )
    except ApiError as exc:
        if exc.status != 409:
            raise
    say("▶ installing charts/teflon and starting its services")
    say("  (webhook and metrics server run as real processes behind the chart's Services)")
    with (STATE / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.demo", "serve"],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    started = time.monotonic()
    wait_ready(alive=lambda: proc.poll() is None)
    say(f"  ✓ ready in {time.monotonic() - started:.0f}s")
    return 0


def down(*, quiet: bool = False) -> int:
    pid = _supervisor_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if _supervisor_pid() is None:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    if not quiet:
        try:
            c = cluster()
        except OSError:
            say("demo: no local control plane; nothing else to clean up")
            return 0
        c.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--ignore-not-found", check=False)
        for ns in (SHOP, NAMESPACE):
            try:
                c.request("DELETE", f"/api/v1/namespaces/{ns}")
            except ApiError as exc:
                if exc.status != 404:
                    raise
        say("demo: services stopped, chart uninstalled, namespaces shop and teflon-demo deleted")
        say("      the local control plane keeps running: `make cluster-down` stops it")
    return 0


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


# -- watching -----------------------------------------------------------------------------------------


def webhook_samples(status: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of every webhook replica's /metrics, summed over replicas."""
    total: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for ip in status["pods"]["webhook"]:
        text = httpx.get(f"http://{ip}:8081/metrics", timeout=5).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                total[key] = total.get(key, 0.0) + s.value
    return total


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lbls), v in samples.items()
        if n == name and all(dict(lbls).get(k) == x for k, x in labels.items())
    )


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
    peak_metric: float = 0.0
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
        if time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + 5
            self.line()

    def line(self) -> None:
        samples = webhook_samples(self.status)
        ph = self.phase
        ph.alerts = total(samples, "teflon_webhook_alerts_total")
        ph.would = total(samples, "teflon_webhook_actions_total", result="dry_run")
        ph.deduped = total(samples, "teflon_webhook_skips_total", reason="deduped")
        ph.skipped = total(samples, "teflon_webhook_actions_total", result="skipped") - ph.deduped
        ph.applied = {
            a: total(samples, "teflon_webhook_actions_total", result="applied", action=a)
            for a in ("label", "isolate", "evict", "delete")
        }
        ready = ready_pods(self.c, SHOP, APP)
        dep = self.c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{APP}")
        desired, metric = self.hpa()
        ph.peak_replicas = max(ph.peak_replicas, int(dep["spec"]["replicas"]))
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
        hpa = f"{metric:5.1f}/min → {desired} replicas" if metric is not None else "(no reading yet)"
        say(f"   {self.clock():>5}│ {int(ph.alerts):>6} │ {responses:<24} │ {pods:<18} │ {hpa}")


# -- the attack -----------------------------------------------------------------------------------


def post(status: dict[str, Any], alert: dict[str, Any], n: list[int]) -> None:
    ips = status["pods"]["webhook"]
    url = f"http://{ips[n[0] % len(ips)]}:2801/v1/falco"  # round robin, as the Service spreads Falco's posts
    n[0] += 1
    resp = httpx.post(url, json=alert, timeout=5)
    if resp.status_code != 202:
        raise SystemExit(f"demo: the webhook refused an alert: HTTP {resp.status_code} {resp.text}")


def run_phase(c: Cluster, status: dict[str, Any], phase: Phase) -> None:
    watch = Watch(c, status, phase)
    counter = [0]
    pods = ready_pods(c, SHOP, APP)
    victim, second = pods[0], pods[1]
    say(
        f"   the attacker gets a shell in {victim['metadata']['name']} (on node {victim['spec']['nodeName']})"
    )
    script: list[tuple[float, str, Callable[[], dict[str, Any]]]] = [
        (1, "terminal shell", lambda: falco.terminal_shell(victim)),
        (4, "reads /etc/shadow", lambda: falco.read_sensitive_file(victim)),
        (7, "drops and runs a miner", lambda: falco.drop_and_execute(victim)),
        (12, "shell in a second pod", lambda: falco.terminal_shell(second)),
    ]
    # Then the intrusion spreads: the compromised pods keep probing the API server and reading secrets.
    t = 14.0
    for i in range(40):
        script.append((t, "", functools.partial(noise, c, i)))
        t += 0.6
    started = time.monotonic()
    for at, what, build in script:
        while time.monotonic() - started < at:
            watch.tick()
            time.sleep(0.25)
        alert = build()
        if what:
            pod = alert["output_fields"]["k8s.pod.name"]
            say(f"   {watch.clock():>5} ☠ {pod:<30} {what:<44} → Falco: {alert['rule']}")
        post(status, alert, counter)
    say(f"   {watch.clock():>5}   the flood stops; watching the HPA scale back in")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        watch.tick()
        desired, metric = watch.hpa()
        if (
            metric == 0.0
            and desired == 3
            and int(
                c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{APP}")["spec"]["replicas"]
            )
            == 3
        ):
            break
        time.sleep(0.5)
    watch.line()
    phase.seconds = time.monotonic() - watch.start


def noise(c: Cluster, i: int) -> dict[str, Any]:
    pods = ready_pods(c, SHOP, APP)
    pod = pods[i % len(pods)]
    return falco.contact_api_server(pod) if i % 3 else falco.read_sensitive_file(pod)


def reset_workload(c: Cluster) -> None:
    try:
        c.request("DELETE", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{APP}")
    except ApiError as exc:
        if exc.status != 404:
            raise
    for np in c.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{SHOP}/networkpolicies")["items"]:
        c.request(
            "DELETE", f"/apis/networking.k8s.io/v1/namespaces/{SHOP}/networkpolicies/{np['metadata']['name']}"
        )
    c.wait_until(lambda: not ready_pods(c, SHOP, APP) or None, 60, "the previous storefront to go")
    c.apply(deployment(APP, SHOP, 3))
    c.wait_until(lambda: len(ready_pods(c, SHOP, APP)) == 3 or None, 60, "3 ready storefront pods")
    # The HPA needs one reading before the attack starts, so the table shows it from the first line.
    c.wait_until(lambda: hpa_reading(c)[1] is not None or None, 60, "the HPA's first reading")


def attack() -> int:
    c = cluster()
    status = wait_ready()
    started = time.monotonic()
    phases = [
        Phase("1 · dry run", "dryRun"),
        Phase("2 · enforce", "enforce"),
    ]
    for phase in phases:
        say()
        if phase.mode == "dryRun":
            say("━━ phase 1 · dry run: teflon decides and records, but changes nothing ━━")
        else:
            say("━━ phase 2 · enforce: the same policy, now allowed to act ━━")
            say("   helm upgrade … --values scripts/demo/enforce.yaml")
            say("   (the webhook's pods roll to the new policy; its RBAC gains exactly the write verbs used)")
            generation = int(status.get("generation", 1))
            c.helm(
                "upgrade",
                RELEASE,
                str(ROOT / "charts" / "teflon"),
                "--namespace",
                NAMESPACE,
                *[a for f in ENFORCE for a in ("--values", str(f))],
            )
            status = wait_ready(generation + 1)
            say("   the webhook restarted with the enforce policy")
        reset_workload(c)
        run_phase(c, status, phase)
    summary(phases, time.monotonic() - started)
    return 0


def summary(phases: list[Phase], seconds: float) -> None:
    say()
    say("━━ summary ━━")
    rows: list[tuple[str, Callable[[Phase], str]]] = [
        ("Falco alerts received", lambda p: f"{int(p.alerts)}"),
        ("decisions recorded as dry run", lambda p: f"{int(p.would)}"),
        ("pods labelled", lambda p: f"{int(p.applied.get('label', 0))}"),
        ("pods isolated (NetworkPolicy)", lambda p: f"{int(p.applied.get('isolate', 0))}"),
        ("pods deleted", lambda p: f"{int(p.applied.get('delete', 0))}"),
        ("repeat alerts deduplicated", lambda p: f"{int(p.deduped)}"),
        ("responses refused by guards", lambda p: f"{int(p.skipped)}"),
        ("peak falco_alerts_per_minute", lambda p: f"{p.peak_metric:.0f}"),
        ("peak storefront replicas", lambda p: f"{p.peak_replicas}"),
        ("phase duration", lambda p: f"{p.seconds:.0f}s"),
    ]
    say(f"   {'':<32}" + "".join(f"{p.title:>16}" for p in phases))
    for label, value in rows:
        say(f"   {label:<32}" + "".join(f"{value(p):>16}" for p in phases))
    say(f"   demo time {seconds:.0f}s")
    say()
    kubeconfig = ROOT / ".cluster" / "kubeconfig"
    say("The services keep running. Poke around:")
    say(f"   export KUBECONFIG={kubeconfig}")
    say(f"   export PATH={ROOT / '.tools' / 'bin'}:$PATH")
    labels = "teflon.io/quarantined,teflon.io/credentials-read"
    say(f"   kubectl -n {SHOP} get pods,hpa,networkpolicies -L {labels}")
    say(f"   kubectl -n {SHOP} get events --field-selector reportingComponent=teflon.io/webhook")
    say(
        "   kubectl get --raw "
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{SHOP}/deployments.apps/{APP}/falco_alerts_per_minute"
    )
    say("   make demo-down        # stop the services and remove the demo")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "attack", "down", "serve"])
    args = parser.parse_args()
    try:
        if args.command == "serve":
            return serve()
        if args.command == "up":
            return up()
        if args.command == "attack":
            return attack()
        return down()
    except CommandError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
