"""``python -m teflon.webhook`` as a real process: no cluster needed in dry run, mTLS, graceful stop."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx
import pytest

from tests.harness.certs import CertificateAuthority
from tests.harness.process import run_to_exit

from .conftest import REAL_ALERTS, RunWebhook

SHELL = (REAL_ALERTS[0].parent / "11-terminal-shell-2024-thread-fields-tags.json").read_bytes()


def test_without_any_cluster_the_webhook_accepts_alerts_and_reports_them(run_webhook: RunWebhook) -> None:
    hook = run_webhook()
    url = f"http://127.0.0.1:{hook.port}"
    for path in ("/v1/falco", "/"):
        resp = httpx.post(url + path, content=SHELL, headers={"Content-Type": "application/json"})
        assert resp.status_code == 202
    bad = httpx.post(url + "/v1/falco", content=b"{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert httpx.get(f"{hook.ops_url}/readyz").json()["ready"] is True
    metrics = httpx.get(f"{hook.ops_url}/metrics").text
    labels = 'namespace="default",priority="Notice",rule="Terminal shell in container",source="syscall"'
    assert f"teflon_webhook_alerts_total{{{labels}}} 2.0" in metrics
    assert 'teflon_webhook_alerts_rejected_total{reason="invalid_json"} 1.0' in metrics
    assert httpx.post(f"{hook.ops_url}/v1/falco", content=SHELL).status_code in (
        404,
        405,
    )  # ingest is not on ops
    rates = httpx.get(f"{hook.ops_url}/v1/rates", params={"scope": "namespace"}).json()
    assert rates["replica"] == "webhook-under-test"
    assert [(e["name"], e["count"]) for e in rates["entries"]] == [("default", 2)]
    code = hook.stop()
    logs = hook.log_records()
    assert code == 0
    assert any(line.get("msg") == "queue drained" for line in logs)


def test_sigterm_drains_queued_alerts_before_exiting(run_webhook: RunWebhook) -> None:
    hook = run_webhook(TEFLON_WEBHOOK_WORKERS="1")
    batch = b"\n".join([SHELL] * 500)
    resp = httpx.post(
        f"http://127.0.0.1:{hook.port}/v1/falco",
        content=batch,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert resp.json()["accepted"] == 500
    code = hook.stop()
    logs = hook.log_records()
    assert code == 0
    assert not any(str(line.get("msg", "")).startswith("drain timed out") for line in logs)
    assert any(line.get("msg") == "queue drained" for line in logs)


def test_with_a_client_ca_ingest_requires_a_client_certificate(
    run_webhook: RunWebhook, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create("teflon-test-ca")
    ca_pair = ca.write(tmp_path / "ca")
    server = ca.issue(tmp_path / "server", "teflon-webhook", dns_names=["localhost"], ips=["127.0.0.1"])
    client = ca.issue(tmp_path / "falco", "falco", server=False, client=True)
    hook = run_webhook(
        TEFLON_WEBHOOK_TLS_CERT_FILE=str(server.cert_file),
        TEFLON_WEBHOOK_TLS_KEY_FILE=str(server.key_file),
        TEFLON_WEBHOOK_TLS_CLIENT_CA_FILE=str(ca_pair.cert_file),
    )
    url = f"https://127.0.0.1:{hook.port}/v1/falco"
    anonymous = ssl.create_default_context(cafile=str(ca_pair.cert_file))
    with pytest.raises(httpx.TransportError):
        httpx.post(url, content=SHELL, headers={"Content-Type": "application/json"}, verify=anonymous)
    mutual = ssl.create_default_context(cafile=str(ca_pair.cert_file))
    mutual.load_cert_chain(str(client.cert_file), str(client.key_file))
    resp = httpx.post(url, content=SHELL, headers={"Content-Type": "application/json"}, verify=mutual)
    assert resp.status_code == 202
    assert httpx.get(f"{hook.ops_url}/healthz").status_code == 200  # ops stays plain HTTP


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"TEFLON_WEBHOOK_TLS_CLIENT_CA_FILE": "/ca.crt"}, "TLS_CLIENT_CA_FILE needs TLS_CERT_FILE"),
        ({"TEFLON_WEBHOOK_PORT": "9000", "TEFLON_WEBHOOK_OPS_PORT": "9000"}, "PORT and OPS_PORT must differ"),
    ],
)
def test_invalid_settings_stop_the_process_with_a_clear_error_and_a_usage_exit_status(
    tmp_path: Path, settings: dict[str, str], complaint: str
) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **settings}
    proc = run_to_exit("teflon.webhook", env)
    assert proc.returncode == 2
    assert "teflon webhook: invalid settings" in proc.stderr
    assert complaint in proc.stderr
    assert "Traceback" not in proc.stderr
