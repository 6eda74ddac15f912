# ruff: noqa: S603, S607 - runs the pinned go and git binaries on arguments built here
"""The peers teflon is measured against, and whether this machine can build them.

Both are Go programs in the falcosecurity organisation. They are built from the Go module proxy at a
pinned version (``go build`` in a wrapper module, cached under ``${XDG_CACHE_HOME:-~/.cache}/teflon/``)
or, when the proxy will not serve them, reported with the exact answer it gave; the benchmarks then run
for teflon alone and say so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "teflon" / "peers"

#: name -> (module, pinned version, what the benchmarks would run it as)
WANTED: dict[str, tuple[str, str, str]] = {
    "falcosidekick": (
        "github.com/falcosecurity/falcosidekick",
        "v2.31.1",
        "Prometheus metrics only, no outputs",
    ),
    "falco-talon": (
        "github.com/falcosecurity/falco-talon",
        "v0.3.0",
        "one rule whose action is kubernetes:label against the local control plane",
    ),
}


def _scrub(text: str) -> str:
    """The proxy's answer without its address: only the module paths and the status matter."""
    return re.sub(r"https?://[^/\s]+", "<module proxy>", text).strip()


def probe(name: str) -> dict[str, Any]:
    """Fetch the pinned module (or find the cached build) and say whether it can be built here."""
    module, version, role = WANTED[name]
    binary = CACHE / f"{name}-{version}" / name
    info: dict[str, Any] = {"module": module, "version": version, "role": role, "binary": str(binary)}
    if binary.exists():
        return info | {"available": True}
    work = CACHE / f"{name}-{version}" / "src"
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "go.mod").exists():
        subprocess.run(
            ["go", "mod", "init", f"local/teflon-peer-{name}"], cwd=work, capture_output=True, check=False
        )
    got = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    try:
        answer = json.loads(got.stdout or "{}")
    except ValueError:
        answer = {"Error": got.stdout + got.stderr}
    if answer.get("Error") or got.returncode != 0:
        return info | {"available": False, "reason": _scrub(answer.get("Error") or got.stderr)}
    # Fetched: build it (only reached where the proxy serves the module).
    built = subprocess.run(
        ["go", "build", "-trimpath", "-o", str(binary), f"{module}@{version}"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        return info | {"available": False, "reason": _scrub(built.stderr)[-2000:]}
    return info | {"available": True}


def _probe_all() -> dict[str, Any]:
    if os.environ.get("TEFLON_BENCH_NO_PEERS"):
        return {name: {"available": False, "reason": "not probed (TEFLON_BENCH_NO_PEERS)"} for name in WANTED}
    return {name: probe(name) for name in WANTED}


PEERS = _probe_all()
