# ruff: noqa: E501 - the page's prose is kept one source line per rendered line
"""Write docs/benchmarks.md and its plots from the results of ``python -m bench.run``.

.venv/bin/python -m bench.report [--results build/bench/results.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
IMG = ROOT / "docs" / "benchmarks"
COMMAND = "make bench"


def _save(fig: Any, name: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(IMG / name, dpi=110)
    plt.close(fig)
    return f"benchmarks/{name}"


def plot_latency(ingest: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for shape, data in ingest.items():
        rates = [row["rate"] for row in data["latency"]]
        ax.plot(rates, [row["p50_ms"] for row in data["latency"]], marker="o", label=f"{shape} p50")
        ax.plot(
            rates,
            [row["p99_ms"] for row in data["latency"]],
            marker="s",
            linestyle="--",
            label=f"{shape} p99",
        )
    ax.set_xlabel("offered load (alerts/s, one alert per request)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_yscale("log")
    ax.set_title("teflon webhook: ingest latency at fixed rates")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, "ingest-latency.png")


def plot_reaction(reaction: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.5))
    data = [reaction[a]["values_ms"] for a in ("label", "delete")]
    ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=True)
    ax.set_yticks([1, 2], ["label", "delete"])
    ax.set_xlabel("alert posted -> Kubernetes API call completed (ms)")
    ax.set_title("teflon: reaction latency on the local control plane")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, "reaction-latency.png")


def plot_custom_metrics(cm: dict[str, Any]) -> str:
    names = [k for k in cm if isinstance(cm[k], dict)]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [cm[n]["p50_ms"] for n in names], width=0.4, label="p50")
    ax.bar([x + 0.2 for x in xs], [cm[n]["p99_ms"] for n in names], width=0.4, label="p99")
    ax.set_xticks(list(xs), names, rotation=10)
    ax.set_ylabel("ms through kube-apiserver + aggregator")
    ax.set_title(f"custom.metrics.k8s.io latency ({cm['pods']} pods)")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, "custom-metrics-latency.png")


def plot_memory(mem: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(
        ["idle", f"after {mem['alerts']:,} alerts\nover {mem['distinct_pods']:,} pods"],
        [mem["rss_idle_mib"], mem["rss_after_mib"]],
    )
    ax.set_ylabel("resident memory (MiB)")
    ax.set_title("teflon webhook memory")
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, "memory.png")


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def peer_section(peers: dict[str, Any]) -> list[str]:
    out = ["## The peers", ""]
    any_missing = False
    for name, p in peers.items():
        if p.get("available"):
            out.append(
                f"- **{name}** {p.get('version', '')}: built from the Go module proxy ({p.get('role', '')})."
            )
        else:
            any_missing = True
            out.append(
                f"- **{name}** (`{p.get('module', '')}@{p.get('version', '')}`, wanted as: {p.get('role', '')}): "
                "**not built here.** The Go module proxy answered:"
            )
            out += [
                "",
                "  ```",
                *[f"  {line}" for line in str(p.get("reason", "")).splitlines()],
                "  ```",
                "",
            ]
    if any_missing:
        out += [
            "Every `github.com/falcosecurity/*` module (and Falco Talon's earlier module paths) gets the same "
            "403 from the module proxy this machine reaches, for listing as well as for any pinned version, so "
            "neither peer can be fetched, let alone built, here; the only other channels this project may use "
            "do not carry them either (Debian's archive has Falco's libraries but neither program; PyPI and npm "
            "have neither). The tables below therefore have no peer column and no teflon/peer ratio: a ratio against a "
            "re-implementation of a peer would measure the re-implementation. `bench/peers.py` builds them "
            "(cached under `${XDG_CACHE_HOME:-~/.cache}/teflon/peers/`) on a machine whose proxy serves them, "
            "and this page then needs its peer columns added from that run.",
            "",
        ]
    return out


def write(results: dict[str, Any]) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        "What teflon costs and how fast it reacts, measured on one machine in one run. Regenerate this page",
        f"with `{COMMAND}` (about 15 minutes; `make bench BENCH_ARGS=--quick` for a short run). The raw",
        "numbers are in `docs/benchmarks/results.json`.",
        "",
        "## Machine and versions",
        "",
        f"- {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}",
        f"- teflon at commit `{m['commit']}`, measured {m['date']}; load average at start {m['load_average_at_start']}",
        "- " + ", ".join(f"{k} {v}" for k, v in m.get("packages", {}).items()),
    ]
    if "cluster" in results:
        lines.append(
            f"- local control plane: Kubernetes {results['cluster']['kubernetes']} (kube-apiserver, "
            "controller-manager, scheduler, etcd built by `scripts/cluster.sh`), kwok nodes"
        )
    lines += [
        f"- {results['rounds']} interleaved rounds{' (quick mode)' if results['quick'] else ''}; each figure is "
        "the median over rounds unless it says otherwise",
        "- percentiles (p50, p90, p99) interpolate linearly between the two nearest samples, NumPy's default "
        "(`tests/harness/stats.py`, the one definition every published figure uses)",
        "- every load goes to 127.0.0.1 or to the network namespaces the harness creates",
        "",
        *peer_section(results["peers"]),
        "## The alert mix",
        "",
        "Every run sends real captured Falco alerts (`bench/alerts.py`): Unexpected UDP Traffic (30 %),",
        "Terminal shell in container (25 %, two priorities), Read sensitive file untrusted (15 %), a k8s_audit",
        "Create HostNetwork Pod (15 %), Fileless execution via memfd_create (10 %) and Falco's internal drop",
        "message (5 %), 0.3 to 2.7 KB each, with namespace, pod, pod UID and node rewritten over 5,000 pods in",
        "100 namespaces (100,000 pods for the memory run).",
        "",
    ]
    if "ingest" in results:
        ing = results["ingest"]
        lines += [
            "## 1. Ingest: throughput and latency",
            "",
            "One `python -m teflon.webhook` process on 127.0.0.1, dry run, no cluster. *1 worker*:",
            "`TEFLON_WEBHOOK_WORKERS=1`; *chart default*: the chart's `webhook.workers` (4) and its default policy.",
            "Throughput is closed loop over 8 keep-alive connections, one alert per request, counted until the",
            "queue has drained, and only with zero drops: every answer 202, `teflon_webhook_alerts_total` up by",
            "exactly the number sent, `teflon_webhook_alerts_rejected_total` unchanged. Latency is open loop",
            "(each request has a scheduled send time and counts from it), observed by the client on loopback.",
            "",
            "| shape | alerts/s (zero drops) | server CPU per alert | zero drops |",
            "| --- | ---: | ---: | --- |",
        ]
        for shape, d in ing.items():
            t = d["throughput"]
            lines.append(
                f"| {shape} | {fmt(t['alerts_per_second'], 0)} | {fmt(t['server_cpu_us_per_alert'], 0)} µs | "
                f"{'yes' if t['zero_drops'] else 'NO'} |"
            )
        lines += [
            "",
            "| shape | offered alerts/s | achieved | p50 ms | p99 ms | non-202 |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for shape, d in ing.items():
            for row in d["latency"]:
                lines.append(
                    f"| {shape} | {row['rate']:.0f} | {fmt(row['achieved_rate'], 0)} | {fmt(row['p50_ms'], 2)} | "
                    f"{fmt(row['p99_ms'], 2)} | {row['non_202']:.0f} |"
                )
        lines += [
            "",
            f"![ingest latency]({plot_latency(ing)})",
            "",
            "For a user: Falco's `http_output` posts one alert at a time and waits for the answer, so the",
            "throughput row is the alert rate one webhook replica absorbs with nothing lost; above it, alerts",
            "queue in Falco's own output buffer. Where the achieved rate falls below the offered rate, the",
            "replica is saturated and latency is queueing time: add replicas (the metrics server sums them).",
            "",
        ]
    if "cluster" in results:
        rx = results["cluster"]["reaction"]
        lines += [
            "## 2. Reaction latency on the local control plane",
            "",
            "The chart installed with an enforce policy (label on *Terminal shell in container*, delete with",
            "grace period 0 on *Fileless execution via memfd_create*); its webhook runs as a real process with",
            "the chart's ServiceAccount and RBAC. One alert at a time, 0.2 s apart, each about a different",
            "Deployment pod on a kwok node; the time runs from posting the alert to a watch on the pods",
            "showing the label (label) or the `deletionTimestamp` (delete). The webhook's own",
            "`teflon_webhook_action_latency_seconds` (alert received to API call done) is shown beside it.",
            "",
            "| action | samples | p50 ms | p90 ms | p99 ms | max ms | webhook's own mean |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for action in ("label", "delete"):
            r = rx[action]
            lines.append(
                f"| {action} | {r['samples']} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | "
                f"{fmt(r['max_ms'])} | {fmt(r['server_mean_ms'])} ms |"
            )
        lines += [
            "",
            f"![reaction latency]({plot_reaction(rx)})",
            "",
            "For a user: the time between Falco's alert and the pod being quarantined or gone. A label takes",
            "a pod read, the owner look-ups (cached after the first alert for a workload) and one JSON patch",
            "with a UID precondition; a delete adds nothing but the DELETE itself. Falco Talon's figure",
            "belongs beside this one once it can be built (see *The peers*).",
            "",
        ]
    if "memory" in results:
        mem = results["memory"]
        lines += [
            f"## 3. Memory after {mem['alerts']:,} alerts over {mem['distinct_pods']:,} pods",
            "",
            f"A fresh process (chart default shape) received {mem['alerts']:,} alerts about "
            f"{mem['distinct_pods']:,} distinct pods in NDJSON batches of 500.",
            "",
            "| idle RSS | RSS after | alerts counted | pods tracked | /metrics series | batched alerts/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {fmt(mem['rss_idle_mib'], 0)} MiB | {fmt(mem['rss_after_mib'], 0)} MiB | {mem['counted']:,.0f} | "
            f"{mem['tracked_pods']:,.0f} | {mem['metric_series']:,} | {fmt(mem['alerts_per_second_batched'], 0)} |",
            "",
            f"![memory]({plot_memory(mem)})",
            "",
            "For a user: per-pod state lives in the windowed rate tracker, capped by",
            "`TEFLON_WEBHOOK_RATE_MAX_TRACKED` and expired after `RATE_TTL_SECONDS`; Prometheus labels never carry",
            "a pod, so the `/metrics` page (and the Prometheus series it costs) stays the same size however",
            "many pods alert. falcosidekick labels its Prometheus counter by pod, which is the known failure",
            "this row was meant to compare against.",
            "",
        ]
    if "cluster" in results:
        cm = results["cluster"]["custom_metrics"]
        lines += [
            "## 4. Custom metrics through the real aggregator",
            "",
            "`kubectl get --raw` equivalents through kube-apiserver's aggregator to the metrics server (front-proxy",
            "authentication, SubjectAccessReview) and on to both webhook replicas' rate API, for `pods/*` over",
            f"{cm['pods']} Deployment pods and for the Deployment object; *cached* is a metric with",
            "`cacheSeconds: 3600`, *uncached* one with `cacheSeconds: 0`. Sequential requests as the HPA",
            "controller makes them.",
            "",
            "| query | requests | items | p50 ms | p99 ms |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for name, r in cm.items():
            if isinstance(r, dict):
                lines.append(
                    f"| {name} | {r['requests']} | {r['items']} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} |"
                )
        lines += [
            "",
            f"![custom metrics latency]({plot_custom_metrics(cm)})",
            "",
            "For a user: the HPA controller asks once per sync period (15 s by default); every figure here is",
            "far inside it, so the metric's `cacheSeconds` is a choice about freshness, not about load.",
            "",
        ]
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench                          # everything, about 15 minutes, writes this page",
        "make bench BENCH_ARGS=--quick       # shorter phases, a fifth of the memory load",
        "make bench BENCH_ARGS=--skip-cluster   # only the benchmarks that need no control plane",
        "```",
        "",
        "The control-plane benchmarks start their own cluster (`TEFLON_CLUSTER_STATE=build/evidence-cluster`)",
        "so they never disturb one that tests are using.",
        "",
    ]
    DOC.write_text("\n".join(lines))
    (IMG / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "build/bench/results.json")
    args = parser.parse_args()
    write(json.loads(args.results.read_text()))
    print(f"bench: wrote {DOC.relative_to(ROOT)} and {IMG.relative_to(ROOT)}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
