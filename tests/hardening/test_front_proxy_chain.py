"""A front-proxy client certificate issued by an intermediate CA is accepted, as kube-apiserver does.

Clusters whose front-proxy certificate comes from an intermediate of the requestheader CA (cert-manager
and corporate PKIs do this) present leaf and intermediate; only the leaf was read, so the chain did
not verify and every aggregated request was 401. Here the real TLS handshake carries a real chain.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from prometheus_client import CollectorRegistry

from teflon.metrics.app import Components, create_app
from teflon.metrics.auth import AuthConfig, Authenticator, Authorizer, StaticAuthConfig
from teflon.metrics.config import parse_config
from teflon.metrics.provider import ConfiguredProvider
from teflon.metrics.telemetry import Telemetry
from teflon.metrics.tls import ServerTLS
from tests.harness.certs import CertificateAuthority
from tests.metrics.fakes import FakeAccess, FakeBackend, FakeObjects, FakeTokens
from tests.metrics.test_tls_auth import _cert as issued
from tests.metrics.tlsserver import client, serve_https

DISCOVERY = "/apis/custom.metrics.k8s.io/v1beta2"
HPA = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


@pytest.mark.parametrize("send_intermediate", [True, False])
async def test_a_front_proxy_chain_through_an_intermediate_authenticates(
    tmp_path: Path, send_intermediate: bool
) -> None:
    root = CertificateAuthority.create("front-proxy-root")
    inter_cert, inter_key = issued(root, "front-proxy-intermediate", ca=True, days=30)
    inter = CertificateAuthority("front-proxy-intermediate", inter_cert, inter_key)
    leaf, leaf_key = issued(inter, "front-proxy-client", usages=[ExtendedKeyUsageOID.CLIENT_AUTH], days=30)
    chain = [leaf, inter.cert] if send_intermediate else [leaf]
    cert_file, key_file = tmp_path / "proxy.crt", tmp_path / "proxy.key"
    cert_file.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    serving_ca = CertificateAuthority.create("serving-ca")
    serving = serving_ca.issue(tmp_path / "serving", "metrics", ips=["127.0.0.1"])
    server_tls = ServerTLS(str(serving.cert_file), str(serving.key_file))
    cfg = AuthConfig(
        requestheader_cas=(root.cert,),  # only the root: as the cluster's requestheader-client-ca-file
        allowed_names=("front-proxy-client",),
        username_headers=("x-remote-user",),
        group_headers=("x-remote-group",),
    )
    server_tls.trust_client_cas(cfg.all_cas())
    telemetry = Telemetry(CollectorRegistry())
    access = FakeAccess(allow={HPA})
    components = Components(
        provider=ConfiguredProvider(
            parse_config("backends: {teflon: {service: wh, namespace: teflon}}"),
            {"teflon": FakeBackend()},
            FakeObjects(),
            telemetry,
        ),
        authenticator=Authenticator(StaticAuthConfig(cfg), FakeTokens({}), telemetry),
        authorizer=Authorizer(access),
        telemetry=telemetry,
        registry=telemetry.registry,
        ready=lambda: True,
    )
    async with serve_https(create_app(components).api, server_tls) as url:
        ca_file = serving_ca.write(tmp_path / "serving-ca").cert_file
        try:
            async with client(ca_file, (cert_file, key_file)) as c:
                answer = await c.get(url + DISCOVERY, headers={"X-Remote-User": HPA, "X-Remote-Group": "g"})
            status = answer.status_code
        except (httpx.HTTPError, ssl.SSLError):  # the handshake itself refused the incomplete chain
            status = 0
    if send_intermediate:
        assert status == 200
        assert access.asked[0][0].name == HPA
    else:
        # Without the intermediate nothing links the leaf to the root: never trusted.
        assert status in (0, 401)
        assert access.asked == []
