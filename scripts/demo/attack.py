"""The attack the demo replays: a storefront whose pods get compromised, Falco's alerts about them
posted to the webhook, in dry run first and then enforced, and a summary of both phases.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import httpx

from scripts.demo.common import (
    APP,
    CLUSTER_STATE,
    ENFORCE,
    HANDLER,
    NAMESPACE,
    RELEASE,
    ROOT,
    SHOP,
    cluster,
    say,
)
from scripts.demo.supervisor import wait_ready
from scripts.demo.watch import Phase, Watch, hpa_reading
from tests.harness import falco
from tests.harness.cluster import ApiError, Cluster
from tests.harness.workloads import deployment, ready_pods


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
    say(f"   {watch.clock():>5}   the flood stops; watching the HPAs scale back in")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        watch.tick()
        desired, metric = watch.hpa()
        # Enforced, storefront's metric is held (an error): its replicas are all there is to watch.
        settled = phase.mode == "enforce" or (metric == 0.0 and desired == 3)
        if settled and _replicas(c, APP) == 3 and _replicas(c, HANDLER) == 1:
            break
        time.sleep(0.5)
    watch.line()
    phase.seconds = time.monotonic() - watch.start


def _replicas(c: Cluster, name: str) -> int:
    return int(c.request("GET", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{name}")["spec"]["replicas"])


def noise(c: Cluster, i: int) -> dict[str, Any]:
    pods = ready_pods(c, SHOP, APP)
    pod = pods[i % len(pods)]
    return falco.contact_api_server(pod) if i % 3 else falco.read_sensitive_file(pod)


def reset_workload(c: Cluster) -> None:
    for name in (APP, HANDLER):
        try:
            c.request("DELETE", f"/apis/apps/v1/namespaces/{SHOP}/deployments/{name}")
        except ApiError as exc:
            if exc.status != 404:
                raise
    for pod in c.request("GET", f"/api/v1/namespaces/{SHOP}/pods")["items"]:
        # Pods kept in quarantine by the last phase: they are bare now, nothing else removes them.
        if "teflon.io/quarantined-at" in (pod["metadata"].get("annotations") or {}):
            c.request("DELETE", f"/api/v1/namespaces/{SHOP}/pods/{pod['metadata']['name']}")
    for np in c.request("GET", f"/apis/networking.k8s.io/v1/namespaces/{SHOP}/networkpolicies")["items"]:
        c.request(
            "DELETE", f"/apis/networking.k8s.io/v1/namespaces/{SHOP}/networkpolicies/{np['metadata']['name']}"
        )
    c.wait_until(lambda: not ready_pods(c, SHOP, APP) or None, 60, "the previous storefront to go")
    c.apply(deployment(APP, SHOP, 3))
    c.apply(deployment(HANDLER, SHOP, 1))
    c.wait_until(lambda: len(ready_pods(c, SHOP, APP)) == 3 or None, 60, "3 ready storefront pods")
    c.wait_until(lambda: len(ready_pods(c, SHOP, HANDLER)) == 1 or None, 60, "1 ready analyzer pod")
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
        ("pods quarantined (kept, isolated)", lambda p: f"{int(p.applied.get('quarantine', 0))}"),
        ("slowest replacement ready", lambda p: f"{max(p.replaced_in):.1f}s" if p.replaced_in else "-"),
        ("fewest ready storefront pods", lambda p: f"{p.min_ready}"),
        ("pods labelled", lambda p: f"{int(p.applied.get('label', 0))}"),
        ("pods deleted", lambda p: f"{int(p.applied.get('delete', 0))}"),
        ("repeat alerts deduplicated", lambda p: f"{int(p.deduped)}"),
        ("responses refused by guards", lambda p: f"{int(p.skipped)}"),
        ("peak falco_alerts_per_minute", lambda p: f"{p.peak_metric:.0f}"),
        ("peak storefront replicas (held)", lambda p: f"{p.peak_replicas}"),
        ("peak analyzer replicas", lambda p: f"{p.peak_handler}"),
        ("phase duration", lambda p: f"{p.seconds:.0f}s"),
    ]
    say(f"   {'':<32}" + "".join(f"{p.title:>16}" for p in phases))
    for label, value in rows:
        say(f"   {label:<32}" + "".join(f"{value(p):>16}" for p in phases))
    say(f"   demo time {seconds:.0f}s")
    say()
    kubeconfig = CLUSTER_STATE / "kubeconfig"
    say("The services keep running. Poke around:")
    say(f"   export KUBECONFIG={kubeconfig}")
    say(f"   export PATH={ROOT / '.tools' / 'bin'}:$PATH")
    labels = "teflon.io/quarantined,teflon.io/credentials-read"
    say(f"   kubectl -n {SHOP} get pods,hpa,networkpolicies -L {labels}")
    say(f"   kubectl -n {SHOP} get events --field-selector reportingComponent=teflon.io/webhook")
    say(f"   TEFLON_NAMESPACE={NAMESPACE} scripts/kubectl-teflon quarantine list")
    say(
        "   kubectl get --raw "
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{SHOP}/deployments.apps/{APP}/falco_alerts_per_minute"
    )
    say("   make demo-down        # stop the services and remove the demo")
