# ruff: noqa: E501, RUF001 - the page's prose is kept one source line per rendered line; the ratio sign is U+00D7
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

from bench import trace, transport

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


PHASES = ("ingest", "memory", "cluster", "transport", "trace")
SYSTEMS = {"teflon": "teflon", "falcosidekick": "falcosidekick 2.34.1", "falco-talon": "Falco Talon v0.3.0"}


def plot_latency(ingest: dict[str, Any]) -> str:
    fig, axes = plt.subplots(1, len(ingest), figsize=(6 * len(ingest), 4), sharey=True, squeeze=False)
    for ax, (regime, systems) in zip(axes[0], ingest.items(), strict=True):
        for system, data in systems.items():
            rates = [row["rate"] for row in data["latency"]]
            ax.plot(rates, [r["p50_ms"] for r in data["latency"]], marker="o", label=f"{SYSTEMS[system]} p50")
            ax.plot(
                rates,
                [r["p99_ms"] for r in data["latency"]],
                marker="s",
                linestyle="--",
                label=f"{SYSTEMS[system]} p99",
            )
        ax.set_xlabel("offered load (alerts/s, one alert per request)")
        ax.set_yscale("log")
        ax.set_title(f"ingest latency, {regime}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("latency (ms, log scale)")
    return _save(fig, "ingest-latency.png")


def plot_reaction(reaction: dict[str, Any]) -> str:
    rows = [
        (f"{SYSTEMS[name]}\n{action}, {regime}", cell["values_ms"])
        for action in ("label", "delete")
        for name in ("teflon", "falco-talon")
        if name in reaction
        for regime, cell in reaction[name][action].items()
        if isinstance(cell, dict) and "values_ms" in cell
    ]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(rows) + 1.5))
    ax.boxplot([v for _, v in rows], orientation="horizontal", whis=(1, 99), showfliers=True)
    ax.set_yticks(range(1, len(rows) + 1), [n for n, _ in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("alert posted -> Kubernetes API call completed, seen on a watch (ms, log scale)")
    ax.set_title("reaction on the local control plane: teflon and Falco Talon")
    ax.grid(True, axis="x", which="both", alpha=0.3)
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
    names = list(mem)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    xs = range(len(names))
    left.bar([x - 0.2 for x in xs], [mem[n]["rss_idle_mib"] for n in names], width=0.4, label="idle")
    left.bar([x + 0.2 for x in xs], [mem[n]["rss_after_mib"] for n in names], width=0.4, label="after")
    left.set_xticks(list(xs), [SYSTEMS[n] for n in names])
    left.set_ylabel("resident memory (MiB)")
    left.legend()
    right.bar(list(xs), [mem[n]["metrics_bytes"] / 1024 for n in names])
    right.set_xticks(list(xs), [SYSTEMS[n] for n in names])
    right.set_ylabel("/metrics page (KiB)")
    first = mem[names[0]]
    fig.suptitle(f"after {first['alerts']:,} alerts over {first['distinct_pods']:,} pods")
    for ax in (left, right):
        ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, "memory.png")


def fmt(v: float, digits: int = 1) -> str:
    return f"{v:,.{digits}f}"


def ratio(teflon: float, peer: float) -> str:
    if not peer:
        return "—"
    value = teflon / peer
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.2g}× (1/{peer / teflon:,.0f})"


