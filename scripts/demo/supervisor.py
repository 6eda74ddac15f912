"""The demo's services: ``up`` starts a background supervisor (``serve``) that installs the chart and
runs its webhook and metrics server as real processes behind the chart's Services
(``tests/harness/stack.py``), holding the machine-wide lock on ``custom.metrics.k8s.io``, and restarts
them when their Deployment changes, as a rollout would; ``down`` stops it and removes the demo.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scripts.demo.common import (
    LOCK,
    NAMESPACE,
    PIDFILE,
    RELEASE,
    ROOT,
    SHOP,
    STATE,
    STATUS,
    VALUES,
    cluster,
    say,
)
from tests.harness.cluster import ApiError, Cluster
from tests.harness.stack import ChartStack
from tests.harness.workloads import ensure_namespace


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
    ensure_namespace(c, SHOP)
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
