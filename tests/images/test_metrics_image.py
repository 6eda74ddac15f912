"""The teflon-metrics image serves custom.metrics.k8s.io over TLS to the aggregator's front proxy.

The container reads the front-proxy CA from the local control plane's
``kube-system/extension-apiserver-authentication`` ConfigMap and asks that API server to authorize, as
it would in a cluster; the client presents the control plane's own front-proxy client certificate.
"""

from __future__ import annotations

import base64
import os
import ssl
from pathlib import Path

import httpx
import pytest
import yaml

from tests.harness.certs import CertificateAuthority
from tests.harness.cluster import Cluster
from tests.harness.ports import free_port

from .podman import IMPORT_ALL, RUN_AS, Container, Podman

pytestmark = pytest.mark.images

UID = int(RUN_AS.split(":", 1)[0])
MOUNT = "/etc/teflon/smoke"
DISCOVERY = "/apis/custom.metrics.k8s.io/v1beta2"
REQUESTER = {"X-Remote-User": "smoke-tester", "X-Remote-Group": "system:authenticated"}


def _secret_dir(path: Path) -> Path:
    """A directory only the container's user may read, as a mounted Secret is for the pod's user."""
    path.mkdir(mode=0o700)
    os.chown(path, UID, UID)
    return path


def _put(directory: Path, name: str, data: bytes) -> None:
    target = directory / name
    target.write_bytes(data)
    target.chmod(0o600)
    os.chown(target, UID, UID)


def _kubeconfig(cluster: Cluster) -> bytes:
    """The admin kubeconfig with its files embedded, so it stands alone inside the container."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {"server": cluster.server, "certificate-authority-data": b64(cluster.ca_file)},
                }
            ],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "client-certificate-data": b64(cluster.admin_cert_file),
                        "client-key-data": b64(cluster.admin_key_file),
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    ).encode()


def _client(serving_ca: bytes, cert: tuple[Path, Path] | None) -> httpx.Client:
    ctx = ssl.create_default_context(cadata=serving_ca.decode())
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(verify=ctx, timeout=10)


def _ready(box: Container, ops: int) -> None:
    def probe() -> bool | None:
        return True if httpx.get(f"http://127.0.0.1:{ops}/readyz", timeout=5).status_code == 200 else None

    box.wait_for(probe, timeout=90, what="/readyz (front-proxy configuration loaded)")


def test_the_image_declares_a_numeric_non_root_user_its_ports_and_oci_labels(
    podman: Podman, metrics_image: str
) -> None:
    config = podman.image_config(metrics_image)
    assert config["User"] == RUN_AS
    assert set(config["ExposedPorts"]) == {"6443/tcp", "8080/tcp"}
    assert config["Entrypoint"] == ["/opt/teflon/bin/python", "-m", "teflon.metrics"]
    assert config["Labels"]["org.opencontainers.image.title"] == "teflon-metrics"
    assert config["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_the_metrics_server_answers_discovery_over_https_to_the_front_proxy_and_refuses_others(
    podman: Podman, metrics_image: str, cluster: Cluster, tmp_path: Path
) -> None:
    ca = CertificateAuthority.create("teflon-metrics-smoke-ca")
    serving = ca.issue(tmp_path / "serving", "teflon-metrics.teflon.svc", ips=["127.0.0.1"])
    mounted = _secret_dir(tmp_path / "mounted")
    _put(mounted, "tls.crt", serving.cert_pem)
    _put(mounted, "tls.key", serving.key_pem)
    _put(mounted, "kubeconfig", _kubeconfig(cluster))
    port, ops = free_port(), free_port()
    env = {
        "TEFLON_METRICS_HOST": "127.0.0.1",
        "TEFLON_METRICS_PORT": str(port),
        "TEFLON_METRICS_OPS_PORT": str(ops),
        "TEFLON_METRICS_TLS_CERT_FILE": f"{MOUNT}/tls.crt",
        "TEFLON_METRICS_TLS_KEY_FILE": f"{MOUNT}/tls.key",
        "TEFLON_METRICS_KUBECONFIG": f"{MOUNT}/kubeconfig",
    }
    front_proxy = (cluster.front_proxy_client_cert_file, cluster.front_proxy_client_key_file)
    url = f"https://127.0.0.1:{port}{DISCOVERY}"
    with podman.container(metrics_image, env=env, volumes=[(mounted, MOUNT)]) as box:
        _ready(box, ops)

        with _client(ca.cert_pem, front_proxy) as aggregator:
            reply = aggregator.get(url, headers=REQUESTER)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["kind"] == "APIResourceList"
        assert body["groupVersion"] == "custom.metrics.k8s.io/v1beta2"

        with _client(ca.cert_pem, None) as stranger:
            spoofed = stranger.get(
                url, headers={"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
            )
        assert spoofed.status_code == 401, spoofed.text


def test_every_teflon_module_imports_from_what_the_image_ships(podman: Podman, metrics_image: str) -> None:
    proc = podman.exec_once(metrics_image, "-c", IMPORT_ALL, entrypoint="/opt/teflon/bin/python")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 10