def peer_section(peers: dict[str, Any]) -> list[str]:
    out = [
        "## The peers",
        "",
        "Built by `scripts/peers.sh` (`make peers`) from their unchanged release archives (`git archive` of the",
        "release tag), each checked against the sha256 pinned in that script and cached by it under",
        "`${XDG_CACHE_HOME:-~/.cache}/teflon/peers/`; Go dependencies from the Go module proxy.",
        "",
        "| peer | version | commit | archive sha256 | measured as |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, p in peers.items():
        out.append(
            f"| {SYSTEMS.get(name, name).rsplit(' ', 1)[0]} | {p.get('version', '')} | `{p.get('commit', '')}` | "
            f"`{p.get('archive_sha256', '')[:16]}…` | {p.get('role', '')} |"
        )
    for name, p in peers.items():
        if not p.get("available"):
            out += [
                "",
                f"**{name} was not built, so its columns are empty:**",
                "",
                "```",
                str(p.get("reason", "")),
                "```",
            ]
    return [*out, ""]


def missing(peers: dict[str, Any], name: str) -> str:
    p = peers.get(name, {})
    return "" if p.get("available") else f"{name} not measured: {p.get('reason', 'not built')}"


def closing(image: str, gap: str, *prose: str) -> list[str]:
    """A section's plot, why a peer column is empty (if it is), and what the figures mean for a user."""
    return ["", image, "", *([f"*{gap}*", ""] if gap else []), *prose, ""]


def ingest_section(ing: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    gap = missing(peers, "falcosidekick")
    lines = [
        "## 1. Ingest: teflon and falcosidekick",
        "",
        "One server process on 127.0.0.1: `python -m teflon.webhook` in dry run without a cluster, and",
        "falcosidekick with no outputs (it answers `200` and counts the alert, the least a receiver does).",
        "*one core*: the server pinned to CPU 0 with `taskset` (teflon with one responder worker,",
        "falcosidekick with `GOMAXPROCS=1`), the load generator on CPU 1. *chart default*: nothing pinned,",
        "teflon with the chart's `webhook.workers` (4) and default policy, falcosidekick with its defaults.",
        "Throughput is closed loop over 8 keep-alive connections, one alert per request, counted until",
        "teflon's queue has drained, and only with zero drops: every answer accepted (202 from teflon, 200",
        "from falcosidekick), the server's own counter up by exactly the number sent, nothing refused.",
        "Latency is open loop (each request has a scheduled send time and counts from it), observed by the",
        "client on loopback. The systems take turns within each round, first one then the other.",
        "",
        "| regime | teflon alerts/s | falcosidekick alerts/s | teflon / sidekick | teflon CPU per alert | sidekick CPU per alert | teflon / sidekick | zero drops |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for regime, systems in ing.items():
        t = systems["teflon"]["throughput"]
        sk = systems.get("falcosidekick", {}).get("throughput")
        drops = "yes" if t["zero_drops"] and (sk is None or sk["zero_drops"]) else "NO"
        if sk is None:
            lines.append(
                f"| {regime} | {fmt(t['alerts_per_second'], 0)} | — | — | {fmt(t['server_cpu_us_per_alert'], 0)} µs | — | — | {drops} |"
            )
            continue
        lines.append(
            f"| {regime} | {fmt(t['alerts_per_second'], 0)} | {fmt(sk['alerts_per_second'], 0)} | "
            f"{ratio(t['alerts_per_second'], sk['alerts_per_second'])} | {fmt(t['server_cpu_us_per_alert'], 0)} µs | "
            f"{fmt(sk['server_cpu_us_per_alert'], 0)} µs | {ratio(t['server_cpu_us_per_alert'], sk['server_cpu_us_per_alert'])} | {drops} |"
        )
    lines += [
        "",
        "| regime | offered alerts/s | teflon p50 / p99 ms | falcosidekick p50 / p99 ms | p50 teflon / sidekick | p99 teflon / sidekick | refused (teflon, sidekick) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for regime, systems in ing.items():
        peer_rows = systems.get("falcosidekick", {}).get("latency") or [None] * len(
            systems["teflon"]["latency"]
        )
        for row, sk in zip(systems["teflon"]["latency"], peer_rows, strict=True):
            mine = f"{fmt(row['p50_ms'], 2)} / {fmt(row['p99_ms'], 2)}"
            if sk is None:
                lines.append(
                    f"| {regime} | {row['rate']:.0f} | {mine} | — | — | — | {row['non_202']:.0f}, — |"
                )
                continue
            lines.append(
                f"| {regime} | {row['rate']:.0f} | {mine} | {fmt(sk['p50_ms'], 2)} / {fmt(sk['p99_ms'], 2)} | "
                f"{ratio(row['p50_ms'], sk['p50_ms'])} | {ratio(row['p99_ms'], sk['p99_ms'])} | "
                f"{row['non_202']:.0f}, {sk['non_202']:.0f} |"
            )
    return lines + closing(
        f"![ingest latency]({plot_latency(ing)})",
        gap,
        "For a user: a ratio below 1× on alerts/s (above 1× on CPU and latency) is what teflon's work",
        "costs over a receiver that only counts: teflon parses and validates each alert against its",
        "schema, bounds it, counts it by rule and namespace, tracks per-pod rates for scaling and queues",
        "it for the responder, in Python; falcosidekick decodes it and increments a counter, in Go.",
        "Falco's `http_output` posts one alert at a time and waits for the answer, so what matters is",
        "whether one replica absorbs your cluster's alert rate with nothing lost. If it does (the",
        "fixed-rate rows show the headroom), teflon is the better pick when you want a response and",
        "scaling signals; falcosidekick is the better pick as a pure fan-out to many outputs at rates",
        "beyond what one teflon replica takes (or run more teflon replicas: the metrics server sums them).",
        "Past its sustained rate teflon answers `503 queue_full` instead of queueing without bound (the",
        "*refused* column); Falco does not retry, so those alerts are lost: size replicas for the peak rate.",
    )


def memory_section(mem: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    t = mem["teflon"]
    sk = mem.get("falcosidekick")
    lines = [
        f"## 3. Memory after {t['alerts']:,} alerts over {t['distinct_pods']:,} pods",
        "",
        "Fresh processes (teflon in the chart default shape, falcosidekick with no outputs) received the same",
        f"{t['alerts']:,} alerts about {t['distinct_pods']:,} distinct pods: teflon in NDJSON batches of 500,",
        "falcosidekick one alert per request (it takes no batches). Then each one's resident memory and",
        "its `/metrics` page.",
        "",
        "| | teflon | falcosidekick | teflon / sidekick |",
        "| --- | ---: | ---: | ---: |",
    ]

    def row(label: str, key: str, unit: str = "", digits: int = 0) -> None:
        peer = "—" if sk is None else f"{fmt(sk[key], digits)}{unit}"
        r = "—" if sk is None else ratio(t[key], sk[key])
        lines.append(f"| {label} | {fmt(t[key], digits)}{unit} | {peer} | {r} |")

    row("idle RSS", "rss_idle_mib", " MiB")
    row("RSS after", "rss_after_mib", " MiB")
    row("alerts counted", "counted")
    row("`/metrics` size", "metrics_bytes", " B")
    row("`/metrics` series", "metric_series")
    lines.append(
        f"| series labelled by pod | 0 | {'—' if sk is None else fmt(sk['pod_labelled_series'], 0)} | — |"
    )
    if t["counted"] > t["alerts"]:
        lines += [
            "",
            f"teflon counted {t['counted']:,.0f} alerts for {t['alerts']:,} sent: when its queue was full it",
            "answered `503 queue_full` after queueing the first alerts of a batch, and this run's sender",
            f"resent whole batches ({t['queue_full_retries']:,} times), so those alerts arrived twice; the",
            "sender now resends only what was refused.",
        ]
    return lines + closing(
        f"![memory]({plot_memory(mem)})",
        missing(peers, "falcosidekick"),
        "For a user: teflon keeps per-pod state only in its windowed rate tracker, capped by",
        "`TEFLON_WEBHOOK_RATE_MAX_TRACKED` and expired after `RATE_TTL_SECONDS`, and its Prometheus labels",
        "never carry a pod, so its `/metrics` page (and the Prometheus series it costs you) stays the same",
        "size however many pods alert. falcosidekick's `falco_events_total` has one series per rule,",
        "priority, hostname, namespace **and pod**: every pod that ever alerted stays a series until the",
        "process restarts, which is what its RSS and `/metrics` columns show. In a cluster with pod churn",
        "teflon is the better pick for metrics; falcosidekick's memory is lower while few pods alert.",
    )


def reaction_section(rx: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    lines = [
        "## 2. Reaction on the local control plane: teflon and Falco Talon",
        "",
        "Both act on the pods of one Deployment (kwok nodes) through the same API server. teflon: the chart",
        "installed with an enforce policy (label `teflon.io/quarantined` on *Terminal shell in container*,",
        "delete with grace period 0 on *Fileless execution via memfd_create*), its webhook a real process",
        "with the chart's ServiceAccount. Falco Talon v0.3.0: in a network namespace of its own (its embedded",
        "NATS server listens on 0.0.0.0:4222) with the cluster's admin kubeconfig, `deduplication.leader_election:",
        "false`, and rules equivalent to teflon's (`kubernetes:label` with the same label, `kubernetes:terminate`",
        "with grace period 0). Both reach the API server over the same kind of bridge (TCP_NODELAY on both",
        "ends). Each alert names a different pod (its output text too: Talon drops identical outputs within",
        "5 s). The time runs from posting the alert to a watch on the pods showing the label or the",
        "`deletionTimestamp`. *1 alert/s*: one alert a second; *5 alerts/s burst*: five alerts 0.2 s apart.",
        "",
        "| action | regime | teflon p50 / p99 ms | Talon p50 / p99 ms | p50 teflon / Talon | p99 teflon / Talon | samples (teflon, Talon) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    talon = rx.get("falco-talon")
    for action in ("label", "delete"):
        for regime, t in rx["teflon"][action].items():
            if not isinstance(t, dict) or "values_ms" not in t:
                continue
            mine = f"{fmt(t['p50_ms'])} / {fmt(t['p99_ms'])}"
            other = talon[action][regime] if talon else None
            if other is None:
                lines.append(f"| {action} | {regime} | {mine} | — | — | — | {t['samples']}, — |")
                continue
            lines.append(
                f"| {action} | {regime} | {mine} | {fmt(other['p50_ms'])} / {fmt(other['p99_ms'])} | "
                f"{ratio(t['p50_ms'], other['p50_ms'])} | {ratio(t['p99_ms'], other['p99_ms'])} | "
                f"{t['samples']}, {other['samples']} |"
            )
    lines += [
        "",
        "API requests per alert at 1 alert/s, from the API server's `apiserver_request_total` around each",
        "block of alerts, less the control plane's idle rate measured before (so they include what the",
        "control plane does in response, e.g. the ReplicaSet controller creating a replacement pod and the",
        "scheduler binding it; only rows of at least 0.25 per alert):",
        "",
        "| action | teflon | Talon |",
        "| --- | --- | --- |",
    ]
    for action in ("label", "delete"):
        mine = rx["teflon"][action].get("api_calls_per_alert", {})
        other = talon[action].get("api_calls_per_alert", {}) if talon else None
        lines.append(f"| {action} | {_calls(mine)} | {'—' if other is None else _calls(other)} |")
    return lines + closing(
        f"![reaction latency]({plot_reaction(rx)})",
        missing(peers, "falco-talon"),
        "For a user: both act within about a tenth of a second of the alert. teflon does more per alert",
        "before it acts: it reads the pod once to check that it runs on the node the alert names, walks",
        "its owners for the replica guard (the workload lookup is cached; the ReplicaSet behind the replica",
        "floor is read fresh before a removal), takes a Lease claim so two replicas never act on one pod",
        "twice, and records an Event: the Lease and the owner reads are round trips Talon does not make,",
        "which is why at 1 alert/s Talon's p50 is lower (a ratio above 1×; the call-by-call trace below",
        "shows each). Talon keeps client-go's default client limit of 5 requests/s with a burst of 10 and makes",
        "four calls per label, so in a burst its labels queue behind that limit (its p99) while teflon's",
        "do not. Pick teflon when you want those guards (protected namespaces, replica floor, budgets, a",
        "circuit breaker, dry run by default) and steady latency under bursts; Talon when the lowest",
        "single-alert latency matters more than those guards and its rate limit does not bind at your",
        "alert rates.",
    )


def _calls(calls: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in calls.items()) or "none counted"


def write(results: dict[str, Any]) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"What teflon costs and how fast it reacts, measured on one machine in {'one run' if ';' not in results.get('command', '') else 'separate runs, one per phase'}. Regenerate this page",
        f"with `{COMMAND}` (about 30 minutes; `make bench BENCH_ARGS=--quick` for a short run). The raw",
        "numbers are in `docs/benchmarks/results.json`.",
        "",
        "## Machine and versions",
        "",
        f"- {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}",
        f"- teflon at commit `{m['commit']}`, measured {m['date']}; load average {m['load_average_at_start']} at the start "
        f"and {m.get('load_average_at_end', '?')} at the end of the run. A load average near or above the CPU count means "
        "other work shared the machine: absolute figures are then lower than on an idle machine, and the "
        "teflon/peer ratios, measured in the same rounds, are the figures to read",
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
        lines += ingest_section(results["ingest"], results["peers"])
    if "cluster" in results:
        lines += reaction_section(results["cluster"]["reaction"], results["peers"])
    if "memory" in results:
        lines += memory_section(results["memory"], results["peers"])
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
    if "transport" in results:
        lines += transport.section(results["transport"])
    if "trace" in results:
        lines += trace.section(results["trace"], trace.before())
    else:  # a run without the control-plane phases keeps the trace section the page has
        lines += trace.kept_section(DOC.read_text() if DOC.exists() else "")
    lines += [
        "## Reproduce",
        "",
        "```",
        "make bench                          # everything, about 30 minutes, writes this page",
        "make peers                          # only build falcosidekick and Falco Talon (cached by archive sha256)",
        "make bench BENCH_ARGS=--quick       # shorter phases, a fifth of the memory load",
        "make bench BENCH_ARGS=--skip-cluster   # only the benchmarks that need no control plane",
        "```",
        "",
        "The control-plane benchmarks start their own cluster (`TEFLON_CLUSTER_STATE=build/evidence-cluster`)",
        "so they never disturb one that tests are using. Where several runs share one control plane, set",
        "`TEFLON_CLUSTER_STATE` to it and `TEFLON_CLUSTER_LOCK` to the lock file they share: only the",
        "control-plane phases then wait for and hold it.",
        "",
        *([f"This page was made with: `{results['command']}`", ""] if results.get("command") else []),
        *(
            ["The phases ran as separate runs, partly at the same time as each other and as other work.", ""]
            if ";" in results.get("command", "")
            else []
        ),
    ]
    DOC.write_text("\n".join(lines))
    (IMG / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One page from several runs (``--only`` phases run apart): each phase from the run that measured it.

    The machine section keeps the first run's facts and the lowest and highest load average seen.
    """
    out = dict(runs[0])
    for run in runs[1:]:
        out |= {k: v for k, v in run.items() if k in PHASES}
    if len(runs) > 1:
        measured = [r for r in runs if r.get("command")] or runs
        loads = [
            r["machine"][k]
            for r in measured
            for k in ("load_average_at_start", "load_average_at_end")
            if k in r["machine"]
        ]
        out["machine"] = runs[0]["machine"] | {
            "load_average_at_start": min(loads),
            "load_average_at_end": max(loads),
        }
        out["command"] = "; ".join(r["command"] for r in runs if r.get("command"))
        out["rounds"] = ", ".join(
            f"{r['rounds']}{' quick' if r['quick'] else ''} ({'/'.join(k for k in PHASES if k in r)})"
            for r in runs
        )
        out["quick"] = False
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--results",
        type=Path,
        action="append",
        help="results of python -m bench.run (default build/bench/results.json); several are merged",
    )
    args = parser.parse_args()
    write(merge([json.loads(p.read_text()) for p in args.results or [ROOT / "build/bench/results.json"]]))
    print(f"bench: wrote {DOC.relative_to(ROOT)} and {IMG.relative_to(ROOT)}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
