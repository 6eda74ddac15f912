"""Falco's ``program_output`` played exactly: the chart's program, run by ``sh -c``, fed real alerts.

The program and ``keep_alive`` come from the falco.yaml the chart renders; a real
``python -m teflon.webhook`` listens on 127.0.0.1; the shared real alerts are written to the program's
stdin one line at a time with pauses, and each must be counted by the webhook before the next is
written (``tests/harness/program_output.py`` says exactly what is played and what stands in).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.harness.certs import CertificateAuthority
from tests.harness.program_output import CLIENT_CERT_DIR, FalcoProgram, ProgramOutput
from tests.harness.prom import metric_sum
from tests.harness.webhook import WebhookProcess

from .conftest import REAL_ALERTS, RunWebhook, load

#: The alerts exactly as Falco writes them: one compact JSON document per line.
ALERT_LINES = [json.dumps(load(p), separators=(",", ":")) for p in REAL_ALERTS]
PAUSE = 0.2


class Counters:
    """The webhook's counters, read from its ``/metrics`` as Prometheus would."""

    def __init__(self, hook: WebhookProcess) -> None:
        self.client = httpx.Client(base_url=hook.ops_url, timeout=5)

    def sum(self, name: str, **labels: str) -> float:
        return metric_sum(self.client.get("/metrics").text, name, **labels)

    def alerts(self) -> float:
        return self.sum("teflon_webhook_alerts_total")

    def wait(self, probe: Callable[[], float], want: float, what: str, seconds: float = 10) -> float:
        """Poll until ``probe()`` is ``want``; the seconds it took."""
        started = time.monotonic()
        while (got := probe()) != want:
            if got > want or time.monotonic() - started > seconds:
                raise AssertionError(f"{what}: {got} instead of {want}")
            time.sleep(0.01)
        return time.monotonic() - started


Falco = Callable[[ProgramOutput, WebhookProcess], FalcoProgram]


@pytest.fixture
def falco(tmp_path: Path) -> Iterator[Falco]:
    """``falco(output, hook)``: a player of ``output`` whose Service name leads to ``hook``."""
    made: list[FalcoProgram] = []

    def make(output: ProgramOutput, hook: WebhookProcess) -> FalcoProgram:
        made.append(FalcoProgram(output, tmp_path / f"falco-home-{len(made)}", hook.port))
        return made[-1]

    yield make
    for f in made:
        f.stop()


def test_keep_alive_streams_each_alert_over_one_connection_and_a_cut_loses_nothing(
    run_webhook: RunWebhook, falco: Falco
) -> None:
    output = ProgramOutput.from_render()
    assert output.keep_alive is True
    assert urlsplit(output.url).path == "/v1/falco/stream"
    hook = run_webhook()
    counters = Counters(hook)
    runner = falco(output, hook)
    proc = runner.spawn()
    for i, line in enumerate(ALERT_LINES, start=1):
        runner.write(proc, line)
        counters.wait(counters.alerts, i, f"alert {i} counted before the next is written")
        time.sleep(PAUSE)
    assert counters.sum("teflon_webhook_streams_open") == 1, "one long-lived connection for every alert"
    assert proc.poll() is None
    runner.cut(proc)
    counters.wait(lambda: counters.sum("teflon_webhook_streams_total", result="cut"), 1, "the cut seen")
    assert counters.alerts() == len(ALERT_LINES), "every alert received before the cut is kept"
    assert counters.sum("teflon_webhook_alerts_rejected_total") == 0
    counters.wait(lambda: counters.sum("teflon_webhook_queue_depth"), 0, "the kept alerts processed")
    code = hook.stop()
    logs = hook.log_records()
    assert code == 0
    assert any(line.get("msg") == "queue drained" for line in logs)


def test_keep_alive_false_runs_one_program_per_alert_and_a_cut_loses_nothing(
    run_webhook: RunWebhook, falco: Falco
) -> None:
    output = ProgramOutput.from_render(falcoOutput={"program": {"keepAlive": False}})
    assert output.keep_alive is False
    hook = run_webhook()
    counters = Counters(hook)
    runner = falco(output, hook)
    for i, line in enumerate(ALERT_LINES, start=1):
        proc = runner.spawn()
        runner.write(proc, line)
        assert runner.pclose(proc) == 0, proc.stderr.read() if proc.stderr else ""
        counters.wait(counters.alerts, i, f"alert {i} counted before the next is written")
        time.sleep(PAUSE)
    assert counters.sum("teflon_webhook_streams_total", result="completed") == len(ALERT_LINES)
    proc = runner.spawn()  # the next alert's program dies after writing its line, before Falco's pclose
    runner.write(proc, ALERT_LINES[0])
    counters.wait(counters.alerts, len(ALERT_LINES) + 1, "the line counted on its newline, before EOF")
    runner.cut(proc)
    counters.wait(lambda: counters.sum("teflon_webhook_streams_total", result="cut"), 1, "the cut seen")
    assert counters.alerts() == len(ALERT_LINES) + 1
    assert counters.sum("teflon_webhook_alerts_rejected_total") == 0


