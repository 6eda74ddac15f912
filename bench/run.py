# ruff: noqa: S607 - runs git on arguments built here
"""``make bench``: every benchmark in one run, interleaved rounds, medians; then docs/benchmarks.md.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--skip-cluster] [--out build/bench/results.json]

Rounds interleave the configurations (1 worker, chart default; label, delete; cached, uncached), so a
machine that gets busier during the run slows every configuration alike instead of the last one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bench import ingest
from bench.alerts import AlertMix
from bench.peers import PEERS
from tests.harness.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
RATES = [100, 500, 1000, 2000]


def shapes(workdir: Path) -> dict[str, dict[str, str]]:
    """Process environments: one responder worker, and the chart's defaults (4 workers, its policy)."""
    values = yaml.safe_load((ROOT / "charts/teflon/values.yaml").read_text())
    policy = workdir / "chart-default-policy.yaml"
    policy.write_text(yaml.safe_dump(values["webhook"]["policy"]))
    return {
        "1 worker": {"TEFLON_WEBHOOK_WORKERS": "1"},
        "chart default": {
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


async def ingest_rounds(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    mix = AlertMix(pods=5000)
    seconds = 3.0 if args.quick else 6.0
    per_shape: dict[str, dict[str, list[Any]]] = {}
    for r in range(args.rounds):
        for name, env in shapes(workdir).items():
            print(f"bench: ingest round {r + 1}/{args.rounds}: {name}", file=sys.stderr, flush=True)
            p = ingest.Process.start(workdir, env)
            try:
                await ingest.throughput(p, mix, 2.0)  # warm-up: imports, caches, first pods seen
                slot = per_shape.setdefault(name, {"throughput": [], **{str(rate): [] for rate in RATES}})
                slot["throughput"].append(await ingest.throughput(p, mix, seconds))
                for rate in RATES:
                    slot[str(rate)].append(await ingest.latency(p, mix, rate, seconds))
            finally:
                p.stop()
    return {
        name: {
            "throughput": median_of(slot["throughput"]),
            "latency": [median_of(slot[str(rate)]) for rate in RATES],
            "raw": slot,
        }
        for name, slot in per_shape.items()
    }


async def memory_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    alerts, pods = (200_000, 20_000) if args.quick else (1_000_000, 100_000)
    print(f"bench: memory after {alerts:,} alerts over {pods:,} pods", file=sys.stderr, flush=True)
    env = shapes(workdir)["chart default"]
    p = ingest.Process.start(workdir, env)
    try:
        return await ingest.memory(p, AlertMix(pods=pods), alerts)
    finally:
        p.stop()


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
    parser.add_argument("--only", choices=["ingest", "memory", "cluster"], action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "build/bench/results.json")
    args = parser.parse_args()
    only = set(args.only or ["ingest", "memory", "cluster"])
    if args.skip_cluster:
        only.discard("cluster")
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "rounds": args.rounds,
        "peers": PEERS,
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="teflon-bench-") as tmp:
        workdir = Path(tmp)
        if "ingest" in only:
            results["ingest"] = asyncio.run(ingest_rounds(args, workdir))
        if "memory" in only:
            results["memory"] = asyncio.run(memory_run(args, workdir))
        if "cluster" in only:
            from bench import cluster  # noqa: PLC0415 - only with a control plane (scripts/cluster.sh)

            results["cluster"] = cluster.run(args)
    results["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"bench: results in {args.out} after {results['seconds']:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
