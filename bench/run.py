# ruff: noqa: S607 - runs git on arguments built here
"""``make bench``: every benchmark in one run, interleaved rounds, medians; then docs/benchmarks.md.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--skip-cluster] [--out build/bench/results.json]

Rounds interleave the configurations (1 worker, chart default; label, delete; cached, uncached), so a
machine that gets busier during the run slows every configuration alike instead of the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bench import ingest, transport
from bench.alerts import AlertMix
from bench.peers import Sidekick, build_all, pin, sidekick_memory
from tests.harness.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
RATES = [100, 500, 1000, 2000]


#: The CPU regimes every ingest figure is measured in. *one core*: the server pinned to CPU 0 with
#: ``taskset`` (teflon with one responder worker, falcosidekick with ``GOMAXPROCS=1``), the load
#: generator on CPU 1. *chart default*: nothing pinned, teflon as the chart configures it.
ONE_CORE, CHART_DEFAULT = "one core", "chart default"
SERVER_CPU, LOADGEN_CPU = 0, 1


def shapes(workdir: Path) -> dict[str, dict[str, str]]:
    """teflon's environment per regime: one responder worker, and the chart's defaults (workers, policy)."""
    values = yaml.safe_load((ROOT / "charts/teflon/values.yaml").read_text())
    policy = workdir / "chart-default-policy.yaml"
    policy.write_text(yaml.safe_dump(values["webhook"]["policy"]))
    return {
        ONE_CORE: {"TEFLON_WEBHOOK_WORKERS": "1"},
        CHART_DEFAULT: {
            "TEFLON_WEBHOOK_WORKERS": str(values["webhook"]["workers"]),
            "TEFLON_WEBHOOK_POLICY_FILE": str(policy),
        },
    }


def median_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Field-wise median (``percentile(..., 50)``) of numeric fields over rounds (others from round one)."""
    out: dict[str, Any] = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, bool):
            out[key] = all(r[key] for r in rows)
        elif isinstance(value, int | float):
            out[key] = percentile([float(r[key]) for r in rows], 50)
    out["rounds"] = len(rows)
    return out


def start_server(system: str, regime: str, workdir: Path, peers: dict[str, Any]) -> ingest.Process:
    cpu = SERVER_CPU if regime == ONE_CORE else None
    if system == "falcosidekick":
        return Sidekick.launch(peers["falcosidekick"]["binary"], workdir, cpu)
    p = ingest.Process.start(workdir, shapes(workdir)[regime])
    if cpu is not None:
        pin(p.proc.pid, cpu)
    return p


async def ingest_rounds(args: argparse.Namespace, workdir: Path, peers: dict[str, Any]) -> dict[str, Any]:
    """Per regime and system: throughput and fixed-rate latency, rounds interleaved, medians."""
    mix = AlertMix(pods=5000)
    seconds = 3.0 if args.quick else 6.0
    systems = ["teflon"] + (["falcosidekick"] if peers["falcosidekick"].get("available") else [])
    slots: dict[tuple[str, str], dict[str, list[Any]]] = {}
    everything = os.sched_getaffinity(0)
    for r in range(args.rounds):
        for regime in (ONE_CORE, CHART_DEFAULT):
            # Alternate which system goes first, so neither always gets the fresher machine.
            for system in systems if r % 2 == 0 else systems[::-1]:
                print(
                    f"bench: ingest round {r + 1}/{args.rounds}: {system}, {regime}",
                    file=sys.stderr,
                    flush=True,
                )
                os.sched_setaffinity(0, {LOADGEN_CPU} if regime == ONE_CORE else everything)
                p = start_server(system, regime, workdir, peers)
                try:
                    await ingest.throughput(p, mix, 2.0)  # warm-up: imports, caches, first pods seen
                    slot = slots.setdefault(
                        (regime, system), {"throughput": [], **{str(x): [] for x in RATES}}
                    )
                    slot["throughput"].append(await ingest.throughput(p, mix, seconds))
                    for rate in RATES:
                        slot[str(rate)].append(await ingest.latency(p, mix, rate, seconds))
                finally:
                    p.stop()
                    os.sched_setaffinity(0, everything)
    out: dict[str, Any] = {}
    for (regime, system), slot in slots.items():
        out.setdefault(regime, {})[system] = {
            "throughput": median_of(slot["throughput"]),
            "latency": [median_of(slot[str(rate)]) for rate in RATES],
            "raw": slot,
        }
    return out


