"""``python -m teflon.webhook`` as a real process on the loopback interface, without a cluster.

The one way tests, benchmarks and the fuzzer start the webhook: free ports on 127.0.0.1, no
Kubernetes credentials (so the responder runs in dry run), the process's output in a log file, and a
wait until it answers its probe. ``env`` adds or overrides settings (``TEFLON_WEBHOOK_*``)::

    hook = WebhookProcess.start(tmp_path, {"TEFLON_WEBHOOK_WORKERS": "1"})
    httpx.post(f"{hook.ingest_url}/v1/falco", json=alert)
    code = hook.stop()  # SIGTERM: the webhook drains its queue and exits
    hook.log_records()  # its JSON log lines
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.harness.ports import LOOPBACK, free_port


class WebhookError(RuntimeError):
    """The webhook process exited or did not answer its probe in time."""


@dataclass
class WebhookProcess:
    proc: subprocess.Popen[bytes]
    port: int
    ops_port: int
    log: Path
    host: str = LOOPBACK

    @property
    def ingest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ops_url(self) -> str:
        return f"http://{self.host}:{self.ops_port}"

    @classmethod
    def start(
        cls,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "webhook",
        probe: str = "/healthz",
        timeout: float = 60,
    ) -> WebhookProcess:
        """Start one webhook called ``name`` (its pod name and log file) and wait until ``probe`` is 200."""
        env = dict(env or {})
        # Ports the caller names (a restart on the same port) are kept; the others are free ones.
        port = int(env.get("TEFLON_WEBHOOK_PORT") or free_port())
        ops_port = int(env.get("TEFLON_WEBHOOK_OPS_PORT") or free_port())
        no_cluster = str(workdir / "no-kubeconfig")
        environ = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            "KUBECONFIG": no_cluster,  # no cluster, whatever this machine has
            "TEFLON_WEBHOOK_KUBECONFIG": no_cluster,
            "TEFLON_WEBHOOK_HOST": LOOPBACK,
            "TEFLON_WEBHOOK_PORT": str(port),
            "TEFLON_WEBHOOK_OPS_PORT": str(ops_port),
            "TEFLON_WEBHOOK_POD_NAME": name,
            **env,
        }
        log = workdir / f"{name}-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "teflon.webhook"], env=environ, stdout=out, stderr=subprocess.STDOUT
            )
        hook = cls(proc, port, ops_port, log)
        try:
            hook.wait_ready(probe, timeout)
        except BaseException:
            hook.kill()
            raise
        return hook

    def wait_ready(self, probe: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise WebhookError(f"webhook exited {self.proc.returncode}:\n{self.output()[-4000:]}")
            try:
                if httpx.get(f"{self.ops_url}{probe}", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise WebhookError(
                    f"webhook did not answer {probe} within {timeout:.0f}s:\n{self.output()[-4000:]}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait for the exit (SIGKILL after ``timeout``); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines the process wrote."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]
