"""The teflon-webhook image runs hardened, answers its probes, takes a Falco alert and counts it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.harness.falco import SHELL_RULE
from tests.harness.ports import free_port
from tests.harness.prom import metric_sum

from .podman import IMPORT_ALL, RUN_AS, Podman

pytestmark = pytest.mark.images


ALERT = Path(__file__).parents[1] / "fixtures" / "falco-alerts" / "15-docs-terminal-shell-critical-2023.json"


def test_the_image_declares_a_numeric_non_root_user_its_ports_and_oci_labels(
    podman: Podman, webhook_image: str
) -> None:
    config = podman.image_config(webhook_image)
    assert config["User"] == RUN_AS
    assert set(config["ExposedPorts"]) == {"2801/tcp", "8081/tcp"}
    assert config["Entrypoint"] == ["/opt/teflon/bin/python", "-m", "teflon.webhook"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "teflon-webhook"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    for key in ("version", "revision"):
        assert labels[f"org.opencontainers.image.{key}"] not in ("", "unknown", "0.0.0-dev")


def test_the_image_holds_no_package_installer_and_only_tmp_is_writable(
    podman: Podman, webhook_image: str
) -> None:
    probe = (
        "import importlib.util, json, os\n"
        "print(json.dumps({'pip': importlib.util.find_spec('pip') is not None,"
        " 'uid': os.getuid(), 'writable': [p for p in ('/', '/opt/teflon', '/etc', '/tmp', '/run')"
        " if os.access(p, os.W_OK)],"
        " 'installers': [p for p in ('/usr/local/bin/pip', '/usr/share/python-wheels')"
        " if os.path.exists(p)]}))"
    )
    proc = podman.exec_once(webhook_image, "-c", probe, entrypoint="/opt/teflon/bin/python")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen == {"pip": False, "uid": 65532, "writable": ["/tmp"], "installers": []}


def test_the_webhook_answers_healthz_counts_an_accepted_falco_alert_and_stops_cleanly_on_sigterm(
    podman: Podman, webhook_image: str
) -> None:
    ingest, ops = free_port(), free_port()
    env = {
        "TEFLON_WEBHOOK_HOST": "127.0.0.1",
        "TEFLON_WEBHOOK_PORT": str(ingest),
        "TEFLON_WEBHOOK_OPS_PORT": str(ops),
        "TEFLON_WEBHOOK_DRAIN_SECONDS": "2",
    }
    with podman.container(webhook_image, env=env) as box, httpx.Client(timeout=5) as http:

        def healthy() -> dict[str, str] | None:
            reply = http.get(f"http://127.0.0.1:{ops}/healthz")
            return reply.json() if reply.status_code == 200 else None

        assert box.wait_for(healthy, timeout=90, what="/healthz") == {"status": "ok"}

        reply = http.post(
            f"http://127.0.0.1:{ingest}/v1/falco",
            content=ALERT.read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status_code == 202, reply.text
        assert reply.json()["accepted"] == 1

        def counted() -> float | None:
            text = http.get(f"http://127.0.0.1:{ops}/metrics").text
            shell = metric_sum(text, "teflon_webhook_alerts_total", rule=SHELL_RULE, namespace="default")
            return shell or None

        assert box.wait_for(counted, timeout=30, what="the alert in /metrics") == 1.0
        assert box.stop() == 0, box.logs()


def test_every_teflon_module_imports_from_what_the_image_ships(podman: Podman, webhook_image: str) -> None:
    proc = podman.exec_once(webhook_image, "-c", IMPORT_ALL, entrypoint="/opt/teflon/bin/python")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 10