async def memory_run(args: argparse.Namespace, workdir: Path, peers: dict[str, Any]) -> dict[str, Any]:
    alerts, pods = (200_000, 20_000) if args.quick else (1_000_000, 100_000)
    out: dict[str, Any] = {}
    print(f"bench: memory after {alerts:,} alerts over {pods:,} pods: teflon", file=sys.stderr, flush=True)
    p = ingest.Process.start(workdir, shapes(workdir)[CHART_DEFAULT])
    try:
        out["teflon"] = await ingest.memory(p, AlertMix(pods=pods), alerts)
    finally:
        p.stop()
    if peers["falcosidekick"].get("available"):
        print(
            f"bench: memory after {alerts:,} alerts over {pods:,} pods: falcosidekick",
            file=sys.stderr,
            flush=True,
        )
        s = Sidekick.launch(peers["falcosidekick"]["binary"], workdir)
        try:
            out["falcosidekick"] = await sidekick_memory(s, AlertMix(pods=pods), alerts)
        finally:
            s.stop()
    return out


@contextlib.contextmanager
def cluster_lock() -> Iterator[None]:
    """Hold ``$TEFLON_CLUSTER_LOCK`` (flock) while the control-plane phases run, when it is set.

    Where several runs share one control plane, only these phases need it; the others run beside
    whatever holds it.
    """
    path = os.environ.get("TEFLON_CLUSTER_LOCK")
    if not path:
        yield
        return
    with Path(path).open("a") as lock:
        print(f"bench: waiting for {path}", file=sys.stderr, flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {
            name: metadata.version(name) for name in ("fastapi", "uvicorn", "pydantic", "h11", "httpx")
        },
        "commit": commit.stdout.strip(),
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases and a fifth of the memory load")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-cluster", action="store_true", help="only the benchmarks without a cluster")
    parser.add_argument("--only", choices=["ingest", "memory", "transport", "cluster"], action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "build/bench/results.json")
    args = parser.parse_args()
    only = set(args.only or ["ingest", "memory", "transport", "cluster"])
    if args.skip_cluster:
        only.discard("cluster")
    peers = build_all()
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "rounds": args.rounds,
        "peers": peers,
        "command": " ".join(
            [
                f"{k}={os.environ[k]}"
                for k in ("TEFLON_CLUSTER_STATE", "TEFLON_CLUSTER_LOCK")
                if k in os.environ
            ]
            + ["python -m bench.run", *sys.argv[1:]]
        ),
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teflon-bench-") as tmp:
        workdir = Path(tmp)
        if "ingest" in only:
            results["ingest"] = asyncio.run(ingest_rounds(args, workdir, peers))
        if "memory" in only:
            results["memory"] = asyncio.run(memory_run(args, workdir, peers))
        if "transport" in only:
            print("bench: Falco transports, alert to count", file=sys.stderr, flush=True)
            results["transport"] = transport.run(workdir, 10 if args.quick else 30, args.rounds)
        if "cluster" in only:
            from bench import cluster  # noqa: PLC0415 - only with a control plane (scripts/cluster.sh)

            with cluster_lock():
                results["cluster"] = cluster.run(args, peers)
                from bench import trace  # noqa: PLC0415 - as above
                from tests.harness.cluster import evidence_cluster  # noqa: PLC0415

                print("bench: one enforced alert, call by call", file=sys.stderr, flush=True)
                results["trace"] = trace.run(evidence_cluster())
    results["seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: results in {args.out} after {results['seconds']:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