def test_the_program_outlives_a_webhook_restart_and_ends_when_falco_closes_its_stdin(
    run_webhook: RunWebhook, falco: Falco
) -> None:
    output = ProgramOutput.from_render()
    hook = run_webhook()
    counters = Counters(hook)
    runner = falco(output, hook)
    proc = runner.spawn()
    runner.write(proc, ALERT_LINES[0])
    counters.wait(counters.alerts, 1, "the first alert counted")
    code = hook.stop()  # SIGTERM: the open stream ends with a 503 and the webhook exits in time
    assert code == 0
    assert proc.poll() is None, "a program that exits would leave Falco writing into a dead pipe"
    runner.write(proc, ALERT_LINES[1])  # written while no webhook listens: waits in the pipe
    restarted = run_webhook(TEFLON_WEBHOOK_PORT=str(hook.port))
    again = Counters(restarted)
    again.wait(again.alerts, 1, "the alert written during the restart arrives after it", seconds=30)
    runner.write(proc, ALERT_LINES[2])
    again.wait(again.alerts, 2, "and the stream goes on")
    assert runner.pclose(proc) == 0, "Falco closing stdin (shutdown, SIGUSR1 reopen) ends the program"
    again.wait(lambda: again.sum("teflon_webhook_streams_total", result="completed"), 1, "ended cleanly")


def test_with_mtls_the_program_sends_falcos_client_certificate(
    run_webhook: RunWebhook, falco: Falco, tmp_path: Path
) -> None:
    output = ProgramOutput.from_render(
        webhook={"tls": {"enabled": True}},
        falco={"certs": {"existingClientSecret": "teflon-falco-client-tls"}},
    )
    assert urlsplit(output.url).scheme == "https"
    assert CLIENT_CERT_DIR in output.program
    ca = CertificateAuthority.create("teflon-test-ca")
    ca_pair = ca.write(tmp_path / "ca")
    host = urlsplit(output.url).hostname or ""
    server = ca.issue(tmp_path / "server", "teflon-webhook", dns_names=[host])
    client = ca.issue(tmp_path / "falco", "falco", server=False, client=True)
    mount = tmp_path / "falco-client-secret"  # the Secret's keys, as the Falco pod sees them
    mount.mkdir()
    for key, source in (
        ("tls.crt", client.cert_file),
        ("tls.key", client.key_file),
        ("ca.crt", ca_pair.cert_file),
    ):
        (mount / key).write_bytes(source.read_bytes())
    hook = run_webhook(
        TEFLON_WEBHOOK_TLS_CERT_FILE=str(server.cert_file),
        TEFLON_WEBHOOK_TLS_KEY_FILE=str(server.key_file),
        TEFLON_WEBHOOK_TLS_CLIENT_CA_FILE=str(ca_pair.cert_file),
    )
    counters = Counters(hook)
    runner = falco(output.with_client_dir(mount), hook)
    proc = runner.spawn()
    for i, line in enumerate(ALERT_LINES[:3], start=1):
        runner.write(proc, line)
        counters.wait(counters.alerts, i, f"alert {i} counted over mTLS")
    assert runner.pclose(proc) == 0
    # The same program without the client certificate: the webhook refuses the TLS handshake.
    anonymous = output.with_client_dir(mount)
    anonymous = ProgramOutput(re.sub(r" --cert \S+ --key \S+", "", anonymous.program), True, output.url)
    assert "--cert" not in anonymous.program
    stranger = falco(anonymous, hook)
    proc = stranger.spawn()
    for line in ALERT_LINES[:3]:
        time.sleep(1)
        stranger.write(proc, line)
    time.sleep(2)
    assert proc.poll() is None, "the program keeps retrying"
    stranger.cut(proc)
    assert counters.alerts() == 3, "nothing from a sender without Falco's client certificate"
    assert counters.sum("teflon_webhook_streams_total") == 1
    assert proc.stderr is not None
    assert b"curl: (" in proc.stderr.read(), "and says why on Falco's log"
