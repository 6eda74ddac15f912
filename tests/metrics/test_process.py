"""``python -m teflon.metrics`` as a process: startup checks, probes before it is ready, clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness.certs import CertificateAuthority
from tests.harness.ports import free_port
from tests.harness.process import run_to_exit


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    kubeconfig = tmp / "kubeconfig"
    # an API server address where nothing listens: credentials load, every call fails
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return {
        "PATH": os.environ.get("PATH", ""),
        "TEFLON_METRICS_HOST": "127.0.0.1",
        "TEFLON_METRICS_KUBECONFIG": str(kubeconfig),
        **extra,
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_to_exit("teflon.metrics", env)


def test_missing_serving_certificate_stops_startup_with_a_clear_error(tmp_path: Path) -> None:
    proc = _run(_env(tmp_path))
    assert proc.returncode == 2
    assert "TEFLON_METRICS_TLS_CERT_FILE and TEFLON_METRICS_TLS_KEY_FILE are required" in proc.stderr


def test_an_invalid_metrics_config_stops_startup_naming_the_field(tmp_path: Path) -> None:
    kp = CertificateAuthority.create("ca").issue(tmp_path / "tls", "metrics", ips=["127.0.0.1"])
    config = tmp_path / "metrics.yaml"
    config.write_text("backends: {prometheus: {url: 'ftp://nope'}}\n")
    proc = _run(
        _env(
            tmp_path,
            TEFLON_METRICS_TLS_CERT_FILE=str(kp.cert_file),
            TEFLON_METRICS_TLS_KEY_FILE=str(kp.key_file),
            TEFLON_METRICS_CONFIG_FILE=str(config),
        )
    )
    assert proc.returncode == 1
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line["msg"] == "metrics server cannot start"
    assert "backends.prometheus.url" in line["error"]


def test_invalid_settings_exit_with_a_usage_error(tmp_path: Path) -> None:
    proc = _run(_env(tmp_path, TEFLON_METRICS_PORT="8080"))
    assert proc.returncode == 2
    assert "must differ" in proc.stderr


def test_the_server_is_alive_but_not_ready_without_the_api_and_stops_on_sigterm(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("ca")
    kp = ca.issue(tmp_path / "tls", "metrics", ips=["127.0.0.1"])
    port, ops = free_port(), free_port()
    env = _env(
        tmp_path,
        TEFLON_METRICS_PORT=str(port),
        TEFLON_METRICS_OPS_PORT=str(ops),
        TEFLON_METRICS_TLS_CERT_FILE=str(kp.cert_file),
        TEFLON_METRICS_TLS_KEY_FILE=str(kp.key_file),
    )
    log = (tmp_path / "out.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "teflon.metrics"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{ops}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "out.log").read_text()
                assert time.monotonic() < deadline, "the ops port did not open"
                time.sleep(0.1)
        assert health.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=5).status_code == 503
        ca_file = ca.write(tmp_path / "ca").cert_file
        resp = httpx.get(
            f"https://127.0.0.1:{port}/apis/custom.metrics.k8s.io/v1beta2",
            verify=ssl.create_default_context(cafile=str(ca_file)),
            timeout=5,
        )
        # no authentication config yet: the server cannot decide who asks, and says so
        assert resp.status_code == 500
        assert resp.json()["kind"] == "Status"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "metrics server stopping" in (tmp_path / "out.log").read_text()
